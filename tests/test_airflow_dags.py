"""Real Airflow: the provider registers, every DAG imports, and inkloop_detect runs end to end."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from airflow_env import ROOT, AirflowCLI, migrate, run_airflow
from inkloop.verdict import VERDICTS_ORDER

pytestmark = pytest.mark.airflow


@pytest.fixture(scope="module")
def af(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-home")
    data = tmp_path_factory.mktemp("inkloop-data")
    return migrate(home, data), data


@pytest.fixture(scope="module")
def dags(af):
    """One Airflow process for this module's `airflow dags test` runs."""
    with AirflowCLI(af[0]) as cli:
        yield cli


def test_provider_is_registered(af):
    env, _ = af
    p = run_airflow(env, "providers", "list", "-o", "json")
    assert p.returncode == 0, p.stderr
    names = {x["package_name"] for x in json.loads(p.stdout[p.stdout.index("[") :])}
    assert "inkloop" in names
    hooks = run_airflow(env, "providers", "hooks", "-o", "json")
    assert "labelstudio" in hooks.stdout
    assert "triton" in hooks.stdout


def test_triton_connection_gives_a_model_reference_and_token(af):
    env, _ = af
    conns = {
        "AIRFLOW_CONN_TRITON_DEFAULT": json.dumps(
            {"conn_type": "triton", "host": "http://10.0.0.5:8000", "schema": "sig", "password": "s3cret"}
        ),
        "AIRFLOW_CONN_TRITON_GRPC": json.dumps(
            {"conn_type": "triton", "host": "grpc://10.0.0.5", "port": 8001}
        ),
    }
    code = textwrap.dedent(
        """
        import json, os
        from inkloop_provider.hooks.triton import TritonHook
        from inkloop.detection.triton_backend import TOKEN_ENV
        hook = TritonHook()
        ref, token = hook.get_model_ref()
        with hook.token_in_environment(token):
            inside = os.environ.get(TOKEN_ENV)
        grpc = TritonHook("triton_grpc").get_model_ref()
        print(json.dumps([ref, token, inside, os.environ.get(TOKEN_ENV), grpc]))
        """
    )
    p = subprocess.run(
        [sys.executable, "-c", code], env={**env, **conns}, capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, p.stderr[-3000:]
    ref, token, inside, after, grpc = json.loads(p.stdout.strip().splitlines()[-1])
    assert (ref, token, inside, after) == ("triton://10.0.0.5:8000/sig", "s3cret", "s3cret", None)
    assert grpc == ["triton+grpc://10.0.0.5:8001/signature-detector", None]


def test_every_dag_imports_without_cycles_and_templates_render(af):
    """Every DAG parses, renders its templates as native objects (``conf`` None, ``route`` a bool,
    not strings), gives every operator that reads or writes data the storage connection, and
    passes upstream outputs as XComArgs, not ``ti.xcom_pull`` strings."""
    env, _ = af
    code = textwrap.dedent(
        f"""
        import json
        from airflow.dag_processing.dagbag import DagBag
        from inkloop_provider.hooks.storage import STORAGE_CONN_TEMPLATE
        bag = DagBag(dag_folder={str(ROOT / "dags")!r})
        errors = {{k: str(v)[:500] for k, v in bag.import_errors.items()}}
        out = {{"errors": errors, "dags": {{}}, "rendered": 0, "native": [], "storage": {{}}, "pulls": [],
                "detect": {{}}, "upstream": {{}}}}

        class _Variables:  # no Variable set: the template's default
            @staticmethod
            def get(key, default=None):
                return default

        class _Var:
            value = _Variables

        for dag_id, dag in bag.dags.items():
            # a cycle would make topological sorting fail
            order = [t.task_id for t in dag.topological_sort()] if hasattr(dag, "topological_sort") else []
            if not dag.render_template_as_native_obj:
                out["native"].append(dag_id)
            env = dag.get_template_env()
            params = {{k: dag.params.get_param(k).value for k in dag.params}}
            ctx = {{"params": params, "run_id": "manual__test", "ds": "2026-01-01", "var": _Var}}
            for t in dag.tasks:
                fields = getattr(t, "template_fields", ())
                values = getattr(t, "partial_kwargs", None) or {{}}
                for f in fields:
                    v = values.get(f, getattr(t, f, None)) if values else getattr(t, f, None)
                    if isinstance(v, str):
                        if "xcom_pull" in v:
                            out["pulls"].append(f"{{dag_id}}.{{t.task_id}}.{{f}}")
                        rendered = env.from_string(v).render(**ctx)
                        out["rendered"] += 1
                        if dag_id == "inkloop_detect" and t.task_id == "detect":
                            out["detect"][f] = repr(rendered)
                if "storage_conn_id" in fields:
                    conn = values.get("storage_conn_id", getattr(t, "storage_conn_id", None))
                    out["storage"][f"{{dag_id}}.{{t.task_id}}"] = conn == STORAGE_CONN_TEMPLATE
                if t.task_id == "list_batches":
                    out["storage"][f"{{dag_id}}.list_batches"] = list(t.op_args) == [STORAGE_CONN_TEMPLATE]
            out["dags"][dag_id] = sorted(t.task_id for t in dag.tasks)
            out["upstream"][dag_id] = {{t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks}}
        print("RESULT" + json.dumps(out))
        """
    )
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout.split("RESULT", 1)[1])
    assert res["errors"] == {}
    assert {"inkloop_detect", "inkloop_review_sync", "inkloop_retrain", "inkloop_reexport"} <= set(
        res["dags"]
    )
    assert res["rendered"] >= 3  # model, conf, out_dir templates render with the DAG's params
    assert res["native"] == [], "DAGs rendering templates as strings"
    assert res["pulls"] == [], "XComs pulled by string instead of XComArgs"
    # native: the DAG's defaults arrive as None and booleans, not "None" and "True"
    assert res["detect"]["conf"] == "None" and res["detect"]["route"] == "True", res["detect"]
    assert res["detect"]["storage_conn_id"] == "None"  # no param, no Variable: no connection
    storage = res["storage"]
    every = {
        "inkloop_detect.list_batches",
        "inkloop_detect.detect",
        "inkloop_detect.merge_results",
        "inkloop_review_sync.push_reviews",
        "inkloop_review_sync.pull_reviews",
        "inkloop_review_sync.curate",
        "inkloop_review_curate.pull_reviews",
        "inkloop_review_curate.curate",
        "inkloop_retrain.train",
        "inkloop_retrain.export",
        "inkloop_retrain.gate_and_promote",
        "inkloop_reexport.openvino",
        "inkloop_reexport.tensorrt",
    }
    assert every <= set(storage) and all(storage.values()), storage
    # the pending-review count is reset after a successful curation, never before it
    assert res["upstream"]["inkloop_review_curate"] == {
        "pull_reviews": [],
        "enough_new_reviews": ["pull_reviews"],
        "curate": ["enough_new_reviews"],
        "reset_pending_reviews": ["curate"],
    }


def test_inkloop_detect_dag_maps_batches_and_merges(af, dags, documents_dir):
    _, data = af
    inbox = data / "inbox"
    shutil.copytree(documents_dir, inbox)
    (inbox / "broken.pdf").write_bytes(b"%PDF-1.4\nnot really")
    conf = json.dumps({"inbox": str(inbox), "out_dir": str(data / "results"), "docs_per_batch": 2})
    p = dags.run("dags", "test", "inkloop_detect", "-c", conf)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    assert "state=success" in p.stdout + p.stderr
    summary = json.loads((data / "results" / "summary.json").read_text())
    assert summary["documents"] == 7 and summary["pages"] == 11 and summary["quarantined"] == 1
    parts = list((data / "results" / "parts").glob("*/*"))
    assert len(parts) == 4  # 8 inputs, 2 per batch: four mapped detect tasks


def test_inkloop_detect_reads_and_writes_a_bucket_through_the_storage_connection(af, tmp_path, documents_dir):
    """The inbox and the results in a bucket on a real S3 server (moto on 127.0.0.1), reached
    only through an Airflow connection named by the Variable ``inkloop_storage_conn_id`` (no DAG
    param, no AWS variables): listing, the mapped detect tasks and the merge all use it."""
    from inkloop import storage
    from inkloop.detection.results import QUARANTINE, RESULTS, SUMMARY
    from inkloop.devservers.s3 import S3Server

    env, data = af
    with S3Server(log_dir=tmp_path / "moto") as s3:
        opts = s3.storage_options()
        fs, _ = storage.url_to_fs("s3://dags-test", opts)
        fs.mkdir("dags-test")
        inbox, out = "s3://dags-test/inbox", "s3://dags-test/results"
        for f in sorted(documents_dir.iterdir()):
            storage.write_bytes(storage.join(inbox, f.name), f.read_bytes(), opts)
        storage.write_bytes(storage.join(inbox, "broken.pdf"), b"%PDF-1.4\nnot really", opts)
        conn = {"conn_type": "aws", "login": opts["key"], "password": opts["secret"]}
        conn["extra"] = {"endpoint_url": s3.url}
        run_env = {k: v for k, v in env.items() if not k.startswith("AWS_")}
        run_env.update(
            AIRFLOW_CONN_INKLOOP_S3=json.dumps(conn), AIRFLOW_VAR_INKLOOP_STORAGE_CONN_ID="inkloop_s3"
        )
        conf = json.dumps({"inbox": inbox, "out_dir": out, "docs_per_batch": 3})
        p = run_airflow(run_env, "dags", "test", "inkloop_detect", "-c", conf)
        assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
        assert "state=success" in p.stdout + p.stderr
        summary = json.loads(storage.read_text(storage.join(out, SUMMARY), opts))
        assert summary["documents"] == 7 and summary["pages"] == 11 and summary["quarantined"] == 1
        pages = list(storage.read_log(storage.join(out, RESULTS), opts))
        quarantined = list(storage.read_log(storage.join(out, QUARANTINE), opts))
        assert len(pages) == 11 and [q["source"].rsplit("/", 1)[-1] for q in quarantined] == ["broken.pdf"]
        assert all(q["source"].startswith(inbox) for q in quarantined)
        [run] = storage.listdir(storage.join(out, "parts"), opts)
        assert len(storage.listdir(storage.join(out, "parts", run), opts)) == 3  # 8 inputs, 3 per batch
    for where in (Path(env["AIRFLOW_HOME"]), data, tmp_path, ROOT):
        assert not list(where.glob("s3:*")), f"a storage URL became a local folder in {where}"


def _run_detect(dags, conf):
    t0 = time.monotonic()
    p = dags.run("dags", "test", "inkloop_detect", "-c", json.dumps(conf))
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    assert "state=success" in p.stdout + p.stderr
    return time.monotonic() - t0, p.stdout + p.stderr


def test_inkloop_detect_watches_the_inbox_and_never_processes_a_document_twice(
    af, dags, documents_dir, pages_dir
):
    _, data = af
    inbox, out = data / "watched-inbox", data / "watched-results"
    inbox.mkdir()
    conf = {"inbox": str(inbox), "out_dir": str(out), "docs_per_batch": 2}

    # an empty inbox: the run stops after listing, nothing is detected
    seconds, _ = _run_detect(dags, conf)
    assert not (out / "parts").exists() and not (out / "results.jsonl").exists()
    assert seconds < 60, seconds

    # files dropped: the next run detects them and derives their verdicts
    for name in ("unsigned form.pdf", "letter.jpg", "scanned letters.pdf"):
        shutil.copy(documents_dir / name, inbox / name)
    (inbox / "broken.pdf").write_bytes(b"%PDF-1.4\nnot really")
    _run_detect(dags, conf)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["documents"] == 3 and summary["quarantined"] == 1
    assert sum(summary["verdicts"].values()) == 4  # 3 judged + the quarantined one (needs_review)
    verdicts = [json.loads(x) for x in (out / "verdicts.jsonl").read_text().splitlines()]
    assert len(verdicts) == 4 and {v["verdict"] for v in verdicts} <= set(VERDICTS_ORDER)
    runs_before = {p.name for p in (out / "parts").iterdir()}
    lines_before = (out / "results.jsonl").read_text().count("\n")

    # the same files again (one under a new name) plus one new document: only the new one runs
    shutil.copy(documents_dir / "letter.jpg", inbox / "letter (copy).jpg")
    new_page = sorted(pages_dir.glob("*.png"))[0]
    shutil.copy(new_page, inbox / "new.png")
    _run_detect(dags, conf)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["documents"] == 1 and summary["quarantined"] == 0, summary
    assert sum(summary["verdicts"].values()) == 1
    assert len((out / "verdicts.jsonl").read_text().splitlines()) == 5
    new_runs = {p.name for p in (out / "parts").iterdir()} - runs_before
    assert len(new_runs) == 1 and len(list((out / "parts" / new_runs.pop()).iterdir())) == 1

    # nothing new: no detection at all
    _run_detect(dags, conf)
    assert (out / "results.jsonl").read_text().count("\n") == lines_before + 1
    assert len({p.name for p in (out / "parts").iterdir()} - runs_before) == 1


def test_inkloop_detect_is_scheduled_one_run_at_a_time(af):
    env, _ = af
    code = textwrap.dedent(
        f"""
        import json
        from airflow.dag_processing.dagbag import DagBag
        dag = DagBag(dag_folder={str(ROOT / "dags" / "inkloop_detect.py")!r}).dags["inkloop_detect"]
        print("RESULT" + json.dumps({{"max": dag.max_active_runs, "schedule": dag.timetable.expression}}))
        """
    )
    env = {**env, "INKLOOP_DETECT_SCHEDULE": "*/5 * * * *"}
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout.split("RESULT", 1)[1])
    assert res == {"max": 1, "schedule": "*/5 * * * *"}

"""MLflow tracking, the MLflow registry in the lifecycle, and `inkloop tune`, against real services.

A real MLflow server (session fixture ``mlflow_server``) and a real Optuna SQLite storage; real
(tiny) trainings on the committed fixture pages. Test names start with ``test_mlflow`` where
ultralytics' own MLflow callback should run: it stays silent under pytest otherwise.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixture_data import make_dataset

from inkloop.lifecycle.retrain import retrain
from inkloop.lifecycle.tracking import OFFLINE_DIR, RUN_FILE, start_run
from inkloop.models.mlflow_registry import MlflowRegistry
from inkloop.models.references import ModelError
from inkloop.models.resolve import resolve_model
from inkloop.net import free_port

ROOT = Path(__file__).resolve().parents[1]
NAME = "signature-detector"
TINY = {"epochs": 1, "batch": 2, "cache": "", "plots": False, "imgsz": 160}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, pages_dir: Path) -> Path:
    return make_dataset(tmp_path_factory.mktemp("ds"), pages_dir)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inkloop", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def test_no_tracking_uri_changes_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_MLFLOW", raising=False)
    tracker = start_run("train", run_dir=tmp_path)
    assert not tracker.active and tracker.child_env() == {}
    tracker.log_metrics({"a": 1.0})  # all no-ops
    tracker.end()
    assert list(tmp_path.iterdir()) == []


def test_mlflow_retrain_export_promote_rollback_through_mlflow_registry(
    tmp_path: Path, dataset: Path, mlflow_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = mlflow_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "lifecycle-test")
    reg = MlflowRegistry(f"mlflow+{url}", cache_dir=tmp_path / "cache")
    for rm in reg.client.search_registered_models(max_results=1000):
        reg.client.delete_registered_model(rm.name)
    bundled = resolve_model(None)
    v1 = reg.register(NAME, bundled.path, bundled.card, pt_path=bundled.path.with_name("model.pt"))
    reg.promote(NAME, v1)
    assert resolve_model(f"mlflow://{NAME}@production").card.version == v1

    # Retrain from the MLflow registry's production, tracked.
    run = retrain(
        dataset,
        tmp_path / "runs" / "ft",
        start_from=f"mlflow://{NAME}@production",
        overrides={**TINY, "imgsz": bundled.card.input_size, "lr0": 1e-5, "warmup_epochs": 0, "mosaic": 0.0},
    )
    assert run.ok, run.message
    rec = json.loads((run.run_dir / RUN_FILE).read_text())
    client = reg.client
    mrun = client.get_run(rec["run_id"])
    assert mrun.data.params["seed"] == "0" and mrun.data.params["data_version"].startswith("sha256:")
    assert mrun.data.params["parent.ref"] == f"mlflow://{NAME}@production"
    assert client.get_metric_history(rec["run_id"], "metrics/mAP50B"), (
        "per-epoch metrics (ultralytics' callback)"
    )
    arts = {a.path for a in client.list_artifacts(rec["run_id"], "run")}
    assert {"run/recipe.json", "run/data_manifest.json"} <= arts

    # Export registers the ONNX (with its signature) and the card as an MLflow model version.
    p = run_cli(
        "export", str(run.run_dir), "--out", str(tmp_path / "export"), "--data", str(dataset),
        "--registry", "mlflow", "--formats", "", "--json",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    v2 = json.loads(p.stdout)["version"]
    assert reg.aliases(NAME) == {"candidate": v2, "production": v1}
    card = reg.show(NAME, v2)
    mv = client.get_model_version(NAME, card.extra["mlflow"]["version"])
    from mlflow.models import get_model_info

    assert get_model_info(f"models:/{NAME}/{mv.version}").signature.inputs.input_names() == ["images"]
    mrun = client.get_run(rec["run_id"])
    assert "eval.test.f1" in mrun.data.metrics and "eval.test.map50_95" in mrun.data.metrics
    assert any(k.startswith("eval.test.group.") for k in mrun.data.metrics)
    arts = {a.path for a in client.list_artifacts(rec["run_id"], "eval.test")}
    assert {"eval.test/report.json", "eval.test/pr_curve.png", "eval.test/errors.jsonl"} <= arts

    # Promote through the same gate; the decision lands in the training's run; rollback moves back.
    p = run_cli(
        "promote", NAME, "--data", str(dataset), "--registry", "mlflow", "--margin", "0",
        "--max-latency-ratio", "3", "--json",
    )  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    assert json.loads(p.stdout)["promoted"]
    assert reg.alias(NAME, "production") == v2
    tags = client.get_run(rec["run_id"]).data.tags
    assert tags["inkloop.gate.promote"] == "True" and tags["inkloop.gate.reasons"]
    p = run_cli("models", "rollback", NAME, "--registry", "mlflow", "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    assert reg.alias(NAME, "production") == v1

    # An alias pointing at no complete version, and an unknown alias: clear errors, production untouched.
    model_id = card.extra["mlflow"]["model_uri"].removeprefix("models:/")
    bad = client.create_model_version(NAME, source=mv.source, run_id=mv.run_id, model_id=model_id)
    client.set_registered_model_alias(NAME, "broken", bad.version)
    with pytest.raises(ModelError, match="not a complete inkloop version"):
        resolve_model(f"mlflow://{NAME}@broken")
    with pytest.raises(ModelError, match="has no alias or version 'staging'"):
        resolve_model(f"models:/{NAME}@staging")
    assert reg.alias(NAME, "production") == v1


def test_tracking_server_down_keeps_runs_locally_then_syncs(
    tmp_path: Path, dataset: Path, mlflow_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")  # nobody there
    caplog.set_level(logging.WARNING, logger="inkloop.lifecycle.tracking")
    run = retrain(dataset, tmp_path / "run", start_from="yolov8n.yaml", recipe="tiny", overrides=TINY)
    assert run.ok, run.message
    down = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(down) == 1 and "inkloop sync-mlflow-runs" in down[0].getMessage()
    assert (tmp_path / "run" / OFFLINE_DIR / "mlflow.db").is_file()

    url, _ = mlflow_server
    p = run_cli("sync-mlflow-runs", str(tmp_path / "run"), "--json", env={"MLFLOW_TRACKING_URI": url})
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    ids = json.loads(p.stdout)["synced_runs"]
    assert len(ids) == 1
    rec = json.loads((tmp_path / "run" / RUN_FILE).read_text())
    assert rec["run_id"] == ids[0] and rec["tracking_uri"] == url
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url)
    synced = client.get_run(ids[0])
    assert synced.data.params["seed"] == "0"
    assert client.get_metric_history(ids[0], "metrics/mAP50B")  # epochs from results.csv
    assert {a.path for a in client.list_artifacts(ids[0], "run")} >= {"run/recipe.json"}


def test_evaluate_tracked_to_mlflow_keeps_json_output_clean(
    tmp_path: Path, pages_dir: Path, mlflow_server: tuple[str, Path]
) -> None:
    """With a tracking URI, `inkloop evaluate --json` logs one run and stdout stays one JSON document
    (MLflow would otherwise print "View run … at: URL" on stdout when the run ends)."""
    url, _ = mlflow_server
    env = {"MLFLOW_TRACKING_URI": url, "MLFLOW_EXPERIMENT_NAME": "evaluate-json"}
    p = run_cli("evaluate", "--data", str(pages_dir), "--out", str(tmp_path / "eval"), "--json", env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    report = json.loads(p.stdout)
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url)
    exp = client.get_experiment_by_name("evaluate-json")
    runs = client.search_runs([exp.experiment_id]) if exp else []
    assert len(runs) == 1 and runs[0].data.metrics["eval.val.map50"] == pytest.approx(report["map50"])


def _trial_states(storage: str) -> list[tuple[int, str, dict]]:
    import optuna

    study = optuna.load_study(study_name="inkloop-tune", storage=storage)
    return [(t.number, t.state.name, dict(t.system_attrs)) for t in study.get_trials(deepcopy=False)]


def test_tune_killed_mid_trial_resumes_and_best_recipe_trains(
    tmp_path: Path, dataset: Path, mlflow_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = mlflow_server
    out = tmp_path / "sweep"
    storage = f"sqlite:///{out / 'study.db'}"
    args = [
        "tune", "--data", str(dataset), "--out", str(out), "--recipe", "tiny", "--model", "yolov8n.yaml",
        "--trials", "2", "--epochs", "2", "--imgsz", "160", "--heartbeat", "1", "--json",
    ]  # fmt: skip
    env = {**os.environ, "MLFLOW_TRACKING_URI": url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "inkloop", *args], env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        first_epoch = out / "trials" / "trial-0000" / "results.csv"
        deadline = time.monotonic() + 240
        while not first_epoch.exists():  # mid-trial: one epoch of two done
            assert proc.poll() is None and time.monotonic() < deadline, (
                "the sweep never reached its first epoch"
            )
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert [s for _, s, _ in _trial_states(storage)] == ["RUNNING"]
    time.sleep(4)  # past the grace period: the heartbeat is stale

    p = run_cli(*args, env={"MLFLOW_TRACKING_URI": url})
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    summary = json.loads(p.stdout)
    states = _trial_states(storage)
    assert states[0][1] == "FAIL"
    retried = [s for s in states if s[2].get("failed_trial") == 0]
    assert retried and retried[0][1] in ("COMPLETE", "PRUNED")
    assert sum(s in ("COMPLETE", "PRUNED") for _, s, _ in states) == 2
    best = summary["best"]
    assert best is not None and 0.0 <= best["value"] <= 1.0

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url)
    exp = client.get_experiment_by_name("inkloop-tune-inkloop-tune")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == len(states)  # every trial, the killed one included, is a run
    done = [r for r in runs if r.data.tags.get("optuna.state") == "COMPLETE"]
    assert done and all("objective_f1" in r.data.metrics for r in done)

    recipe_file = Path(best["recipe_file"])
    record = json.loads(recipe_file.read_text())
    assert set(best["params"]) == {"lr0", "box", "cls", "optimizer", "dropout", "imgsz", "epochs"}
    assert record["extra"]["optimizer"] == best["params"]["optimizer"]
    p = run_cli(
        "train", "--data", str(dataset), "--run-dir", str(tmp_path / "tuned"), "--from", "yolov8n.yaml",
        "--recipe-file", str(recipe_file), "--epochs", "1", "--json", "-q",
        env={"MLFLOW_TRACKING_URI": ""},
    )  # fmt: skip
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    trained = json.loads((tmp_path / "tuned" / "recipe.json").read_text())
    assert trained["extra"]["lr0"] == record["extra"]["lr0"] and trained["name"] == record["name"]


def test_tune_prunes_a_trial_and_stops_its_training_after_the_epoch_and_trains_a_baseline(
    tmp_path: Path, dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import optuna

    from inkloop.lifecycle.tuning import tune

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    summary = tune(
        dataset,
        tmp_path / "sweep",
        recipe="tiny",
        model="yolov8n.yaml",
        n_trials=1,
        imgsz=[160],
        epochs=(3, 3),
        pruner=optuna.pruners.ThresholdPruner(lower=2.0),  # every F1 is below 2: prune at once
        baseline=True,
    )
    assert [t["state"] for t in summary["trials"]] == ["PRUNED"] and summary["best"] is None
    # the untuned recipe with the same budget, scored by the same objective, kept for a resume
    base = summary["baseline"]
    assert 0.0 <= base["value"] <= 1.0 and base["recipe"]["epochs"] == 3 and base["recipe"]["imgsz"] == 160
    assert json.loads((tmp_path / "sweep" / "baseline.json").read_text()) == base
    assert json.loads((tmp_path / "sweep" / "study.json").read_text())["baseline"] == base
    results = (tmp_path / "sweep" / "trials" / "trial-0000" / "results.csv").read_text().splitlines()
    assert len(results) == 2  # header + one epoch of three: training stopped cleanly after it
    assert (tmp_path / "sweep" / "trials" / "trial-0000" / "weights" / "last.pt").is_file()


# ------------------------------------------------------------------------------------------------
# The retrain DAG in Airflow against the MLflow server; what it leaves, seen through MLflow's API,
# `inkloop detect` and a real browser. One DAG run (module fixture) serves the three tests.


@pytest.fixture(scope="module")
def dag_promoted(
    tmp_path_factory: pytest.TempPathFactory, dataset: Path, mlflow_server: tuple[str, Path]
) -> dict[str, str]:
    """``inkloop_retrain`` run by ``airflow dags test`` with ``registry=mlflow`` and the tracking server
    given only as the Airflow connection ``mlflow``: train (tracked) → export (an MLflow model
    version, alias candidate) → gate → promote (alias production). Production starts as the bundled
    model registered in MLflow (v1)."""
    from airflow_env import migrate, run_airflow

    url, data_dir = mlflow_server
    tmp = tmp_path_factory.mktemp("dag")
    reg = MlflowRegistry(f"mlflow+{url}", cache_dir=tmp / "cache")
    if NAME in reg.list_models():
        reg.client.delete_registered_model(NAME)
    bundled = resolve_model(None)
    v1 = reg.register(NAME, bundled.path, bundled.card, pt_path=bundled.path.with_name("model.pt"))
    reg.promote(NAME, v1)

    env = migrate(tmp / "airflow", tmp / "data")
    env.pop("MLFLOW_TRACKING_URI", None)  # only the connection says where the server is
    host, port = url.removeprefix("http://").rsplit(":", 1)
    env.update(
        AIRFLOW_CONN_MLFLOW=json.dumps(
            {"conn_type": "http", "host": host, "port": int(port), "schema": "http"}
        ),
        MLFLOW_EXPERIMENT_NAME="inkloop-dag",
    )
    conf = {
        "data": str(dataset),
        "registry": "mlflow",
        "epochs": 1,
        "imgsz": 160,  # MLflow's side of the loop is under test, not the model: a small, fast one
        "margin": -1.0,
        "runs_dir": str(tmp / "runs"),
        "gate_policy": {"max_recall_drop": 1.0, "max_latency_ratio": None},
    }
    p = run_airflow(env, "dags", "test", "inkloop_retrain", "-c", json.dumps(conf), timeout=1500)
    out = p.stdout + p.stderr
    assert p.returncode == 0 and "state=success" in out, out[-6000:]
    return {"url": url, "data_dir": str(data_dir), "v1": v1, "cache": str(tmp / "cache")}


def test_mlflow_retrain_dag_in_airflow_logs_the_run_and_promotes_through_aliases(
    dag_promoted: dict[str, str],
) -> None:
    url = dag_promoted["url"]
    reg = MlflowRegistry(f"mlflow+{url}", cache_dir=dag_promoted["cache"])
    aliases = reg.aliases(NAME)
    v2 = aliases["production"]
    assert v2 != dag_promoted["v1"] and aliases["candidate"] == v2
    card = reg.show(NAME, "production")
    client = reg.client
    mv = client.get_model_version_by_alias(NAME, "production")
    assert mv.version == card.extra["mlflow"]["version"]

    exp = client.get_experiment_by_name("inkloop-dag")
    runs = client.search_runs([exp.experiment_id], "tags.`inkloop.kind` = 'train'")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert card.extra["tracking"]["run_id"] == run.info.run_id  # the version knows its training run
    assert mv.tags["inkloop.training_run"] == run.info.run_id  # and says so in MLflow's UI
    params = run.data.params
    assert params["seed"] == "0" and params["data_version"].startswith("sha256:")
    assert params["parent.ref"] == f"registry://{NAME}@production" and params["recipe.epochs"] == "1"
    assert client.get_metric_history(run.info.run_id, "metrics/mAP50B")  # per-epoch
    metrics = run.data.metrics
    assert {"eval.test.f1", "eval.test.precision", "eval.test.map50", "eval.test.map50_95"} <= set(metrics)
    assert run.data.tags["inkloop.gate.promote"] == "True" and run.data.tags["inkloop.gate.reasons"]
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "eval.test")}
    assert {"eval.test/report.json", "eval.test/pr_curve.png", "eval.test/errors.jsonl"} <= arts
    assert {a.path for a in client.list_artifacts(run.info.run_id, "run")} >= {
        "run/recipe.json",
        "run/data_manifest.json",
    }


def test_detect_with_mlflow_production_gives_the_boxes_of_the_registered_file(
    dag_promoted: dict[str, str], tmp_path: Path, documents_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``inkloop detect --model mlflow://…@production`` and the same version's file, downloaded
    through MLflow's own API (``models:/name@production``) with its card, give the same boxes."""
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts

    url = dag_promoted["url"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)  # `models:/` resolves through it, not `tracking_uri`
    local = Path(
        download_artifacts(f"models:/{NAME}@production", dst_path=str(tmp_path / "m"), tracking_uri=url)
    )
    mv = MlflowClient(tracking_uri=url).get_model_version_by_alias(NAME, "production")
    card_file = download_artifacts(
        run_id=mv.run_id, artifact_path="inkloop/card.json", dst_path=str(tmp_path / "c"), tracking_uri=url
    )
    onnx_file = local / "model.onnx"
    shutil.copy(card_file, local / "card.json")  # load_local reads the card beside the file
    card = json.loads((local / "card.json").read_text())
    assert card["version"] == MlflowRegistry(f"mlflow+{url}").alias(NAME, "production")

    docs = tmp_path / "docs"
    docs.mkdir()
    for f in ("letter.jpg", "scanned letters.pdf"):
        shutil.copy(documents_dir / f, docs / f)
    boxes = {}
    for label, model in (("mlflow", f"mlflow://{NAME}@production"), ("file", str(onnx_file))):
        out = tmp_path / label
        p = run_cli(
            "detect",
            str(docs),
            "--model",
            model,
            "--out",
            str(out),
            "--json",
            env={"MLFLOW_TRACKING_URI": url},
        )
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
        rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
        assert {r["model_version"] for r in rows} == {f"{NAME}@{card['version']}"}
        boxes[label] = {r["page_key"]: [(d["xyxy"], d["score"]) for d in r["detections"]] for r in rows}
    assert boxes["mlflow"] == boxes["file"] and boxes["file"]


def test_mlflow_ui_shows_the_run_the_model_version_and_its_aliases(
    dag_promoted: dict[str, str], tmp_path: Path, chromium: tuple[str, dict[str, str]]
) -> None:
    """MLflow's own web UI, in a real headless browser (Debian's chromium driven by Playwright): the
    registered model with both aliases, the production version naming its training run, and that
    run with its parameters."""
    browser_path, browser_env = chromium
    from playwright.sync_api import sync_playwright

    url = dag_promoted["url"]
    reg = MlflowRegistry(f"mlflow+{url}")
    production = reg.client.get_model_version_by_alias(NAME, "production")
    training_run_id = production.tags["inkloop.training_run"]  # the version's own run holds its files
    run = reg.client.get_run(training_run_id)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, args=["--no-sandbox"], env=browser_env)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        # the registered model: its versions and where each alias points
        page.goto(f"{url}/#/models/{NAME}")
        page.get_by_text("production", exact=False).first.wait_for(timeout=60_000)
        text = page.inner_text("body")
        assert "candidate" in text and f"Version {production.version}" in text
        page.screenshot(path=str(tmp_path / "model.png"), full_page=True)
        # the model version: its aliases and the run it came from
        page.goto(f"{url}/#/models/{NAME}/versions/{production.version}")
        page.get_by_text(training_run_id).first.wait_for(timeout=60_000)  # tag inkloop.training_run
        text = page.inner_text("body")
        assert "production" in text and "candidate" in text and "Source Run" in text
        page.screenshot(path=str(tmp_path / "version.png"), full_page=True)
        # the training run: its params and metrics
        page.goto(f"{url}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}")
        page.get_by_text(run.info.run_name).first.wait_for(timeout=60_000)
        page.get_by_text("Parameters (").first.wait_for(timeout=30_000)
        page.get_by_placeholder("Search parameters").fill("data_version")  # the table is long
        page.get_by_text(run.data.params["data_version"]).first.wait_for(timeout=30_000)
        page.screenshot(path=str(tmp_path / "run.png"), full_page=True)
        browser.close()
    import numpy as np
    from PIL import Image

    for shot in ("model.png", "version.png", "run.png"):
        pixels = np.asarray(Image.open(tmp_path / shot).convert("L"))
        assert pixels.std() > 10, f"{shot} is blank: the UI did not render"
    if os.environ.get("INKLOOP_SAVE_SCREENSHOTS"):  # how docs/images/mlflow-model.png was made
        dest = Path(os.environ["INKLOOP_SAVE_SCREENSHOTS"])
        dest.mkdir(parents=True, exist_ok=True)
        for shot in ("model.png", "version.png", "run.png"):
            shutil.copy(tmp_path / shot, dest / f"mlflow-{shot}")

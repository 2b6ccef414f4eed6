"""The storage layer (:mod:`inkloop.storage`) and detection on a real S3 endpoint.

The endpoint is moto's standalone server (``moto_server``, a real HTTP server speaking the S3
protocol), started on 127.0.0.1 by :mod:`inkloop.devservers.s3` and stopped by its PID; clients
reach it through s3fs with the endpoint and credentials given the way users give them: the
environment (``AWS_ENDPOINT_URL`` …, for the CLI in a subprocess) or fsspec storage options (the
SDK). Every test checks that no local ``s3:``/``gs:`` folder appeared (pathlib turns
``s3://b/k`` into ``s3:/b/k`` and writes there without an error).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from inkloop import storage
from inkloop.detection.results import read_quarantine, read_results
from inkloop.devservers.s3 import S3Handle, start, stop
from inkloop.net import free_port
from inkloop.storage import StorageError

#: Small fixture documents (one PDF, two images): enough for every path, quick to detect.
DOCS = ("letter.jpg", "contrat signé 2.png", "unsigned form.pdf")
#: botocore options for a quick failure on a closed port (s3fs still retries with back-off: ~9 s).
QUICK = {"connect_timeout": 1, "retries": {"max_attempts": 1}}
AWS_VARS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Handle]:
    """A moto S3 server for the module (about 1 s to start); stopped by its process group."""
    handle = start(log_dir=tmp_path_factory.mktemp("moto"))
    try:
        yield handle
    finally:
        stop(handle)


@pytest.fixture()
def no_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*AWS_VARS, "AWS_PROFILE", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture()
def bucket(s3: S3Handle, no_aws_env: None) -> str:
    """A new, empty bucket (made through storage options, no environment)."""
    name = f"inkloop-{uuid.uuid4().hex[:12]}"
    fs, _ = storage.url_to_fs(f"s3://{name}", s3.storage_options())
    fs.mkdir(name)
    return name


@pytest.fixture(autouse=True)
def no_local_url_folders(tmp_path: Path) -> Iterator[None]:
    """Fail if a URL was turned into a local path anywhere the code could have written."""
    yield
    for where in (Path.cwd(), tmp_path, Path(os.environ.get("TMPDIR", "/tmp"))):
        for name in ("s3:", "gs:"):
            assert not (where / name).exists(), f"a storage URL became a local folder: {where / name}"


def _upload_inbox(s3: S3Handle, documents_dir: Path, url: str, names: tuple[str, ...] = DOCS) -> list[str]:
    urls = []
    for name in names:
        dest = storage.join(url, name)
        storage.write_bytes(dest, (documents_dir / name).read_bytes(), s3.storage_options())
        urls.append(dest)
    return urls


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in AWS_VARS}
    return subprocess.run(
        [sys.executable, "-m", "inkloop", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**clean, **env},
        timeout=600,
    )


# ------------------------------------------------------------------------------------------------
# The layer itself


def test_local_writes_are_whole_and_appends_never_join_a_cut_line(tmp_path: Path) -> None:
    folder = str(tmp_path / "out")
    url = storage.join(folder, "a", "records.jsonl")
    storage.write_jsonl(url, [{"n": 1}])
    assert [r["n"] for r in storage.read_jsonl(url)] == [1]
    assert not [p for p in (tmp_path / "out" / "a").iterdir() if p.name.startswith(".tmp-")]
    with open(url, "a") as f:  # a writer killed mid-line
        f.write('{"n": 2, "cut')
    storage.append_bytes(url, storage.jsonl_bytes([{"n": 3}]))
    assert [r["n"] for r in storage.read_jsonl(url)] == [1, 3]
    assert storage.listdir(folder) == ["a"] and storage.listdir(storage.join(folder, "none")) == []
    assert list(storage.read_jsonl(storage.join(folder, "missing.jsonl"))) == []
    assert storage.join("s3://b/", "/x/", "y.json") == "s3://b/x/y.json"  # a URL stays a URL
    assert storage.file_name("s3://b/in/scan.pdf?versionId=3") == "scan.pdf"
    assert storage.file_name(str(tmp_path / "in" / "folder") + "/") == "folder"


def test_s3_round_trip_with_environment_and_with_options(
    s3: S3Handle, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = f"s3://{bucket}/folder"
    storage.write_text(storage.join(base, "a.txt"), "from options", s3.storage_options())
    for key, value in s3.client_env().items():
        monkeypatch.setenv(key, value)
    # the environment alone now reaches the same server (and the same object)
    assert storage.read_text(storage.join(base, "a.txt")) == "from options"
    assert storage.exists(base) and not storage.exists(storage.join(base, "nothing"))
    storage.append_bytes(storage.join(base, "log.jsonl"), storage.jsonl_bytes([{"n": 1}]))
    storage.append_bytes(storage.join(base, "log.jsonl"), storage.jsonl_bytes([{"n": 2}]))
    assert [r["n"] for r in storage.read_jsonl(storage.join(base, "log.jsonl"))] == [1, 2]
    # past 5 MiB the append is a server-side multipart copy (no download): still every line
    big = storage.jsonl_bytes({"n": i, "pad": "x" * 200} for i in range(3, 30_000))
    storage.append_bytes(storage.join(base, "log.jsonl"), big)
    storage.append_bytes(storage.join(base, "log.jsonl"), storage.jsonl_bytes([{"n": -1}]))
    ns = [r["n"] for r in storage.read_jsonl(storage.join(base, "log.jsonl"))]
    assert ns[:3] == [1, 2, 3] and ns[-1] == -1 and len(ns) == 30_000
    assert storage.listdir(base) == ["a.txt", "log.jsonl"]  # the append's temporary part is gone
    # a log whose appends cost the same however long it is: segments once the file is full
    log = storage.join(base, "verdicts.jsonl")
    for i in range(5):
        storage.append_log(log, storage.jsonl_bytes([{"n": i}]), segment_bytes=20)  # 9 bytes a line
    assert [r["n"] for r in storage.read_log(log)] == [0, 1, 2, 3, 4]
    assert storage.log_segments(log) == [
        f"{base}/verdicts.d/00000001.jsonl",
        f"{base}/verdicts.d/00000002.jsonl",
    ]
    storage.write_log(log, [{"n": 9}])  # compaction: one file again
    assert [r["n"] for r in storage.read_log(log)] == [9] and storage.log_segments(log) == []
    assert storage.find(base) == [
        f"s3://{bucket}/folder/{n}" for n in ("a.txt", "log.jsonl", "verdicts.jsonl")
    ]


def test_errors_name_the_url_and_the_reason(s3: S3Handle, bucket: str) -> None:
    opts = s3.storage_options()
    missing = f"s3://no-such-{uuid.uuid4().hex[:8]}/results"
    with pytest.raises(StorageError) as e:
        storage.require_folder(missing, opts)
    assert e.value.kind == "no_bucket" and missing in str(e.value) and "does not exist" in str(e.value)
    with pytest.raises(StorageError) as e:  # "not there" only where the object is missing
        storage.exists(storage.join(missing, "x"), opts)
    assert e.value.kind == "no_bucket"
    gone = f"s3://{bucket}/never-written.pdf"
    with pytest.raises(StorageError) as e:
        storage.read_bytes(gone, opts)
    assert e.value.kind == "not_found" and gone in str(e.value)
    closed = {**opts, "endpoint_url": f"http://127.0.0.1:{free_port()}", "config_kwargs": QUICK}
    with pytest.raises(StorageError) as e:
        storage.require_folder(f"s3://{bucket}/results", closed)
    assert e.value.kind == "unreachable" and "unreachable" in str(e.value) and bucket in str(e.value)


def test_iam_emulation_wrong_credentials_and_write_denied(tmp_path: Path, documents_dir: Path) -> None:
    """moto checks credentials and policies only with its IAM emulation on: the first 7 requests
    (bucket, users, keys, policies) are made before it starts checking."""
    handle = start(log_dir=tmp_path, env={"INITIAL_NO_AUTH_ACTION_COUNT": "7"})
    try:
        reader, admin = _iam_users(handle, "iam-bkt")
        bad = {**reader, "key": "AKIAWRONGWRONGWRONG1", "secret": "wrong"}
        with pytest.raises(StorageError) as e:
            storage.require_folder("s3://iam-bkt/results", bad)
        assert e.value.kind == "credentials" and "s3://iam-bkt/results" in str(e.value)
        storage.write_text("s3://iam-bkt/ok.txt", "admin may", admin)
        assert storage.read_text("s3://iam-bkt/ok.txt", reader) == "admin may"
        with pytest.raises(StorageError) as e:
            storage.write_text("s3://iam-bkt/results/summary.json", "{}", reader)
        assert e.value.kind == "denied" and "s3://iam-bkt/results/summary.json" in str(e.value)
        # a detection run that may read the inbox but not write its results: it fails naming the
        # URL and the reason, nothing is marked seen, and a run allowed to write does the document
        from inkloop.detection.pipeline import DetectionRun, DetectOptions

        storage.write_bytes("s3://iam-bkt/inbox/letter.jpg", (documents_dir / DOCS[0]).read_bytes(), admin)
        with pytest.raises(StorageError) as e:
            DetectionRun("s3://iam-bkt/results", DetectOptions(storage_options=reader)).run(
                ["s3://iam-bkt/inbox"]
            )
        assert e.value.kind == "denied" and "s3://iam-bkt/results/" in str(e.value)
        summary = DetectionRun("s3://iam-bkt/results", DetectOptions(storage_options=admin)).run(
            ["s3://iam-bkt/inbox"]
        )
        assert summary.documents == 1 and summary.skipped == 0
    finally:
        stop(handle)


def _iam_users(handle: S3Handle, bucket: str) -> tuple[dict[str, str], dict[str, str]]:
    """A bucket, a read-only user and an admin (7 unauthenticated requests); their options."""
    import boto3

    kw = {
        "endpoint_url": handle.url,
        "aws_access_key_id": "bootstrap",
        "aws_secret_access_key": "bootstrap",
        "region_name": "us-east-1",
    }
    boto3.client("s3", **kw).create_bucket(Bucket=bucket)
    iam = boto3.client("iam", **kw)
    read_only = {
        "Effect": "Allow",
        "Action": ["s3:Get*", "s3:List*", "s3:Head*"],  # moto authorizes HEAD as s3:HeadObject
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
    }
    everything = {"Effect": "Allow", "Action": "*", "Resource": "*"}
    out = []
    for user, statement in (("reader", read_only), ("admin", everything)):
        iam.create_user(UserName=user)
        key = iam.create_access_key(UserName=user)["AccessKey"]
        doc = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
        iam.put_user_policy(UserName=user, PolicyName=f"{user}-policy", PolicyDocument=doc)
        out.append({"endpoint_url": handle.url, "key": key["AccessKeyId"], "secret": key["SecretAccessKey"]})
    return out[0], out[1]


def _page(doc: str) -> dict[str, object]:
    from inkloop.types import Page, PageResult

    return PageResult(Page(doc_id=doc, index=0, width=10, height=10), [], "m", source=f"{doc}.png").to_dict()


def test_a_folder_without_index_gets_one_and_merges_are_idempotent_by_doc_id(tmp_path: Path) -> None:
    from inkloop.detection.results import ResultStore, merge_parts

    old = tmp_path / "old"  # as an inkloop before the index wrote it
    storage.write_jsonl(str(old / "results.jsonl"), [{**_page("aa01"), "run_id": "20260101T000000-1"}])
    storage.write_jsonl(
        str(old / "quarantine.jsonl"),
        [
            {"kind": "quarantine", "source": s, "doc_id": d, "error": e, "reason": "r", "run_id": "1"}
            for s, d, e in (("b", "bb01", "corrupt"), ("c", "cc01", "inference_unavailable"))
        ],
    )
    with ResultStore(old) as store:
        assert store.is_done("aa01") and store.is_done("bb01") and not store.is_done("cc01")
    assert (old / "index" / "FORMAT").exists() and (old / "index" / "aa.tsv").exists()

    parts = []
    for name, docs in (("p1", ("dd01", "ee01")), ("p2", ("ee01", "ff01"))):
        with ResultStore(tmp_path / name) as store:
            for d in docs:
                store.add_records([{**_page(d), "run_id": store.run_id}])
        parts.append(str(tmp_path / name))
    out = str(tmp_path / "merged")
    assert merge_parts(out, parts).documents == 3
    assert merge_parts(out, parts).documents == 0  # merged again: nothing new, nothing doubled
    assert sorted(r.page.doc_id for r in read_results(out)) == ["dd01", "ee01", "ff01"]
    assert (tmp_path / "merged" / "results.jsonl").read_text().count("\n") == 3


# ------------------------------------------------------------------------------------------------
# Detection on the bucket


def test_cli_detects_from_a_bucket_into_a_bucket(
    s3: S3Handle, bucket: str, documents_dir: Path, tmp_path: Path
) -> None:
    inbox, out = f"s3://{bucket}/inbox", f"s3://{bucket}/results"
    _upload_inbox(s3, documents_dir, inbox)
    env = s3.client_env()
    p = _cli(
        "detect", inbox, "--out", out, "--json", "-q", "--annotate", "--annotate-pdf", env=env, cwd=tmp_path
    )
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert summary["documents"] == 3 and summary["out_dir"] == out and summary["verdicts"] is not None
    with storage.scoped_options(s3.storage_options()):
        results = read_results(out)
        files = set(storage.listdir(out))
        annotated = storage.listdir(storage.join(out, "annotated"))
        verdicts = list(storage.read_jsonl(storage.join(out, "verdicts.jsonl")))
    assert {r.source for r in results} == {storage.join(inbox, n) for n in DOCS}
    assert {"results.jsonl", "summary.json", "verdicts.jsonl", "index", "runs"} <= files
    assert len([a for a in annotated if a.endswith(".png")]) == len(results)
    assert len([a for a in annotated if a.endswith(".pdf")]) == 1
    assert len(verdicts) == 3 and all(v["verdict"] != "needs_review" for v in verdicts)
    assert not list(tmp_path.iterdir())  # nothing written in the working directory
    again = _cli("detect", inbox, "--out", out, "--json", "-q", env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["skipped"] == 3 and json.loads(again.stdout)["documents"] == 0


def test_sdk_detects_with_storage_options_only(s3: S3Handle, bucket: str, documents_dir: Path) -> None:
    from inkloop.api import DetectOptions, detect

    inbox, out = f"s3://{bucket}/in", f"s3://{bucket}/out"
    _upload_inbox(s3, documents_dir, inbox, DOCS[:2])
    opts = DetectOptions(storage_options=s3.storage_options())
    assert "AWS_ENDPOINT_URL" not in os.environ  # only the options know where the server is
    summary = detect([inbox], out, opts)
    assert summary.documents == 2 and summary.quarantined == 0 and summary.out_dir == out
    with storage.scoped_options(s3.storage_options()):
        assert len({r.page.doc_id for r in read_results(out)}) == 2
        assert json.loads(storage.read_text(storage.join(out, "summary.json")))["run_id"] == summary.run_id
    assert detect([inbox], out, opts).skipped == 2


def test_unreachable_endpoint_fails_the_cli_naming_the_url(s3: S3Handle, tmp_path: Path) -> None:
    env = {**s3.client_env(), "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    env["FSSPEC_S3"] = json.dumps(
        {"config_kwargs": QUICK}
    )  # fsspec's own configuration, from the environment
    p = _cli("detect", "s3://somewhere/inbox", "--out", "s3://somewhere/results", "-q", env=env, cwd=tmp_path)
    assert p.returncode == 1
    assert "storage error" in p.stderr and "s3://somewhere/inbox" in p.stderr and "unreachable" in p.stderr


def test_missing_results_bucket_fails_before_any_work(s3: S3Handle, bucket: str, documents_dir: Path) -> None:
    from inkloop.detection.pipeline import DetectionRun, DetectOptions

    inbox = f"s3://{bucket}/inbox"
    _upload_inbox(s3, documents_dir, inbox, DOCS[:1])
    out = f"s3://missing-{uuid.uuid4().hex[:8]}/results"
    with pytest.raises(StorageError) as e:
        DetectionRun(out, DetectOptions(storage_options=s3.storage_options())).run([inbox])
    assert e.value.kind == "no_bucket" and out in str(e.value)


def test_a_run_that_cannot_write_leaves_its_documents_for_the_next(
    s3: S3Handle, bucket: str, documents_dir: Path
) -> None:
    """The results bucket disappears mid-run (after the check at the start): the run fails naming
    the URL, nothing is marked seen, and the next run processes every document."""
    from inkloop.detection.pipeline import DetectionRun, DetectOptions

    inbox = f"s3://{bucket}/inbox"
    _upload_inbox(s3, documents_dir, inbox, DOCS[:2])
    results_bucket = f"inkloop-res-{uuid.uuid4().hex[:8]}"
    out = f"s3://{results_bucket}/results"
    opts = DetectOptions(storage_options=s3.storage_options())
    fs, _ = storage.url_to_fs(out, s3.storage_options())
    fs.mkdir(results_bucket)

    deleted = []

    def delete_bucket(event: str, info: dict[str, object]) -> None:
        if event == "document" and not deleted:
            fs.rmdir(results_bucket)  # empty until the run commits
            deleted.append(results_bucket)

    with pytest.raises(StorageError) as e:
        DetectionRun(out, opts).run([inbox], delete_bucket)
    assert e.value.kind == "no_bucket" and results_bucket in str(e.value)
    fs.mkdir(results_bucket)
    summary = DetectionRun(out, opts).run([inbox])
    assert summary.documents == 2 and summary.skipped == 0


def test_an_object_deleted_mid_run_is_quarantined_and_done_by_the_next_run(
    s3: S3Handle, bucket: str, documents_dir: Path
) -> None:
    from inkloop.detection.pipeline import DetectionRun, DetectOptions

    inbox, out = f"s3://{bucket}/inbox", f"s3://{bucket}/results"
    urls = _upload_inbox(s3, documents_dir, inbox, DOCS[:2])
    opts = DetectOptions(storage_options=s3.storage_options())

    def delete_one(event: str, info: dict[str, object]) -> None:
        if event == "start":  # listed, not yet opened
            storage.delete(urls[1], s3.storage_options())

    summary = DetectionRun(out, opts).run([inbox], delete_one)
    assert summary.documents == 1 and summary.quarantined == 1
    with storage.scoped_options(s3.storage_options()):
        (q,) = read_quarantine(out)
    assert q.source == urls[1] and q.error == "not_found" and q.doc_id is None
    _upload_inbox(s3, documents_dir, inbox, DOCS[1:2])  # back again: the next run takes it
    again = DetectionRun(out, opts).run([inbox])
    assert again.documents == 1 and again.skipped == 1


def test_asset_uris_are_the_storage_urls(tmp_path: Path) -> None:
    """With ``INKLOOP_DATA`` in a bucket, the Assets linking the DAGs name the bucket's URLs; a
    local root gives ``file://`` URIs of the absolute path (Airflow is imported in a child)."""
    check = (
        "from inkloop_provider.assets import RESULTS, TRAINING_DATA, PRODUCTION_MODEL\n"
        "print(RESULTS.uri, TRAINING_DATA.uri, PRODUCTION_MODEL.uri)\n"
    )
    root = Path(__file__).resolve().parents[1]
    uris = {}
    for data in ("s3://inkloop-data/loop", str(tmp_path / "data")):
        p = subprocess.run(
            [sys.executable, "-c", check],
            env={
                "PYTHONPATH": str(root / "plugins"),
                "PATH": "/usr/bin:/bin",
                "HOME": str(Path.home()),
                "AIRFLOW_HOME": os.environ["AIRFLOW_HOME"],
                "INKLOOP_DATA": data,
            },
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert p.returncode == 0, p.stderr[-3000:]
        uris[data] = p.stdout.split()
    assert uris["s3://inkloop-data/loop"] == [
        "s3://inkloop-data/loop/results",
        "s3://inkloop-data/loop/datasets",
        "s3://inkloop-data/loop/registry/production",
    ]
    assert uris[str(tmp_path / "data")][0] == f"file://{tmp_path}/data/results"


def test_operators_take_the_endpoint_and_keys_from_an_airflow_connection(
    s3: S3Handle, bucket: str, documents_dir: Path, tmp_path: Path
) -> None:
    """The detect and merge operators, run in a child with Airflow, reach the bucket through a
    connection (``AIRFLOW_CONN_…``, type ``aws``: keys in login/password, endpoint in extra) and
    no AWS variable in their environment."""
    inbox = f"s3://{bucket}/inbox"
    _upload_inbox(s3, documents_dir, inbox, DOCS[:1])
    check = (
        "from inkloop_provider.operators.detect import InkloopDetectOperator\n"
        "from inkloop_provider.operators.results import InkloopMergeResultsOperator\n"
        f"part = 's3://{bucket}/results/parts/r/0000'\n"
        f"d = InkloopDetectOperator(task_id='d', inputs=['{inbox}'], out_dir=part, verdict=False,\n"
        "                           storage_conn_id='inkloop_s3').execute({})\n"
        f"m = InkloopMergeResultsOperator(task_id='m', out_dir='s3://{bucket}/results', parts=[part],\n"
        "                                 storage_conn_id='inkloop_s3').execute({'outlet_events': {}})\n"
        "print(d['documents'], m['documents'])\n"
    )
    keys = s3.client_env()
    conn = {
        "conn_type": "aws",
        "login": keys["AWS_ACCESS_KEY_ID"],
        "password": keys["AWS_SECRET_ACCESS_KEY"],
        "extra": {"endpoint_url": s3.url},
    }
    root = Path(__file__).resolve().parents[1]
    p = subprocess.run(
        [sys.executable, "-c", check],
        env={
            "PYTHONPATH": str(root / "plugins"),
            "PATH": "/usr/bin:/bin",
            "HOME": str(Path.home()),
            "AIRFLOW_HOME": os.environ["AIRFLOW_HOME"],
            "AIRFLOW_CONN_INKLOOP_S3": json.dumps(conn),
            "HF_HUB_OFFLINE": "1",
        },
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.split()[-2:] == ["1", "1"]
    with storage.scoped_options(s3.storage_options()):
        assert len(read_results(f"s3://{bucket}/results")) == 1

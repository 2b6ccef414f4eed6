"""Curation and training with their data in a bucket (issue #34, point 1): a real S3 server.

The endpoint is moto's standalone server (``inkloop.devservers.s3``, the fixtures of
tests/test_storage.py, including its check that no local ``s3:``/``gs:`` folder appears); FiftyOne
is the real one with its own MongoDB (as in tests/test_curate.py); training is a real, tiny
ultralytics run in a child process. Clients find the endpoint the way users give it: the AWS
environment variables (for the CLI in a subprocess, and the SDK here).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("FIFTYONE_DATABASE_DIR", str(ROOT / ".cache" / "fiftyone-db"))
os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")

import test_curate  # noqa: E402
import test_storage  # noqa: E402
from fixture_data import make_dataset  # noqa: E402

from inkloop import storage  # noqa: E402
from inkloop.curation.media import MediaCache  # noqa: E402
from inkloop.curation.records import CurationError  # noqa: E402
from inkloop.curation.store import CurationStore  # noqa: E402
from inkloop.devservers.s3 import S3Handle  # noqa: E402
from inkloop.storage import StorageError  # noqa: E402

# The S3 fixtures of tests/test_storage.py: the moto server (per module), a fresh bucket, and the
# autouse check that no local `s3:`/`gs:` folder appeared.
s3 = test_storage.s3
bucket = test_storage.bucket
no_aws_env = test_storage.no_aws_env
no_local_url_folders = test_storage.no_local_url_folders
# Uniquely named FiftyOne datasets, deleted when the module ends (tests/test_curate.py's).
make_store = test_curate.make_store

PAGES = ROOT / "tests" / "fixtures" / "pages"


@pytest.fixture()
def s3_env(s3: S3Handle, bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """The endpoint and keys in the environment (as users set them), a media cache and training
    scratch in the test's folder; returns the bucket's URL."""
    for key, value in s3.client_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("INKLOOP_MEDIA_CACHE", str(tmp_path / "media"))
    monkeypatch.setenv("INKLOOP_SCRATCH", str(tmp_path / "scratch"))
    return f"s3://{bucket}"


def _fixture_pages() -> list[tuple[str, Path, int, int, list[Any]]]:
    """(key, image, width, height, ground truth in page pixels) of the committed fixture pages."""
    from PIL import Image

    from inkloop.convert.yolo import from_yolo, read_labels
    from inkloop.types import Detection

    out = []
    for img in sorted(p for p in PAGES.iterdir() if p.suffix in (".png", ".jpg")):
        with Image.open(img) as im:
            w, h = im.size
        gt = [
            Detection("signature", 1.0, from_yolo(box, w, h))
            for _, box in read_labels(img.with_suffix(".txt").read_text())
        ]
        out.append((img.stem.split("_jpg")[0], img, w, h, gt))
    return out


def _results_in_bucket(base: str) -> tuple[str, str]:
    """A results folder and a reviews file in the bucket, as detection and `review pull` write
    them: the fixture pages are the source documents (stored in the bucket too), every page
    reviewed with its labels. Returns (results URL, reviews URL)."""
    from inkloop.detection.results import ResultStore
    from inkloop.review.labelstudio import ReviewedPage
    from inkloop.types import Page, PageResult

    results, reviews = storage.join(base, "results"), storage.join(base, "reviews.jsonl")
    pulled = []
    with ResultStore(results) as rs:
        for i, (key, img, w, h, gt) in enumerate(_fixture_pages()):
            source = storage.write_bytes(storage.join(base, "inbox", img.name), img.read_bytes())
            page = Page(doc_id=f"doc-{key}", index=0, width=w, height=h)
            rs.write_document([PageResult(page, gt, "test-model", source=source)])
            pulled.append(ReviewedPage(page.page_key, i + 1, "submitted", gt, w, h, "x.png").to_dict())
    storage.write_jsonl(reviews, pulled)
    return results, reviews


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _inkloop(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI in a subprocess with this process's environment (the endpoint and keys included),
    run from the test's folder (where a URL turned into a path would leave an `s3:` folder)."""
    return subprocess.run(
        [sys.executable, "-m", "inkloop", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def _stored_dataset(tmp_path: Path, url: str) -> Path:
    """The fixture YOLO dataset (two train pages, one val, two test) made locally and uploaded to
    ``url``; returns the local folder."""
    from inkloop.storage.folders import upload_folder

    local = make_dataset(tmp_path / "ds", PAGES)
    upload_folder(local, url)
    return local


# ------------------------------------------------------------------------------------------------
# Curation


def test_import_from_a_bucket_caches_media_and_exports_versions_into_the_bucket(
    s3_env: str, make_store: Callable[[], CurationStore], tmp_path: Path
) -> None:
    results, reviews = _results_in_bucket(s3_env)
    store = make_store()
    from inkloop.curation.cycle import import_results

    summary = import_results(store, results, reviews)
    pages = len(_fixture_pages())
    assert (summary["added"], summary["reviewed"], summary["unrenderable_sources"]) == (pages, pages, {})
    images = storage.join(results, "review-images")
    assert summary["images_dir"] == images  # rendered into the bucket, beside the results
    stored = storage.listdir(images)
    assert len(stored) == pages and all(n.endswith(".png") for n in stored)

    # FiftyOne reads local copies: content-addressed files in the cache, the URL kept on the sample
    paths, urls = store.dataset.values(["filepath", "media_url"])
    cache = tmp_path / "media" / "objects"
    for path, url in zip(paths, urls, strict=True):
        assert Path(path).is_relative_to(cache) and url.startswith(images + "/")
        assert Path(path).stem == _sha256(path) == hashlib.sha256(storage.read_bytes(url)).hexdigest()

    # a version exported into the bucket: every file of the manifest is there, manifest last
    out = storage.join(s3_env, "datasets")
    v1 = store.export_yolo(out, version="v1")
    assert v1["path"] == storage.join(out, "v1") and v1["data_yaml"] == storage.join(out, "v1", "data.yaml")
    manifest = json.loads(storage.read_text(storage.join(v1["path"], "manifest.json")))
    assert manifest["data_version"] == v1["data_version"] and manifest["version"] == "v1"
    listed = {f.removeprefix(v1["path"] + "/") for f in storage.find(v1["path"])}
    assert listed == {*manifest["files"], "data.yaml", "manifest.json"}
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256(storage.read_bytes(storage.join(v1["path"], rel))).hexdigest() == digest
    assert not list(Path(os.environ.get("TMPDIR", "/tmp")).glob("inkloop-export-*/manifest.json"))

    # the same data again: the stored version is reused; a different name is a new version
    assert store.export_yolo(out, version="v1")["reused"] is True
    assert store.export_yolo(out)["version"].startswith("sha256-")

    # an upload cut short (no manifest.json, a stray file): the next export replaces what it left
    storage.delete(storage.join(v1["path"], "manifest.json"))
    stray = storage.write_bytes(storage.join(v1["path"], "images", "train", "stray.png"), b"x")
    again = store.export_yolo(out, version="v1")
    assert again["reused"] is False and again["data_version"] == v1["data_version"]
    assert not storage.exists(stray) and storage.exists(storage.join(v1["path"], "manifest.json"))
    from inkloop.lifecycle.promotion import latest_export

    assert latest_export(out) == v1["path"] and latest_export(v1["path"]) == v1["path"]  # what retrain takes

    # other data under an existing version's name is refused, naming the version
    sample = store.reviewed().match(store.fo.ViewField("split").is_in(["train", "val", "test"])).first()
    sample["ground_truth"] = store.fo.Detections(detections=[])  # reviewed again: no signature
    sample.save()
    with pytest.raises(CurationError, match="versions are never overwritten") as refused:
        store.export_yolo(out, version="v1")
    assert storage.join(out, "v1") in str(refused.value)


def test_media_cache_reuses_refetches_changed_images_and_can_be_cleared(
    s3_env: str, make_store: Callable[[], CurationStore], tmp_path: Path
) -> None:
    from inkloop.curation.records import PageRecord

    key, img, w, h, gt = _fixture_pages()[0]
    url = storage.write_bytes(storage.join(s3_env, "pages", img.name), img.read_bytes())
    cache = MediaCache(tmp_path / "media")
    first = cache.local(url)
    assert Path(first).read_bytes() == img.read_bytes() and Path(first).stem == _sha256(img)
    before = os.stat(first)
    assert cache.local(url) == first and os.stat(first).st_ino == before.st_ino  # not downloaded again

    # an image replaced in the bucket gets a new local file (the old content keeps its own)
    other = _fixture_pages()[1][1].read_bytes()
    storage.write_bytes(url, other)
    changed = cache.local(url)
    assert changed != first and Path(changed).read_bytes() == other and Path(first).is_file()
    storage.write_bytes(url, img.read_bytes())

    # a store on that cache (one page stored, the others local): cleared, the copies come back
    # from the bucket at the same paths
    store = make_store()  # its cache is $INKLOOP_MEDIA_CACHE, the same folder
    records = [PageRecord(key, url, w, h, gt, "test-model", ground_truth=gt)]
    records += [
        PageRecord(k, i, pw, ph, g, "test-model", ground_truth=g) for k, i, pw, ph, g in _fixture_pages()[1:]
    ]
    store.upsert_pages(records)
    sample = store.dataset.match(store.fo.ViewField("page_key") == key).first()
    assert sample.filepath == first and sample["media_url"] == url
    assert store.dataset.count("media_url") == 1  # local images are used where they are
    usage = cache.clear()
    assert usage["images"] == 2 and usage["root"] == str(tmp_path / "media")
    assert not Path(first).exists() and cache.usage()["images"] == 0
    assert store.ensure_media() == {"checked": len(records), "fetched": 1}
    assert Path(first).read_bytes() == img.read_bytes()
    cache.clear()
    exported = store.export_yolo(storage.join(s3_env, "exp"), version="v1")  # fetches the copy again
    assert exported["files"] == 2 * len(records) and Path(first).is_file()

    # a stored image that is gone: the error names its URL
    gone = storage.join(s3_env, "pages", "gone.png")
    with pytest.raises(StorageError, match="not found") as missing:
        cache.local(gone)
    assert gone in str(missing.value)


def test_cli_imports_and_exports_with_the_bucket_and_reports_the_cache(
    s3_env: str, make_store: Callable[[], CurationStore], tmp_path: Path
) -> None:
    results, reviews = _results_in_bucket(s3_env)
    name = make_store().name

    def curate(*args: str) -> dict[str, Any]:
        p = _inkloop("curate", *args, "--json", cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        return dict(json.loads(p.stdout))

    imported = curate("import-results", results, "--reviews", reviews, "--dataset", name, "-q")
    assert imported["added"] == len(_fixture_pages()) and imported["results"] == results
    exported = curate("export", "--out", storage.join(s3_env, "datasets"), "--dataset", name, "-q")
    assert exported["path"].startswith(f"{s3_env}/datasets/sha256-")
    assert storage.exists(storage.join(exported["path"], "manifest.json"))
    usage = curate("media-cache")
    assert usage["root"] == str(tmp_path / "media") and usage["images"] == len(_fixture_pages())
    assert curate("media-cache", "--clear")["cleared"] is True
    assert curate("media-cache")["images"] == 0

    # a bucket that does not exist: exit 2, the error names the URL
    missing = f"s3://inkloop-missing-{uuid.uuid4().hex[:8]}/results"
    p = _inkloop("curate", "import-results", missing, "--dataset", name, cwd=tmp_path)
    assert p.returncode == 2 and missing.split("/results")[0].removeprefix("s3://") in p.stderr, p.stderr


def test_export_into_a_missing_bucket_fails_before_any_work(
    s3_env: str, make_store: Callable[[], CurationStore]
) -> None:
    from inkloop.curation.records import PageRecord

    key, img, w, h, gt = _fixture_pages()[0]
    store = make_store()
    store.upsert_pages([PageRecord(key, img, w, h, gt, "test-model", ground_truth=gt)])
    out = f"s3://inkloop-missing-{uuid.uuid4().hex[:8]}/datasets"
    with pytest.raises(StorageError) as failed:
        store.export_yolo(out)
    assert failed.value.kind == "no_bucket" and out in str(failed.value)


# ------------------------------------------------------------------------------------------------
# Training


def test_tiny_training_reads_its_data_from_the_bucket_and_stores_its_run_there(
    s3_env: str, tmp_path: Path
) -> None:
    from inkloop.datasets import dataset_manifest
    from inkloop.lifecycle.retrain import retrain
    from inkloop.lifecycle.training import run_scratch

    data, run = storage.join(s3_env, "datasets", "v1"), storage.join(s3_env, "runs", "tiny")
    local = _stored_dataset(tmp_path, data)
    args = ["--from", "yolov8n.yaml", "--recipe", "tiny", "--epochs", "1", "--imgsz", "64", "--batch", "2"]
    p = _inkloop("train", "--data", data, "--run-dir", run, *args, "--json", "-q", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert summary["status"] == "finished" and summary["run_dir"] == run
    assert summary["best"] == storage.join(run, "weights", "best.pt")
    assert Path(summary["local_run_dir"]).is_relative_to(tmp_path / "scratch")

    stored = {f.removeprefix(run + "/") for f in storage.find(run)}
    want = {"weights/best.pt", "weights/last.pt", "results.csv", "recipe.json", "data_manifest.json"}
    assert want | {"train.log", "inkloop-status.json"} <= stored, stored
    record = json.loads(storage.read_text(storage.join(run, "recipe.json")))
    assert record["data"]["source"] == data  # the URL, never a local path made of it
    assert record["data_version"] == dataset_manifest(local)["data_version"]  # the same content
    status = json.loads(storage.read_text(storage.join(run, "inkloop-status.json")))
    assert status["state"] == "finished"

    # another machine (no local copy): resuming fetches the stored run, which is finished
    import shutil

    shutil.rmtree(run_scratch(run).parent)
    again = retrain(None, run, resume=True)
    assert again.status == "finished" and again.message == "already finished" and again.output == run
    assert again.to_dict()["last"] == storage.join(run, "weights", "last.pt")

    # a new run where one is stored is refused, naming the URL
    from inkloop.lifecycle.retrain import RetrainError

    with pytest.raises(RetrainError, match="already holds a run") as refused:
        retrain(data, run, start_from="yolov8n.yaml", recipe="tiny")
    assert run in str(refused.value)

    # the next steps of the retrain DAG on the same URLs: export (checkpoint and data fetched,
    # the export uploaded) into a registry in the bucket, then the gate on the stored data
    from inkloop.lifecycle.gate import evaluate_gate
    from inkloop.lifecycle.promotion import export_candidate
    from inkloop.models.registry import Registry

    registry = Registry(storage.join(s3_env, "registry"), cache_dir=tmp_path / "registry-cache")
    exported = export_candidate(run, storage.join(run, "export"), data=data, registry=registry, formats=())
    assert exported.output == storage.join(run, "export") and exported.version == "v1"
    assert exported.to_dict()["out_dir"] == exported.output
    assert {"model.onnx", "card.json"} <= set(storage.listdir(exported.output))
    card = json.loads(storage.read_text(storage.join(exported.output, "card.json")))
    assert card["data_version"] == record["data_version"] and card["metrics"]
    decision = evaluate_gate("signature-detector", data, registry=registry)
    assert decision.test_set["data"] == data and decision.test_set["images"] == 2, decision.test_set


def test_training_data_urls_are_copied_to_scratch_and_bad_ones_name_the_url(
    s3_env: str, tmp_path: Path
) -> None:
    import yaml

    from inkloop.datasets import DatasetError, dataset_manifest
    from inkloop.lifecycle.training import prepare_training_data

    data = storage.join(s3_env, "sets", "v1")
    local = _stored_dataset(tmp_path, data)
    expected = dataset_manifest(local)["data_version"]
    for given in (data, storage.join(data, "data.yaml")):  # the folder or its data.yaml
        workdir = tmp_path / f"work-{len(given)}"
        data_yaml, info = prepare_training_data(given, workdir)
        assert info["source"] == given and Path(info["root"]).is_relative_to(workdir)
        assert dataset_manifest(info["root"])["data_version"] == expected
        cfg = yaml.safe_load(data_yaml.read_text())
        assert "test" not in cfg and Path(cfg["path"]).is_dir()
        assert info["frozen"]["test_images"] == 2

    outside = storage.write_text(
        storage.join(s3_env, "sets", "bad.yaml"), "path: v1\ntrain: ../elsewhere/images\nval: images/val\n"
    )
    with pytest.raises(DatasetError, match="outside the dataset") as bad:
        prepare_training_data(outside, tmp_path / "bad")
    assert outside in str(bad.value)
    missing = storage.join(s3_env, "sets", "nothing")
    with pytest.raises(StorageError) as gone:
        prepare_training_data(missing, tmp_path / "none")
    assert gone.value.kind == "not_found" and missing in str(gone.value)


def test_train_with_a_project_url_uploads_the_run(s3_env: str, tmp_path: Path) -> None:
    """The in-process entry (`python -m inkloop.lifecycle.training --project s3://…`): the URL is
    returned and holds the run's files."""
    from inkloop.lifecycle.training import train

    data = storage.join(s3_env, "sets", "v1")
    _stored_dataset(tmp_path, data)
    project = storage.join(s3_env, "runs")
    got = train(data, "tiny", project, "inproc", overrides={"epochs": 1, "imgsz": 64, "batch": 2})
    assert got == storage.join(project, "inproc")
    stored = {f.removeprefix(f"{got}/") for f in storage.find(got)}
    assert {"weights/last.pt", "recipe.json", "results.csv"} <= stored, stored

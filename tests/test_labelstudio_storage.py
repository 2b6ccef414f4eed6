"""Pages reach Label Studio through an S3 source storage (presigned URLs), checked in a browser;
the ML backend reads such tasks.

Real services only: Label Studio 1.23 (its own server, allowed to reach 127.0.0.1: an S3 endpoint
on a loopback address is refused by its SSRF protection otherwise, which one test shows on the
stock server), moto's S3 server (:mod:`inkloop.devservers.s3`) recording every request it gets
(``MOTO_ENABLE_RECORDING``: method, URL and headers), so a test can tell who fetched a page and
how: the browser through a presigned URL, the ML backend without Label Studio's token. The
results folder is detected from ``s3://…/inbox`` into ``s3://…/results`` and its review images
are rendered into the bucket: the push copies nothing and uploads nothing.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import test_storage
from test_ml_backend import AUTH, MODEL, http, registry, start_backend, stop, task_in_browser
from test_review_storage import EVERYTHING, _detected

from inkloop import storage
from inkloop.devservers.s3 import S3Handle, start
from inkloop.devservers.s3 import stop as stop_s3
from inkloop.review.auth import ReviewServiceError
from inkloop.review.cloud_storage import NO_IMPORT, S3PageStorage, S3Source
from inkloop.review.labelstudio import LabelStudioReview, push_results
from inkloop.routing import RoutingConfig

no_local_url_folders = test_storage.no_local_url_folders
registry = registry  # the ML backend's model registry (production → v1, not the pushed version)
AWS_VARS = (*test_storage.AWS_VARS, "AWS_DEFAULT_REGION", "AWS_PROFILE")
LS_VARS = ("INKLOOP_LS_URL", "INKLOOP_LS_TOKEN", "LABEL_STUDIO_API_KEY")
#: The first push sends two of the run's pages; a second push (EVERYTHING) sends the rest.
FIRST_TWO = RoutingConfig(max_review_fraction=1.0, review_min_uncertainty=0.0, max_review_pages=2)

pytestmark = pytest.mark.labelstudio


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Handle]:
    """moto's S3 server, recording every request (one JSON line each) in ``requests.jsonl``."""
    logs = tmp_path_factory.mktemp("moto-recorded")
    handle = start(
        log_dir=logs,
        env={"MOTO_ENABLE_RECORDING": "True", "MOTO_RECORDER_FILEPATH": str(logs / "requests.jsonl")},
    )
    try:
        yield handle
    finally:
        stop_s3(handle)


def recorded(s3: S3Handle) -> list[dict]:
    """The requests the S3 server got so far."""
    path = s3.log_file.parent / "requests.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def new_bucket(s3: S3Handle) -> str:
    name = f"inkloop-{uuid.uuid4().hex[:12]}"
    fs, _ = storage.url_to_fs(f"s3://{name}", s3.storage_options())
    fs.mkdir(name)
    return name


@dataclass
class Pushed:
    """One detection run in a bucket, its review pages pushed through an S3 source storage."""

    client: LabelStudioReview
    bucket: str
    results: str
    images: str  # the folder the review images were rendered into (the storage's prefix)
    summary: dict
    delivery: S3PageStorage


@pytest.fixture(scope="module")
def pushed(labelstudio_local_calls, s3: S3Handle, documents_dir: Path) -> Pushed:
    ls = labelstudio_local_calls
    bucket = new_bucket(s3)
    opts = s3.storage_options()
    results, _sources = _detected(s3, bucket, documents_dir)
    images = storage.join(results, "review-images")
    client = LabelStudioReview(ls.url, ls.token, project_title=f"pages via s3 {bucket[-6:]}")
    delivery = S3PageStorage(S3Source.from_url(images, opts))
    summary = push_results(client, results, FIRST_TWO, delivery=delivery, storage_options=opts)
    return Pushed(client, bucket, results, images, summary, delivery)


def _resolve_path(task_id: int, uri: str) -> str:
    return f"/tasks/{task_id}/resolve/?fileuri={base64.urlsafe_b64encode(uri.encode()).decode()}"


# ------------------------------------------------------------------------------------------------
def test_pages_reach_label_studio_through_an_s3_source_storage(pushed: Pushed, s3: S3Handle) -> None:
    import httpx

    client, summary = pushed.client, pushed.summary
    assert summary["pushed"] == summary["selected"] == 2, summary
    assert pushed.delivery.copied == 0  # the pages were rendered into the bucket: nothing copied
    pid = client.project_id
    storages = client.client.import_storage.s3.list
    [first] = [s.model_dump(by_alias=True) for s in storages(project=pid)]

    # pushed again with the rest of the run, as the Airflow operator asks for it (delivery
    # "storage": another process, a new delivery made by the push): the storage is found by
    # bucket and prefix and reused, the two pages already there are not sent again
    opts = s3.storage_options()
    again = push_results(client, pushed.results, EVERYTHING, delivery="storage", storage_options=opts)
    n = again["selected"]
    assert n >= 3 and (again["pushed"], again["already_present"]) == (n - 2, 2), again
    [same] = [s.model_dump(by_alias=True) for s in storages(project=pid)]
    assert same["id"] == first["id"]

    # tasks refer to the pages in the bucket and carry the pushed predictions
    tasks = list(client.iter_tasks())
    assert len(tasks) == n
    with storage.scoped_options(opts):
        in_bucket = set(storage.find(pushed.images))
    for task in tasks:
        assert task.data["image"] in in_bucket, task.data["image"]
        [pred] = client.client.predictions.list(task=task.id)
        assert pred.model_version == task.data["model_version"] and pred.model_version
        assert all(0 < r["score"] <= 1 for r in pred.result)
    assert any(client.client.predictions.list(task=t.id)[0].result for t in tasks)  # boxes pushed

    # no upload request per page: Label Studio holds no file of the project
    assert not list(client.client.files.list(id=pid))

    # one S3 import storage: the endpoint, presigned URLs, synced, importing nothing itself
    [record] = [s.model_dump(by_alias=True) for s in storages(project=pid)]
    assert (record["bucket"], record["prefix"]) == (pushed.bucket, pushed.images.split("/", 3)[3])
    assert record["s3_endpoint"] == s3.url and record["presign"] is True
    assert record["use_blob_urls"] is False and record["regex_filter"] == NO_IMPORT
    assert record["status"] == "completed" and not record.get("aws_secret_access_key")
    # Sync in the UI adds nothing (the storage's file filter matches no key)
    client.client.import_storage.s3.sync(id=record["id"])
    assert len(list(client.iter_tasks())) == n

    # Label Studio resolves a task's s3:// URL with a 303 to a presigned GET on the endpoint
    task = tasks[0]
    answer = httpx.get(
        client.url + _resolve_path(task.id, task.data["image"]),
        headers=client.auth.headers(),
        follow_redirects=False,
        timeout=30,
    )
    assert answer.status_code == 303, answer.text[:300]
    location = answer.headers["location"]
    key = task.data["image"].split("/", 3)[3]
    assert location.startswith(f"{s3.url}/{pushed.bucket}/{key}?") and "X-Amz-Signature=" in location
    fetched = httpx.get(location, timeout=30)  # no credentials: the signature is the permission
    assert fetched.status_code == 200
    assert fetched.content == storage.read_bytes(task.data["image"], s3.storage_options())


def test_the_labeling_view_shows_the_page_from_the_bucket(
    pushed: Pushed, s3: S3Handle, labelstudio_local_calls, chromium, tmp_path: Path
) -> None:
    """An annotator opens a task: the page image loads (a presigned GET from the browser to the
    S3 endpoint, seen in the server's request log) and shows in the labeling view."""
    from PIL import Image

    ls = labelstudio_local_calls
    task = next(iter(pushed.client.iter_tasks()))
    key = task.data["image"].split("/", 3)[3]
    with storage.open_file(task.data["image"], "rb", s3.storage_options()) as f:
        width = Image.open(f).size[0]
    where = f"/projects/{pushed.client.project_id}/data?task={task.id}"
    with task_in_browser(chromium, ls, where, tmp_path / "storage-task.png", "storage-task.png") as page:
        # the editor fetches the page (XHR to the resolve link, redirected to the presigned
        # URL) and shows it from a blob: URL, or sets the link as the <img> source itself
        loaded = page.wait_for_function(
            """(width) => {
                const shown = [...document.images].filter(i =>
                    (i.src.startsWith('blob:') || i.src.includes('/resolve/')) &&
                    i.complete && i.naturalWidth > 0);
                return shown.some(i => i.naturalWidth === width) ? shown.map(i => i.naturalWidth) : null;
            }""",
            arg=width,
            timeout=60_000,
        ).json_value()
    assert width in loaded
    gets = [
        r
        for r in recorded(s3)
        if r["method"] == "GET" and f"/{pushed.bucket}/{key}?" in r["url"] and "X-Amz-Signature=" in r["url"]
    ]
    from_browser = [r for r in gets if "Chrome" in r["headers"].get("User-Agent", "")]
    assert from_browser, [r["headers"].get("User-Agent") for r in gets]
    assert not any("Authorization" in r["headers"] for r in from_browser)
    # a cross-origin fetch from Label Studio's page: the bucket must allow its origin (CORS)
    assert from_browser[-1]["headers"].get("Origin") == ls.url


def test_the_backend_reads_storage_tasks(
    pushed: Pushed, s3: S3Handle, labelstudio_local_calls, registry: Path, tmp_path: Path
) -> None:
    """The ML backend predicts on tasks whose image is an ``s3://`` URL (what Label Studio sends
    for them): through Label Studio's resolve link when it knows Label Studio (no bucket
    credentials of its own; the presigned GET goes without Label Studio's token), or through the
    storage layer with its own credentials; and on presign/resolve links and presigned URLs."""
    from inkloop.review.backend import connect

    ls, client = labelstudio_local_calls, pushed.client
    tasks = list(client.iter_tasks())
    task = tasks[0]
    key = task.data["image"].split("/", 3)[3]
    via_ls = start_backend(
        tmp_path, registry, without=AWS_VARS, INKLOOP_LS_URL=ls.url, INKLOOP_LS_TOKEN=ls.token
    )
    direct = start_backend(tmp_path, registry, without=LS_VARS, **s3.client_env())
    try:
        # Label Studio asks the backend ("Retrieve predictions"); it reads each page through Label Studio
        record = connect(ls.url, ls.token, client.project_id, via_ls.url, username=AUTH[0], password=AUTH[1])
        assert record["state"] == "CO" and record["model_version"] == f"{MODEL}@v1", record
        version = record["model_version"]
        answer = client.auth.request(
            "POST",
            "/api/dm/actions",
            params={"id": "retrieve_tasks_predictions", "project": client.project_id},
            json_body={"selectedItems": {"all": True, "excluded": []}, "project": client.project_id},
        )
        assert answer.status == 200, answer.body[:300]
        served = {}
        for t in tasks:
            mine = [p for p in client.client.predictions.list(task=t.id) if p.model_version == version]
            assert mine, f"no prediction of {version} for task {t.id}:\n{via_ls.logs()[-2000:]}"
            served[t.id] = [r["value"] for r in mine[0].result]
        # the backend fetched the page from the bucket by a presigned URL, without Label Studio's token
        backend_gets = [
            r
            for r in recorded(s3)
            if r["method"] == "GET"
            and f"/{pushed.bucket}/{key}?" in r["url"]
            and "Python-urllib" in r["headers"].get("User-Agent", "")
        ]
        assert backend_gets and all("Authorization" not in r["headers"] for r in backend_gets)
        assert all("X-Amz-Signature=" in r["url"] for r in backend_gets)

        # the same page by every kind of reference gives the same boxes
        presigned = storage.url_to_fs(task.data["image"], s3.storage_options())[0].url(
            task.data["image"], expires=600
        )
        refs = [
            (via_ls, task.data["image"]),
            (via_ls, _resolve_path(task.id, task.data["image"])),
            (via_ls, ls.url + _resolve_path(task.id, task.data["image"]).replace("/resolve/", "/presign/")),
            (via_ls, presigned),
            (direct, task.data["image"]),  # its own credentials: through the storage layer
        ]
        for backend, ref in refs:
            status, out = http(
                "POST",
                f"{backend.url}/predict",
                {"tasks": [{"id": task.id, "data": {"image": ref}}]},
                auth=AUTH,
            )
            assert status == 200, (ref, out)
            assert [r["value"] for r in out["results"][0]["result"]] == served[task.id], ref

        # a storage URL neither Label Studio nor the backend can read: 422 naming it, both tried
        gone = f"s3://{pushed.bucket}/review-images/not-there.png"
        status, out = http(
            "POST", f"{via_ls.url}/predict", {"tasks": [{"id": task.id, "data": {"image": gone}}]}, auth=AUTH
        )
        assert status == 422 and gone in out["error"] and "through Label Studio" in out["error"], out
        assert ls.token not in via_ls.logs()
    finally:
        stop(via_ls.proc)
        stop(direct.proc)


def test_label_studio_refuses_a_storage_it_cannot_use_and_the_push_leaves_nothing(
    labelstudio_local_calls, s3: S3Handle, documents_dir: Path, tmp_path: Path
) -> None:
    """The endpoint as Label Studio is given it is checked by Label Studio before anything is
    created: with Label Studio's default SSRF protection (the dev server turns it off for its
    webhooks) a loopback endpoint is refused, and an endpoint that does not hold the bucket is
    refused in Label Studio's words. The push fails naming the storage; the project it created
    is deleted again."""
    from inkloop import net
    from inkloop.devservers.labelstudio import server as ls_server

    bucket = new_bucket(s3)
    opts = s3.storage_options()
    results, _ = _detected(s3, bucket, documents_dir)
    images = storage.join(results, "review-images")
    other = start()  # a second S3 endpoint, without the bucket
    guarded = ls_server.start(
        net.free_port(),
        tmp_path / "ls-ssrf",
        document_root=tmp_path,
        extra_env={"SSRF_PROTECTION_ENABLED": "true"},  # Label Studio's own default
    )
    try:
        cases = [
            (guarded, S3Source.from_url(images, opts), "SSRF_PROTECTION_ENABLED=false"),
            (
                labelstudio_local_calls,
                S3Source.from_url(images, opts, endpoint=other.url),
                # Label Studio hides why (an untrusted endpoint domain); the push looks itself
                f"checked from here, {images} at {other.url}: bucket '{bucket}' does not exist",
            ),
        ]
        for server, source, reason in cases:
            title = f"refused {uuid.uuid4().hex[:8]}"
            client = LabelStudioReview(server.url, server.token, project_title=title)
            with pytest.raises(ReviewServiceError) as e:
                push_results(
                    client, results, EVERYTHING, delivery=S3PageStorage(source), storage_options=opts
                )
            message = str(e.value)
            assert "create the S3 storage on" in message and reason in message, message
            assert "deleted again" in message and client.find_project() is None
            assert server.token not in message and opts["secret"] not in message
    finally:
        guarded.stop()
        stop_s3(other)


def test_review_push_pages_via_storage_command(
    pushed: Pushed, s3: S3Handle, labelstudio_local_calls, tmp_path: Path
) -> None:
    """``inkloop review push s3://…/results --pages-via storage`` with the endpoint in the
    environment, as users give it: another project gets its own storage on the same folder, its
    tasks refer to the pages in the bucket, nothing is uploaded; a local results folder without
    a bucket folder for the pages is a usage error."""
    ls = labelstudio_local_calls
    env = {**s3.client_env(), "INKLOOP_LS_TOKEN": ls.token, "INKLOOP_LS_URL": ls.url}
    title = f"cli storage {pushed.bucket[-6:]}"
    p = test_storage._cli(
        "review", "push", pushed.results, "--project", title, "--pages-via", "storage", "--budget", "1.0",
        "--json", env=env, cwd=tmp_path,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    # how many pages routing selects is the bundled model's business (@3: 3, @4: 2): all of them go
    assert summary["pushed"] == summary["selected"] >= 1
    client = LabelStudioReview(ls.url, ls.token, project_title=title)
    pid = client.project_id
    tasks = list(client.iter_tasks())
    assert len(tasks) == summary["pushed"]
    assert all(t.data["image"].startswith(pushed.images + "/") for t in tasks)
    assert not list(client.client.files.list(id=pid))
    [record] = client.client.import_storage.s3.list(project=pid)
    assert record.s3endpoint == s3.url and record.presign
    assert not list(tmp_path.iterdir())  # nothing written in the working directory

    local = tmp_path / "local-results"
    local.mkdir()
    (local / "results.jsonl").write_text("")
    p = test_storage._cli(
        "review", "push", str(local), "--project", title, "--pages-via", "storage", env=env, cwd=tmp_path
    )
    assert p.returncode == 2 and "pages through storage go to a bucket" in p.stderr, p.stderr

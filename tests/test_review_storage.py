"""Review push and pull on object storage: a real Label Studio and a real S3 endpoint.

The results folder a push reads (results, verdicts, routing), the page images it renders and
uploads, the reviews a pull writes and its cursor are all ``s3://`` URLs on moto's S3 server
(:mod:`inkloop.devservers.s3`, started on 127.0.0.1 and stopped by its PID; the fixtures are
``tests/test_storage.py``'s, whose autouse check fails a test if a local ``s3:`` folder appears).
Reached through storage options (the SDK) or the environment users set (the CLI).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path

import pytest
import test_storage
from test_review import _region
from test_storage import DOCS, _cli, _upload_inbox

from inkloop import storage
from inkloop.devservers.s3 import S3Handle
from inkloop.review.cursor import ReviewCursor, cursor_location
from inkloop.review.ground_truth import ReviewedPage, read_reviews, write_reviews
from inkloop.review.labelstudio import LabelStudioReview, pull_to_file, push_results
from inkloop.routing import RoutingConfig
from inkloop.storage import StorageError
from inkloop.types import Detection

# the S3 server, a new bucket per test, and the check that no local ``s3:`` folder appears
s3 = test_storage.s3
bucket = test_storage.bucket
no_aws_env = test_storage.no_aws_env
no_local_url_folders = test_storage.no_local_url_folders

#: Every page a review candidate, all of them within the budget: the push sends the whole run.
EVERYTHING = RoutingConfig(max_review_fraction=1.0, review_min_uncertainty=0.0)


def _detected(s3: S3Handle, bucket: str, documents_dir: Path) -> tuple[str, list[str]]:
    """The sample documents detected and routed from ``s3://BUCKET/inbox`` into ``s3://BUCKET/results``."""
    from inkloop.api import DetectOptions, detect

    inbox, out = f"s3://{bucket}/inbox", f"s3://{bucket}/results"
    sources = _upload_inbox(s3, documents_dir, inbox)
    # scored for routing while detecting (as `inkloop detect --route`): the unsigned form's cue
    summary = detect(
        [inbox], out, DetectOptions(storage_options=s3.storage_options()), routing=RoutingConfig()
    )
    assert summary.documents == len(DOCS) and summary.quarantined == 0
    return out, sources


def _objects(s3: S3Handle, bucket: str) -> list[str]:
    return storage.find(f"s3://{bucket}", s3.storage_options())


def _box(task, xyxy=(10.0, 20.0, 200.0, 80.0)) -> dict:
    """A reviewer's box on a task's page (``tests/test_review.py``'s region)."""
    return _region(xyxy, task.data["page_width"], task.data["page_height"])


# ------------------------------------------------------------------------------------------------
# No server needed: the cursor and the reviews file on either kind of storage


def test_cursor_and_reviews_file_local_and_on_a_bucket(s3: S3Handle, bucket: str, tmp_path: Path) -> None:
    assert cursor_location("s3://b/r/reviews.jsonl") == "s3://b/r/reviews.cursor.json"
    assert cursor_location(tmp_path / "a.b.jsonl") == str(tmp_path / "a.b.cursor.json")
    assert cursor_location("reviews") == "reviews.cursor.json"
    cursor = ReviewCursor("2026-12-07T03:00:00+00:00", {7, 3})
    assert not cursor.is_new({"id": 3, "updated_at": cursor.updated_at})
    assert cursor.is_new({"id": 9, "updated_at": cursor.updated_at})
    assert cursor.advanced([{"id": 11, "updated_at": "2027"}]) == ReviewCursor("2027", {11})

    local = tmp_path / "state" / "cursor.json"
    cursor.save(local)  # the file's format is what pulls always wrote
    assert json.loads(local.read_text()) == {"cursor": cursor.updated_at, "seen_at_cursor": [3, 7]}
    assert [p.name for p in local.parent.iterdir()] == ["cursor.json"]  # written whole: no temp file left
    assert ReviewCursor.load(local) == cursor and ReviewCursor.load(tmp_path / "none.json") == ReviewCursor()

    opts = s3.storage_options()
    remote = f"s3://{bucket}/state/reviews.cursor.json"
    with storage.scoped_options(opts):
        cursor.save(remote)
        assert ReviewCursor.load(remote) == cursor
        storage.write_text(remote, "not json")
        with pytest.raises(ValueError, match=f"review cursor {remote} is not a cursor file"):
            ReviewCursor.load(remote)

        reviews = f"s3://{bucket}/state/reviews.jsonl"
        page = ReviewedPage("k:0", 1, "submitted", [], 10, 10, "/data/upload/1/a.png")
        assert write_reviews([page], reviews) == 1
        fixed = ReviewedPage("k:0", 1, "submitted", [Detection("signature", 1.0, (1, 2, 3, 4))], 10, 10, "")
        assert write_reviews([fixed], reviews) == 1
        assert write_reviews([], reviews) == 0
        assert [r.ground_truth for r in read_reviews(reviews)] == [fixed.ground_truth]  # the latest wins
        assert storage.read_text(reviews).count("\n") == 2
    assert sorted(_objects(s3, bucket)) == [
        f"s3://{bucket}/state/{n}" for n in ("reviews.cursor.json", "reviews.jsonl")
    ]


# ------------------------------------------------------------------------------------------------
# A real Label Studio


@pytest.mark.labelstudio
def test_push_from_a_bucket_and_pull_into_it(
    labelstudio, s3: S3Handle, bucket: str, documents_dir: Path
) -> None:
    """detect → push from ``s3://…/results`` (its images rendered into the bucket and uploaded from
    there) → review → pull into the bucket, incrementally, with the cursor beside the reviews."""
    import httpx

    out, sources = _detected(s3, bucket, documents_dir)
    opts = s3.storage_options()
    assert "AWS_ENDPOINT_URL" not in os.environ  # only the options know where the server is
    client = LabelStudioReview(labelstudio.url, labelstudio.token, project_title=f"s3 {bucket}")
    summary = push_results(client, out, EVERYTHING, storage_options=opts)
    n = summary["selected"]
    assert n >= 2 and summary["pushed"] == n, summary

    images_url = storage.join(out, "review-images")
    with storage.scoped_options(opts):
        images = storage.listdir(images_url)
        routing = list(storage.read_jsonl(storage.join(out, "routing.jsonl")))
        stamps = {i: storage.info(storage.join(images_url, i))["LastModified"] for i in images}
        rendered = {
            hashlib.sha256(storage.read_bytes(storage.join(images_url, i))).hexdigest() for i in images
        }
    assert len(images) == n and all(i.endswith(".png") for i in images)
    assert len(routing) == summary["routed_pages"] >= n  # routing.jsonl written into the bucket
    tasks = list(client.iter_tasks())
    assert len(tasks) == n and {t.data["source"] for t in tasks} <= set(sources)
    uploaded = set()
    for t in tasks:
        assert t.data["image"].startswith("/data/upload/")
        got = httpx.get(labelstudio.url + t.data["image"], headers=client.auth.headers(), timeout=30)
        assert got.status_code == 200
        uploaded.add(hashlib.sha256(got.content).hexdigest())
    assert uploaded == rendered  # Label Studio holds exactly the pages rendered into the bucket

    again = push_results(client, out, EVERYTHING, storage_options=opts)
    assert (again["pushed"], again["already_present"]) == (0, n)
    with storage.scoped_options(opts):  # the images already in the bucket were reused, not re-rendered
        assert {i: storage.info(storage.join(images_url, i))["LastModified"] for i in images} == stamps

    reviews = storage.join(out, "reviews.jsonl")
    cursor_url = storage.join(out, "reviews.cursor.json")
    client.client.annotations.create(id=tasks[0].id, result=[])  # no signature on this page
    first = pull_to_file(client, reviews, storage_options=opts)
    assert (first["pulled"], first["negatives"], first["out"]) == (1, 1, reviews)
    with storage.scoped_options(opts):
        cursor = json.loads(storage.read_text(cursor_url))
    assert cursor["cursor"] and len(cursor["seen_at_cursor"]) == 1
    assert pull_to_file(client, reviews, storage_options=opts)["pulled"] == 0  # incremental

    # the reviews cannot be written (their bucket is gone): the pull fails naming the URL, the
    # cursor does not move, and the next pull into the right place brings the review
    client.client.annotations.create(id=tasks[1].id, result=[_box(tasks[1])])
    lost = f"s3://missing-{uuid.uuid4().hex[:8]}/reviews.jsonl"
    with pytest.raises(StorageError) as e:
        pull_to_file(client, lost, state=cursor_url, storage_options=opts)
    assert lost in str(e.value) and e.value.kind == "no_bucket"
    with storage.scoped_options(opts):
        assert json.loads(storage.read_text(cursor_url)) == cursor
    second = pull_to_file(client, reviews, storage_options=opts)
    assert (second["pulled"], second["submitted"], second["negatives"]) == (1, 1, 0)

    with storage.scoped_options(opts):
        pulled = {p.page_key: p for p in read_reviews(reviews)}
    assert set(pulled) == {tasks[0].data["page_key"], tasks[1].data["page_key"]}
    assert pulled[tasks[0].data["page_key"]].ground_truth == []
    assert len(pulled[tasks[1].data["page_key"]].ground_truth or []) == 1
    # whole objects only: no temporary or append parts left in the bucket
    names = _objects(s3, bucket)
    assert reviews in names and cursor_url in names
    assert not [x for x in names if ".tmp-" in x or ".append-" in x]


@pytest.mark.labelstudio
def test_push_errors_name_the_url(labelstudio, s3: S3Handle, bucket: str) -> None:
    opts = s3.storage_options()
    client = LabelStudioReview(labelstudio.url, labelstudio.token, project_title=f"s3 errors {bucket}")
    empty = f"s3://{bucket}/no-results-here"
    with pytest.raises(FileNotFoundError, match=f"{empty} has no results.jsonl"):
        push_results(client, empty, EVERYTHING, storage_options=opts)
    gone = f"s3://missing-{uuid.uuid4().hex[:8]}/results"
    with pytest.raises(StorageError) as e:
        push_results(client, gone, EVERYTHING, storage_options=opts)
    assert e.value.kind == "no_bucket" and gone in str(e.value)
    # a page image that is not in the bucket is found before any project is made
    from inkloop.types import Page, PageResult

    page = PageResult(Page(doc_id="d" * 64, index=0, width=10, height=10), [], "m@1", source="x.png")
    missing = f"s3://{bucket}/review-images/none.png"
    with storage.scoped_options(opts), pytest.raises(FileNotFoundError, match=missing):
        client.push([(page, missing)])
    assert client.find_project() is None


@pytest.mark.labelstudio
def test_review_cli_on_a_bucket(labelstudio, s3: S3Handle, bucket: str, documents_dir: Path, tmp_path: Path):
    """``inkloop review push s3://… / pull --out s3://…`` with the endpoint in the environment, as
    users give it; nothing is written in the working directory (typer's Path would make ``s3:/…``)."""
    out, _ = _detected(s3, bucket, documents_dir)
    env = {**s3.client_env(), "INKLOOP_LS_TOKEN": labelstudio.token, "INKLOOP_LS_URL": labelstudio.url}
    project = f"s3 cli {bucket}"

    def cli(*args: str, code: int = 0) -> dict:
        p = _cli("review", *args, env=env, cwd=tmp_path)
        assert p.returncode == code, p.stderr
        return json.loads(p.stdout) if code == 0 else {"stderr": p.stderr}

    pushed = cli("push", out, "--project", project, "--budget", "1.0", "--json")
    assert pushed["pushed"] == pushed["selected"] >= 1
    client = LabelStudioReview(labelstudio.url, labelstudio.token, project_title=project)
    task = next(iter(client.iter_tasks()))
    client.client.annotations.create(id=task.id, result=[_box(task)])
    reviews = storage.join(out, "pulled", "reviews.jsonl")
    pulled = cli("pull", "--out", reviews, "--project", project, "--json")
    assert (pulled["pulled"], pulled["submitted"], pulled["out"]) == (1, 1, reviews)
    names = _objects(s3, bucket)
    assert reviews in names and storage.join(out, "pulled", "reviews.cursor.json") in names
    assert not list(tmp_path.iterdir())  # nothing in the working directory

    empty = f"s3://{bucket}/nothing"
    assert f"{empty} has no results.jsonl" in cli("push", empty, "--project", project, code=2)["stderr"]
    gone = f"s3://missing-{uuid.uuid4().hex[:8]}/results"
    err = cli("push", gone, "--project", project, code=1)["stderr"]
    assert "storage error" in err and gone in err and "does not exist" in err

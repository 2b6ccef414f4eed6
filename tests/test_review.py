"""Push to and pull from a real Label Studio server, acting as a reviewer through its API.

The server runs as Label Studio 1.23 ships (Personal Access Tokens on, legacy tokens off) and
``labelstudio.token`` is the admin's Personal Access Token: every push, upload, status and pull
here uses it. One test turns legacy tokens on, as an admin can, and checks they still work.
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from inkloop.convert.labelstudio import to_labelstudio
from inkloop.review.auth import LabelStudioAuth, is_personal_access_token
from inkloop.review.labelstudio import LabelStudioReview, PageImages, RetryPolicy, ReviewServiceError
from inkloop.types import Detection, Page, PageResult

pytestmark = pytest.mark.labelstudio


def _page(i: int, w: int = 1000, h: int = 1400, dets: list[Detection] | None = None) -> PageResult:
    return PageResult(
        page=Page(doc_id=f"doc{i:02d}" + "0" * 58, index=0, width=w, height=h),
        detections=dets or [],
        model_version="signature-detector@test",
        source=f"inbox/doc{i}.png",
        uncertainty=0.5,
        decision="review",
        reasons=["ambiguous score"],
    )


def _region(xyxy, w, h, label="signature", rotation=0.0):
    v = to_labelstudio(xyxy, w, h)
    v["rotation"] = rotation
    v["rectanglelabels"] = [label]
    return {
        "from_name": "label",
        "to_name": "image",
        "type": "rectanglelabels",
        "original_width": w,
        "original_height": h,
        "image_rotation": 0,
        "value": v,
    }


@pytest.fixture()
def review(labelstudio, request):
    return LabelStudioReview(labelstudio.url, labelstudio.token, project_title=f"r {request.node.name}"[:50])


@pytest.fixture()
def page_pngs(tmp_path, pages_dir):
    """Five page images (PNG) made from the fixture pages, with their PageResults."""
    import shutil

    from PIL import Image

    out = []
    names = sorted(pages_dir.glob("*.png")) + sorted(pages_dir.glob("*.jpg"))
    for i in range(5):
        src = names[i % len(names)]
        img = tmp_path / f"page{i}.png"
        im = Image.open(src).convert("RGB")
        im.save(img)
        w, h = im.size
        dets = [
            Detection("signature", 0.55, (0.2 * w, 0.6 * h, 0.5 * w, 0.7 * h)),
            Detection("signature", 0.31, (0.6 * w, 0.1 * h, 0.8 * w, 0.15 * h)),
        ]
        out.append((_page(i, w, h, dets), img))
    del shutil
    return out


def test_push_twice_creates_no_duplicates_and_carries_predictions(review, page_pngs):
    first = review.push(page_pngs, delivery="upload")
    assert first["pushed"] == 5 and first["already_present"] == 0
    again = review.push(page_pngs, delivery="upload")
    assert again["pushed"] == 0 and again["already_present"] == 5
    tasks = list(review.iter_tasks())
    assert len(tasks) == 5
    t = next(t for t in tasks if t.data["page_key"] == page_pngs[0][0].page_key)
    assert t.data["source"] == "inbox/doc0.png" and t.data["page_index"] == 0
    assert t.data["image"].startswith("/data/upload/")
    preds = review.client.predictions.list(task=t.id)
    assert preds[0].model_version == "signature-detector@test"
    scores = sorted(r["score"] for r in preds[0].result)
    assert scores == [0.31, 0.55]
    assert review.ensure_project() == review.project_id  # get-or-create is idempotent


def test_one_project_lookup_serves_status_push_and_pull(labelstudio, page_pngs):
    """What the push operator does (does the project exist? its reviews so far? then the push),
    and a pull after it, list the projects once: the id found is kept for the client."""
    title = "one lookup"
    LabelStudioReview(labelstudio.url, labelstudio.token, project_title=title).ensure_project()
    calls: list[str] = []

    class Counted(LabelStudioReview):
        def call(self, what, fn):
            calls.append(what)
            return super().call(what, fn)

    client = Counted(labelstudio.url, labelstudio.token, project_title=title)
    pid = client.find_project()
    assert pid is not None and client.status()["reviews"] == 0
    assert client.reviews_so_far() == 0  # the push operator's baseline: no lookup of its own
    assert client.push(page_pngs)["pushed"] == 5 and client.project_id == pid
    assert client.pull() == []
    assert calls.count("list projects") == 1, calls
    fresh = LabelStudioReview(labelstudio.url, labelstudio.token, project_title="one lookup, none yet")
    assert fresh.reviews_so_far() == 0 and fresh.find_project() is None  # never created by a read


def test_a_project_that_cannot_be_read_is_an_error_not_zero_reviews(labelstudio):
    """The push's baseline for the review wait: a project found but gone when its counters are
    read is an error naming the call, not a baseline of 0 (the wait would count every earlier
    review as new)."""
    title = "read after delete"
    other = LabelStudioReview(labelstudio.url, labelstudio.token, project_title=title)
    pid = other.ensure_project()
    client = LabelStudioReview(labelstudio.url, labelstudio.token, project_title=title)
    assert client.find_project() == pid  # found, and kept for the calls that follow
    other.delete_project(pid)  # then removed by someone else
    with pytest.raises(ReviewServiceError, match="read project counters") as refused:
        client.reviews_so_far()
    assert labelstudio.token not in str(refused.value)


def test_reviewer_corrections_become_ground_truth(review, page_pngs, tmp_path):
    review.push(page_pngs, delivery="upload")
    tasks = {t.data["page_key"]: t for t in review.iter_tasks()}
    keys = [r.page_key for r, _ in page_pngs]
    w0, h0 = page_pngs[0][0].page.width, page_pngs[0][0].page.height
    moved = (0.21 * w0, 0.61 * h0, 0.52 * w0, 0.72 * h0)
    # page 0: move the true box, delete the false one
    review.client.annotations.create(id=tasks[keys[0]].id, result=[_region(moved, w0, h0)])
    # page 1: keep both and add a missed one
    w1, h1 = page_pngs[1][0].page.width, page_pngs[1][0].page.height
    kept = [d.xyxy for d in page_pngs[1][0].detections] + [(10.0, 20.0, 200.0, 80.0)]
    review.client.annotations.create(id=tasks[keys[1]].id, result=[_region(b, w1, h1) for b in kept])
    # page 2: submitted empty = no signature on this page
    review.client.annotations.create(id=tasks[keys[2]].id, result=[])
    # page 3: skipped
    review.client.annotations.create(id=tasks[keys[3]].id, result=[], was_cancelled=True)
    # page 4: a rotated box → enclosing axis-aligned box, flagged
    w4, h4 = page_pngs[4][0].page.width, page_pngs[4][0].page.height
    review.client.annotations.create(
        id=tasks[keys[4]].id, result=[_region((100, 100, 300, 150), w4, h4, rotation=90)]
    )

    state = tmp_path / "cursor.json"
    pulled = {p.page_key: p for p in review.pull(state)}
    assert set(pulled) == set(keys)
    gt0 = pulled[keys[0]].ground_truth
    assert gt0 is not None and len(gt0) == 1
    assert max(abs(a - b) for a, b in zip(gt0[0].xyxy, moved, strict=True)) < 0.5
    assert len(pulled[keys[1]].ground_truth or []) == 3
    assert pulled[keys[2]].status == "submitted" and pulled[keys[2]].ground_truth == []
    assert pulled[keys[3]].status == "skipped" and pulled[keys[3]].ground_truth is None
    assert pulled[keys[4]].rotated
    x0, y0, x1, y1 = pulled[keys[4]].ground_truth[0].xyxy
    assert (round(x0), round(y0), round(x1), round(y1)) == (50, 100, 100, 300)

    # incremental: nothing new → nothing pulled; a new annotation → only that page
    assert review.pull(state) == []
    review.client.annotations.create(id=tasks[keys[3]].id, result=[])  # the skipped page gets reviewed
    again = review.pull(state)
    assert [p.page_key for p in again] == [keys[3]] and again[0].ground_truth == []
    # several annotations on one task: the latest submitted wins
    review.client.annotations.create(id=tasks[keys[0]].id, result=[])
    latest = review.pull(state)
    assert [p.page_key for p in latest] == [keys[0]] and latest[0].ground_truth == []
    assert latest[0].annotations_seen == 2


def test_push_several_results_folders_merges_their_summaries(review, tmp_path, pages_dir):
    """What the scheduled sync does with the Asset events folded into one run: every folder is
    pushed in order into one project; a page already there (the second folder repeats the first)
    counts as already present, not twice."""
    import shutil

    from inkloop.api import DetectOptions, detect
    from inkloop.review.labelstudio import push_results_dirs
    from inkloop.routing import RoutingConfig

    first = tmp_path / "results-a"
    detect(
        sorted(pages_dir.glob("*.png")) + sorted(pages_dir.glob("*.jpg")),
        first,
        DetectOptions(),
        verdict=False,
    )
    again = tmp_path / "results-b"
    shutil.copytree(first, again)
    routing = RoutingConfig(max_review_fraction=1.0, review_min_uncertainty=0.0)
    summary = push_results_dirs(review, [first, again], routing=routing)
    n = summary["selected"] // 2
    assert n >= 1 and summary["selected"] == 2 * n and summary["routed_pages"] % 2 == 0
    assert summary["pushed"] == n and summary["already_present"] == n, summary
    assert len(summary["task_ids"]) == n and summary["results_dirs"] == [str(first), str(again)]
    assert summary["project_url"] == review.project_url() and summary["project_id"] == review.project_id
    with pytest.raises(ValueError, match="no results folder"):
        push_results_dirs(review, [], routing=routing)


def test_local_files_delivery(labelstudio, tmp_path, request):
    review = LabelStudioReview(labelstudio.url, labelstudio.token, project_title="local files")
    img = labelstudio.document_root / "pages" / "p.png"
    img.parent.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    Image.new("RGB", (200, 300), "white").save(img)
    res = review.push(
        [(_page(90, 200, 300), img)], delivery="local-files", document_root=labelstudio.document_root
    )
    assert res["pushed"] == 1
    task = next(iter(review.iter_tasks()))
    assert task.data["image"] == "/data/local-files/?d=pages/p.png"
    import httpx

    r = httpx.get(labelstudio.url + task.data["image"], headers=review.auth.headers())
    assert r.status_code == 200 and r.content[:4] == b"\x89PNG"


def test_server_down_retries_then_clear_error_without_token(caplog, labelstudio):
    from inkloop.net import free_port

    token = "super-secret-token-123"
    down = LabelStudioReview(
        f"http://127.0.0.1:{free_port()}", token, retry=RetryPolicy(attempts=3, base_delay=0.05, timeout=2)
    )
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ReviewServiceError) as ei:
        down.ensure_project()
    assert "after 3 attempts" in str(ei.value)
    assert token not in str(ei.value) and token not in caplog.text and token not in repr(down)
    # the hand-made calls (uploads) are retried the same way
    with pytest.raises(ReviewServiceError, match=r"whoami failed after 3 attempts: URLError") as hand:
        down.call("whoami", down.auth.whoami)
    assert token not in str(hand.value)
    # a wrong token is refused at once, not retried, and not echoed either; the server's reason is kept
    bad = LabelStudioReview(labelstudio.url, token, retry=RetryPolicy(attempts=3, base_delay=0.05))
    with pytest.raises(ReviewServiceError) as ei2:
        bad.ensure_project()
    assert "attempts" not in str(ei2.value) and token not in str(ei2.value)
    assert "HTTP 401: Invalid token. (with a legacy token)" in str(ei2.value), str(ei2.value)


def test_page_images_render_at_page_pixels(tmp_path, documents_dir):
    from inkloop.api import DetectOptions, detect
    from inkloop.detection.results import read_results

    detect([str(documents_dir / "unsigned form.pdf")], tmp_path / "out", DetectOptions(), verdict=False)
    results = read_results(tmp_path / "out")
    pairs = PageImages(tmp_path / "imgs").render(results)
    from PIL import Image

    for r, path in pairs:
        assert Image.open(path).size == (r.page.width, r.page.height)


def test_review_cli_push_pull_status(labelstudio, tmp_path, documents_dir):
    """detect → route → `inkloop review push` (twice) → annotate → `inkloop review pull`."""
    import json
    import os
    import subprocess
    import sys

    out = tmp_path / "results"
    subprocess.run(
        [sys.executable, "-m", "inkloop", "detect", str(documents_dir), "--out", str(out), "-q", "--route"],
        check=False,
    )
    env = dict(os.environ, INKLOOP_LS_TOKEN=labelstudio.token, INKLOOP_LS_URL=labelstudio.url)

    def cli(*args: str) -> dict:
        p = subprocess.run(
            [sys.executable, "-m", "inkloop", "review", *args, "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert p.returncode == 0, p.stderr
        assert labelstudio.token not in p.stdout + p.stderr
        return json.loads(p.stdout)

    first = cli("push", str(out), "--project", "cli test", "--budget", "1.0")
    assert first["selected"] >= 1 and first["pushed"] == first["selected"]
    # the unsigned form asks for a signature and has none: it must be among the selected pages
    routing = [json.loads(x) for x in (out / "routing.jsonl").read_text().splitlines()]
    form = next(r for r in routing if r["source"].endswith("unsigned form.pdf"))
    assert form["decision"] == "review"
    second = cli("push", str(out), "--project", "cli test", "--budget", "1.0")
    assert second["pushed"] == 0 and second["already_present"] == first["selected"]
    review = LabelStudioReview(labelstudio.url, labelstudio.token, project_title="cli test")
    task = next(t for t in review.iter_tasks() if t.data["page_key"] == form["page_key"])
    review.client.annotations.create(id=task.id, result=[])
    pulled = cli("pull", "--out", str(tmp_path / "reviews.jsonl"), "--project", "cli test")
    assert pulled["pulled"] == 1 and pulled["negatives"] == 1
    st = cli("status", "--project", "cli test")
    assert st["reviewed"] == 1 and st["tasks"] == first["selected"]


def _flaky_server(plan: list[str]):
    """A local HTTP server that answers per ``plan`` (503 or ok), then serves normally."""
    import http.server
    import json as _json
    import threading

    calls: list[str] = []

    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):  # keep test output quiet
            pass

        def do_GET(self):
            step = plan[len(calls)] if len(calls) < len(plan) else "ok"
            calls.append(step)
            if step == "503":
                self.send_response(503)
                self.end_headers()
                self.wfile.write(b"busy")
                return
            page = {"count": 1, "next": None, "previous": None, "results": [{"id": 7, "title": "slow test"}]}
            body = _json.dumps(page).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, calls


def test_slow_server_times_out_and_is_retried_then_clear_error():
    """A server that accepts connections but never answers: every attempt times out."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)  # connections complete in the kernel; nothing ever reads or answers
    try:
        client = LabelStudioReview(
            f"http://127.0.0.1:{sock.getsockname()[1]}",
            "tok-123456",
            project_title="slow test",
            retry=RetryPolicy(attempts=3, base_delay=0.05, timeout=0.5),
        )
        t0 = time.monotonic()
        with pytest.raises(ReviewServiceError, match=r"after 3 attempts: ReadTimeout"):
            client.ensure_project()
        assert time.monotonic() - t0 < 30
    finally:
        sock.close()


def test_5xx_forever_gives_a_clear_error():
    srv, calls = _flaky_server(["503"] * 30)
    try:
        client = LabelStudioReview(
            f"http://127.0.0.1:{srv.server_port}",
            "tok-123456",
            project_title="down test",
            retry=RetryPolicy(attempts=3, base_delay=0.05, timeout=1),
        )
        with pytest.raises(ReviewServiceError, match=r"list projects failed after 3 attempts: HTTP 503"):
            client.ensure_project()
        assert len(calls) >= 3  # label-studio-sdk also retries 5xx inside each of our attempts
        before = len(calls)
        with pytest.raises(ReviewServiceError, match=r"whoami failed after 3 attempts: HTTP 503: busy"):
            client.call("whoami", client.auth.whoami)  # the hand-made path: retried, the server's text kept
        assert len(calls) - before == 3
    finally:
        srv.shutdown()


# --------------------------------------------------------------------------------------------
# Tokens as Label Studio 1.23 ships them; pushes that fail leave nothing behind


def _titles(labelstudio) -> list[str]:
    admin = LabelStudioReview(labelstudio.url, labelstudio.token)
    return [p.title for p in admin.client.projects.list()]


def _legacy_key(labelstudio) -> str:
    """The admin's legacy API token (Label Studio makes one per user; refused while legacy tokens are off)."""
    key = LabelStudioAuth(labelstudio.url, labelstudio.token).request("GET", "/api/current-user/token").json()
    assert not is_personal_access_token(key["token"])
    return str(key["token"])


@contextlib.contextmanager
def _legacy_tokens_enabled(labelstudio) -> Iterator[None]:
    """Turn legacy tokens on for the organisation as an admin does (``/api/jwt/settings``), and off again."""
    admin = LabelStudioAuth(labelstudio.url, labelstudio.token)

    def switch(on: bool) -> None:
        got = admin.request("POST", "/api/jwt/settings", json_body={"legacy_api_tokens_enabled": on}).json()
        assert got["legacy_api_tokens_enabled"] is on and got["api_tokens_enabled"] is True

    switch(True)
    try:
        yield
    finally:
        switch(False)


def test_a_refused_token_creates_no_project(labelstudio, page_pngs):
    """The admin's legacy key on a server with legacy tokens off: the push fails with the server's
    own reason before anything is created."""
    title = "refused token push"
    legacy = LabelStudioReview(labelstudio.url, _legacy_key(labelstudio), project_title=title)
    with pytest.raises(ReviewServiceError) as ei:
        legacy.push(page_pngs[:1], delivery="upload")
    assert "legacy token authentication has been disabled for this organization" in str(ei.value)
    assert "HTTP 401: None" not in str(ei.value)
    assert title not in _titles(labelstudio)


def test_a_failing_upload_leaves_no_half_made_project_and_a_retry_works(labelstudio, page_pngs, tmp_path):
    """A real refusal after the project exists: Label Studio does not take TIFF uploads. The push
    fails with the server's text and deletes the empty project it had created; the retry (PNG)
    creates one project with the task."""
    from PIL import Image

    title = "failing upload push"
    result, png = page_pngs[0]
    tif = tmp_path / "scan.tif"
    Image.open(png).save(tif)
    review = LabelStudioReview(labelstudio.url, labelstudio.token, project_title=title)
    with pytest.raises(ReviewServiceError) as ei:
        review.push([(result, tif)], delivery="upload")
    message = str(ei.value)
    assert "upload scan.tif failed: HTTP 400" in message and "extension is not supported" in message
    assert "was deleted again" in message
    assert title not in _titles(labelstudio)
    # a page image that is not there is found before anything is created, too
    with pytest.raises(FileNotFoundError, match=r"missing\.png"):
        review.push([(result, tmp_path / "missing.png")], delivery="upload")
    assert title not in _titles(labelstudio)
    summary = review.push([(result, png)], delivery="upload")
    assert summary["pushed"] == 1
    assert _titles(labelstudio).count(title) == 1
    assert [t.data["page_key"] for t in review.iter_tasks()] == [result.page_key]


def test_a_failure_after_tasks_keeps_the_project_and_the_retry_reuses_it(labelstudio, page_pngs, tmp_path):
    """Tasks already in: the project stays (not half-made, it holds work) and the retry lands in it."""
    from PIL import Image

    title = "partly failing push"
    (first, png0), (second, png1) = page_pngs[:2]
    tif = tmp_path / "second.tif"
    Image.open(png1).save(tif)
    review = LabelStudioReview(labelstudio.url, labelstudio.token, project_title=title)
    with pytest.raises(ReviewServiceError, match="extension is not supported") as ei:
        review.push([(first, png0), (second, tif)], delivery="upload", chunk=1)
    assert "deleted" not in str(ei.value)
    retry = LabelStudioReview(labelstudio.url, labelstudio.token, project_title=title)
    summary = retry.push([(first, png0), (second, png1)], delivery="upload")
    assert (summary["pushed"], summary["already_present"]) == (1, 1)
    assert summary["project_id"] == review.project_id and _titles(labelstudio).count(title) == 1


def test_a_legacy_token_still_works_where_the_server_allows_it(labelstudio, page_pngs, tmp_path):
    """An organisation with legacy tokens turned on: push (with uploads), status and pull work with
    the legacy key, sent as ``Token``; turned off again, it is refused with the server's reason."""
    key = _legacy_key(labelstudio)
    title = "legacy token review"
    with _legacy_tokens_enabled(labelstudio):
        legacy = LabelStudioReview(labelstudio.url, key, project_title=title)
        assert legacy.auth.kind == "legacy token" and legacy.auth.headers() == {
            "Authorization": f"Token {key}"
        }
        pushed = legacy.push(page_pngs[:2], delivery="upload")
        assert pushed["pushed"] == 2
        task = next(iter(legacy.iter_tasks()))
        assert task.data["image"].startswith("/data/upload/")
        legacy.client.annotations.create(id=task.id, result=[])
        assert legacy.status()["reviewed"] == 1
        pulled = legacy.pull(tmp_path / "cursor.json")
        assert [p.ground_truth for p in pulled] == [[]]
    off = LabelStudioReview(labelstudio.url, key, project_title=title)
    with pytest.raises(ReviewServiceError, match="legacy token authentication has been disabled"):
        off.status()


def test_airflow_hook_test_connection_with_either_token(labelstudio, tmp_path):
    """The connection form's Test button (``LabelStudioHook.test_connection``) in a real Airflow
    environment: a PAT passes and names the user; a refused token fails with the server's reason."""
    from airflow_env import airflow_env

    key = _legacy_key(labelstudio)
    code = textwrap.dedent(
        """
        import json
        from inkloop_provider.hooks.labelstudio import LabelStudioHook
        names = ("ls_pat", "ls_legacy", "ls_bad")
        print(json.dumps({c: LabelStudioHook(c).test_connection() for c in names}))
        """
    )

    def conn(token: str) -> str:
        return json.dumps({"conn_type": "labelstudio", "host": labelstudio.url, "password": token})

    env = {
        **airflow_env(tmp_path / "airflow-home", tmp_path / "data"),
        "AIRFLOW_CONN_LS_PAT": conn(labelstudio.token),
        "AIRFLOW_CONN_LS_LEGACY": conn(key),
        "AIRFLOW_CONN_LS_BAD": conn(labelstudio.token[:-4] + "AAAA"),
    }
    (tmp_path / "airflow-home").mkdir()
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    results = json.loads(p.stdout.strip().splitlines()[-1])
    assert results["ls_pat"][0] is True, results
    assert "personal access token" in results["ls_pat"][1] and labelstudio.username in results["ls_pat"][1]
    assert results["ls_legacy"][0] is False
    assert "legacy token authentication has been disabled" in results["ls_legacy"][1]
    assert results["ls_bad"][0] is False and "HTTP 401" in results["ls_bad"][1]
    for token in (labelstudio.token, key):
        assert token not in p.stdout + p.stderr


def test_status_and_pull_never_create_a_project(labelstudio, tmp_path):
    """A read-only command on a title with no project fails naming it, and creates nothing."""
    import os

    title = "no such project here"
    env = dict(os.environ, INKLOOP_LS_TOKEN=labelstudio.token, INKLOOP_LS_URL=labelstudio.url)
    for args in (["status"], ["pull", "--out", str(tmp_path / "reviews.jsonl")]):
        p = subprocess.run(
            [sys.executable, "-m", "inkloop", "review", *args, "--project", title],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert p.returncode == 1, p.stderr
        assert f"no project named {title!r}" in p.stderr
    client = LabelStudioReview(labelstudio.url, labelstudio.token, project_title=title)
    with pytest.raises(ReviewServiceError, match="no project named"):
        client.status()
    assert title not in _titles(labelstudio)
    assert not (tmp_path / "reviews.jsonl").exists()


def test_status_reads_the_project_counters(review, page_pngs):
    review.push(page_pngs[:3], delivery="upload")
    tasks = list(review.iter_tasks())
    review.client.annotations.create(id=tasks[0].id, result=[])
    review.client.annotations.create(id=tasks[1].id, result=[], was_cancelled=True)
    st = review.status()
    assert (st["tasks"], st["reviewed"], st["skipped"], st["annotations"], st["reviews"]) == (3, 1, 1, 1, 2)
    assert st["pending"] == 1

"""The Label Studio ML backend (``inkloop review backend``) against real services.

The backend runs as its own process (the CLI, uvicorn on 127.0.0.1) over a real model registry.
One test talks to it as Label Studio's connector does (the protocol, its auth, bad payloads, an
alias that moves, 50 concurrent predictions); the other connects it to a real Label Studio (its
own server: an ML backend on 127.0.0.1 needs ``ML_BLOCK_LOCAL_IP=false``) and a real Airflow API
server, and checks what an annotator and the loop see: predictions on a task imported without
any, in the browser too; a webhook Label Studio itself delivers becoming an ``inkloop_reviews``
Asset event; *Start training* becoming a run of ``inkloop_review_curate``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from inkloop import net

ROOT = Path(__file__).resolve().parents[1]
MODEL = "signature-detector"
PASSWORD = "backend-test-password"
SECRET = "webhook-test-secret"
#: Deletes the FiftyOne dataset named by argv[1] if it exists (run with the Airflow tasks' environment).
DELETE_DATASET = """
import sys
from inkloop.curation.database import import_fiftyone
fo = import_fiftyone()
if fo.dataset_exists(sys.argv[1]):
    fo.delete_dataset(sys.argv[1])
"""


# -- helpers -----------------------------------------------------------------------------------
def http(
    method: str,
    url: str,
    body: object = None,
    *,
    auth: tuple[str, str] | None = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60,
) -> tuple[int, dict]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    h = {"Content-Type": "application/json", **(headers or {})}
    if auth:
        h["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        text = exc.read()
        try:
            return exc.code, json.loads(text or b"{}")
        except ValueError:
            return exc.code, {"text": text.decode(errors="replace")}


AUTH = ("inkloop", PASSWORD)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with two versions of the bundled model; ``production`` → v1."""
    from inkloop.models.registry import Registry
    from inkloop.models.resolve import resolve_model

    root = tmp_path_factory.mktemp("registry")
    bundled = resolve_model("bundled")
    reg = Registry(str(root))
    for _ in range(2):
        reg.register(MODEL, bundled.path, bundled.card)
    reg.promote(MODEL, "v1")
    return root


@dataclass
class Backend:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


def start_backend(
    tmp: Path, registry: Path, *options: str, without: tuple[str, ...] = (), **extra_env: str
) -> Backend:
    """``inkloop review backend`` in its own process with ``options`` (e.g. ``--model …``) and the
    environment plus ``extra_env``, less the variables named in ``without``."""
    port = net.free_port()
    log = tmp / f"backend-{port}.log"
    env = {
        **{k: v for k, v in os.environ.items() if k not in without},
        "INKLOOP_REGISTRY": str(registry),
        "INKLOOP_BACKEND_PASSWORD": PASSWORD,
        "INKLOOP_WEBHOOK_SECRET": SECRET,
        **extra_env,
    }
    argv = [sys.executable, "-m", "inkloop", "review", "backend", "--port", str(port), "--alias-ttl", "1"]
    argv += options
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the backend exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if http("GET", f"{url}/health", auth=AUTH, timeout=2)[0] == 200:
                return Backend(url, proc, log)
        except OSError:
            pass
        time.sleep(0.5)
    stop(proc)
    raise AssertionError(f"the backend did not answer in 120 s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process this test started, by its own process group."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def page_task(path: Path | str, task_id: int = 1) -> dict:
    return {"id": task_id, "data": {"image": str(path)}}


@contextmanager
def task_in_browser(
    chromium: tuple[str, dict[str, str]], ls: Any, path: str, shot: Path, keep_as: str
) -> Iterator[Any]:
    """A real browser (playwright on Debian's chromium) logged in to Label Studio as the admin,
    on ``path`` (a task's page); yields the playwright page. On the way out, whatever happened,
    a screenshot goes to ``shot`` (and to ``$INKLOOP_TEST_SCREENSHOTS/keep_as`` when set)."""
    from playwright.sync_api import sync_playwright

    browser_path, browser_env = chromium
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, args=["--no-sandbox"], env=browser_env)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{ls.url}/user/login/")
        page.fill("input[name=email]", ls.username)
        page.fill("input[name=password]", os.environ.get("INKLOOP_LS_PASSWORD") or "inkloop-dev-password")
        page.locator("button[type=submit], input[type=submit]").first.click()
        page.wait_for_load_state("networkidle", timeout=60_000)
        page.goto(f"{ls.url}{path}")
        try:
            yield page
        finally:
            page.wait_for_timeout(2000)
            page.screenshot(path=str(shot))
            keep = os.environ.get("INKLOOP_TEST_SCREENSHOTS")  # a folder to keep the screenshot in
            if keep:
                shutil.copy(shot, Path(keep) / keep_as)
            browser.close()
    print(f"screenshot: {shot}")


# -- the protocol ------------------------------------------------------------------------------
def test_protocol_auth_bad_payloads_alias_and_50_concurrent(tmp_path, registry, documents_dir):
    from inkloop.convert.labelstudio import from_labelstudio
    from inkloop.detection.detector import Detector
    from inkloop.models.registry import Registry

    letter = documents_dir / "letter.jpg"
    backend = start_backend(tmp_path, registry)
    try:
        url = backend.url
        # callers must authenticate: no credentials, wrong ones, a wrong webhook secret
        assert http("GET", f"{url}/health")[0] == 401
        assert http("GET", f"{url}/health", auth=("inkloop", "wrong"))[0] == 401
        assert (
            http(
                "POST",
                f"{url}/webhook",
                {"action": "ANNOTATION_CREATED"},
                headers={"X-Inkloop-Webhook-Secret": "nope"},
            )[0]
            == 401
        )
        status, health = http("GET", f"{url}/health", auth=AUTH)
        assert status == 200 and health["status"] == "UP"

        # /setup reports the production version; /predict: boxes as pushed tasks carry them
        status, setup = http("POST", f"{url}/setup", {"project": "1.1", "schema": None}, auth=AUTH)
        assert status == 200 and setup["model_version"] == f"{MODEL}@v1"
        assert http("GET", f"{url}/versions", auth=AUTH) == (200, {"versions": [f"{MODEL}@v1"]})
        status, out = http(
            "POST", f"{url}/predict", {"tasks": [page_task(letter)], "project": "1.1"}, auth=AUTH
        )
        assert status == 200, out
        [pred] = out["results"]
        assert pred["model_version"] == f"{MODEL}@v1" and out["model_version"] == f"{MODEL}@v1"
        direct = Detector(Registry(str(registry)).fetch(MODEL, "v1"))
        import cv2

        img = cv2.cvtColor(cv2.imread(str(letter)), cv2.COLOR_BGR2RGB)
        want = direct.detect([img])[0]
        assert want, "the letter has a signature the model finds"
        _h, w = img.shape[:2]
        got = [
            from_labelstudio(r["value"], r["original_width"], r["original_height"]) for r in pred["result"]
        ]
        assert len(got) == len(want)
        for g, d in zip(got, want, strict=True):
            assert max(abs(a - b) for a, b in zip(g, d.xyxy, strict=True)) < 0.01
        assert [r["score"] for r in pred["result"]] == [round(d.score, 5) for d in want]
        assert pred["score"] == round(min(d.score for d in want), 5)
        assert {r["from_name"] for r in pred["result"]} == {"label"} and pred["result"][0][
            "original_width"
        ] == w

        # a project whose config names its tags differently gets predictions under its names
        config = (
            '<View><Image name="page" value="$scan"/><RectangleLabels name="ink" toName="page">'
            '<Label value="signature"/></RectangleLabels></View>'
        )
        status, out = http(
            "POST",
            f"{url}/predict",
            {"tasks": [{"id": 2, "data": {"scan": str(letter)}}], "label_config": config},
            auth=AUTH,
        )
        assert status == 200 and {(r["from_name"], r["to_name"]) for r in out["results"][0]["result"]} == {
            ("ink", "page")
        }

        # malformed and unknown payloads: a 4xx and a log line each, the server stays up
        bad = [
            ("POST", "/predict", None, b"{not json"),
            ("POST", "/predict", {"tasks": "all"}, None),
            ("POST", "/predict", {"tasks": []}, None),
            ("POST", "/predict", {"tasks": [page_task(tmp_path / "missing.png")]}, None),
            ("POST", "/predict", {"tasks": [page_task(letter)], "label_config": "<View><Image"}, None),
            ("POST", "/setup", {"schema": "<View><Text name='t' value='$t'/></View>"}, None),
            ("POST", "/webhook", {"no": "action"}, None),
            ("POST", "/webhook", ["a", "list"], None),
            ("POST", "/webhook", {"action": "START_TRAINING"}, None),  # no Airflow configured here
        ]
        for method, path, body, raw in bad:
            status, answer = http(method, f"{url}{path}", body, raw=raw, auth=AUTH)
            assert 400 <= status < 500 and answer.get("error"), (path, body, status, answer)
        assert http("POST", f"{url}/webhook", {"action": "PROJECT_UPDATED"}, auth=AUTH) == (
            200,
            {"status": "ignored", "action": "PROJECT_UPDATED"},
        )
        assert http("GET", f"{url}/health", auth=AUTH)[0] == 200
        logs = backend.logs()
        assert "missing.png" in logs and "the request body is not JSON" in logs and "no 'action'" in logs
        assert PASSWORD not in logs

        # a storage URL (file://, through inkloop.storage) gives the same prediction as the path
        task = page_task(letter.resolve().as_uri())
        status, out = http("POST", f"{url}/predict", {"tasks": [task]}, auth=AUTH)
        assert status == 200 and [r["value"] for r in out["results"][0]["result"]] == [
            r["value"] for r in pred["result"]
        ]

        # a batch with one unreadable task: the readable one is answered, the other left out
        status, out = http(
            "POST",
            f"{url}/predict",
            {"tasks": [page_task(letter), page_task(tmp_path / "missing.png", 2)]},
            auth=AUTH,
        )
        assert status == 200 and len(out["results"]) == 1

        # the alias moves: the running backend serves v2 within its TTL, without a restart
        Registry(str(registry)).promote(MODEL, "v2")
        deadline = time.monotonic() + 30
        while (
            http("POST", f"{url}/setup", {"project": "1.1"}, auth=AUTH)[1].get("model_version")
            != f"{MODEL}@v2"
        ):
            assert time.monotonic() < deadline, "the backend still serves v1 30 s after the promotion"
            time.sleep(0.5)
        status, out = http("POST", f"{url}/predict", {"tasks": [page_task(letter)]}, auth=AUTH)
        assert out["results"][0]["model_version"] == f"{MODEL}@v2"
        assert backend.proc.poll() is None

        # 50 concurrent /predict requests on loopback, bounded in time
        def one(_: int) -> tuple[int, float]:
            t0 = time.perf_counter()
            s, _out = http("POST", f"{url}/predict", {"tasks": [page_task(letter)]}, auth=AUTH, timeout=120)
            return s, time.perf_counter() - t0

        t0 = time.perf_counter()
        with ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(one, range(50)))
        wall = time.perf_counter() - t0
        assert [s for s, _ in answers] == [200] * 50
        lat = sorted(t for _, t in answers)
        print(
            f"50 concurrent /predict: wall {wall:.2f} s, latency p50 {statistics.median(lat):.2f} s, "
            f"p95 {lat[int(0.95 * 49)]:.2f} s, max {lat[-1]:.2f} s"
        )
        assert wall < 120
    finally:
        Registry(str(registry)).promote(MODEL, "v1")
        stop(backend.proc)


@pytest.mark.parametrize("kind", ["registry", "mlflow"])
def test_an_alias_check_fetches_the_model_only_when_the_alias_moved(kind, tmp_path, monkeypatch, request):
    """``registry://`` and ``mlflow://`` alike: every alias check (TTL 0 here: every call) asks
    the registry for the version alone; the model is fetched and loaded again only after the
    alias moved. Counted by a :class:`ModelServer` that notes its loads."""
    from inkloop.models.resolve import open_registry, resolve_model
    from inkloop.review.backend import ModelServer

    monkeypatch.setenv("INKLOOP_REGISTRY_CACHE", str(tmp_path / "cache"))
    if kind == "mlflow":
        url, _data = request.getfixturevalue("mlflow_server")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        reg = open_registry(f"mlflow+{url}")
        if MODEL in [m.name for m in reg.client.search_registered_models()]:  # type: ignore[attr-defined]
            reg.client.delete_registered_model(MODEL)  # type: ignore[attr-defined]
        ref = f"mlflow://{MODEL}@production"
    else:
        monkeypatch.setenv("INKLOOP_REGISTRY", str(tmp_path / "registry"))
        reg = open_registry()
        ref = f"registry://{MODEL}@production"
    bundled = resolve_model("bundled")
    for _ in range(2):
        reg.register(MODEL, bundled.path, bundled.card)
    reg.promote(MODEL, "v1")

    loads: list[str | None] = []

    class Counted(ModelServer):
        def _load(self, version: str | None) -> object:
            loads.append(version)
            return super()._load(version)

    server = Counted(ref, alias_ttl=0)
    assert [server.model_version for _ in range(3)] == [f"{MODEL}@v1"] * 3
    assert loads == ["v1"]  # checked three times, fetched once
    reg.promote(MODEL, "v2")
    assert [server.model_version for _ in range(2)] == [f"{MODEL}@v2"] * 2
    assert loads == ["v1", "v2"] and server.swaps == 1


def test_the_backend_refuses_to_start_without_credentials(tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "inkloop", "review", "backend", "--model", "bundled"],
        env={k: v for k, v in os.environ.items() if k != "INKLOOP_BACKEND_PASSWORD"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2 and "INKLOOP_BACKEND_PASSWORD" in p.stderr


# -- with a real Label Studio and a real Airflow -----------------------------------------------
@dataclass
class AirflowServer:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def api(self, method: str, path: str, body: object = None) -> tuple[int, dict]:
        token = json.loads(urllib.request.urlopen(f"{self.url}/auth/token", timeout=30).read())[
            "access_token"
        ]
        return http(method, f"{self.url}/api/v2{path}", body, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture(scope="module")
def airflow_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowServer]:
    """A real Airflow 3 API server (SQLite, the checkout's DAGs serialized), the simple auth
    manager with every user an admin (local), webhooks wired: the review sync only pushes."""
    sys.path.insert(0, str(ROOT / "tests"))
    from airflow_env import migrate, run_airflow

    home = tmp_path_factory.mktemp("airflow-api")
    port = net.free_port()
    env = migrate(home, home / "data")
    env.update(
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__API__BASE_URL=f"http://127.0.0.1:{port}",
        AIRFLOW__API_AUTH__JWT_SECRET="test-secret-" + os.urandom(8).hex(),
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
        INKLOOP_REVIEW_EVENTS="1",
    )
    p = run_airflow(env, "dags", "reserialize", timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    log = home / "api-server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("airflow")),
                "api-server",
                "-H",
                "127.0.0.1",
                "-p",
                str(port),
                "-w",
                "1",
            ],
            env=env,
            cwd=home,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = AirflowServer(f"http://127.0.0.1:{port}", proc, log)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if http("GET", f"{server.url}/api/v2/monitor/health", timeout=3)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1)
        yield server
    finally:
        stop(proc)


@pytest.mark.labelstudio
@pytest.mark.airflow
def test_label_studio_connects_predicts_and_delivers_reviews_and_training_to_airflow(
    tmp_path, registry, labelstudio_local_calls, airflow_api, documents_dir, chromium
):
    from inkloop.review.backend import connect
    from inkloop.review.labelstudio import LabelStudioReview

    ls = labelstudio_local_calls
    review = LabelStudioReview(ls.url, ls.token, project_title="ml backend")
    pid = review.ensure_project()
    image = review.upload_image(documents_dir / "letter.jpg")
    imported = review.client.projects.import_tasks(
        id=pid, request=[{"data": {"image": image}}, {"data": {"image": image}}], return_task_ids=True
    )
    task_ids = list(imported.task_ids)
    assert not review.client.predictions.list(task=task_ids[0])  # imported without predictions

    # webhooks wired (INKLOOP_REVIEW_EVENTS=1): the review sync only pushes, curation is on events
    _s, sync_tasks = airflow_api.api("GET", "/dags/inkloop_review_sync/tasks")
    assert [t["task_id"] for t in sync_tasks["tasks"]] == ["push_reviews"]
    _s, curate_dag = airflow_api.api("GET", "/dags/inkloop_review_curate/details")
    assert curate_dag["timetable_summary"] == "Asset"  # on inkloop_reviews: the queued event below
    # the curate DAG must be active for an Asset event to queue a run of it
    assert airflow_api.api("PATCH", "/dags/inkloop_review_curate", {"is_paused": False})[0] == 200
    backend = start_backend(
        tmp_path,
        registry,
        INKLOOP_LS_URL=ls.url,
        INKLOOP_LS_TOKEN=ls.token,
        INKLOOP_AIRFLOW_URL=airflow_api.url,
    )
    try:
        record = connect(
            ls.url, ls.token, pid, backend.url, username="inkloop", password=PASSWORD, webhook_secret=SECRET
        )
        assert record["state"] == "CO" and record["model_version"] == f"{MODEL}@v1", record

        # "Retrieve predictions" for the project's tasks (the Data Manager's action)
        answer = review.auth.request(
            "POST",
            "/api/dm/actions",
            params={"id": "retrieve_tasks_predictions", "project": pid},
            json_body={"selectedItems": {"all": True, "excluded": []}, "project": pid},
        )
        assert answer.status == 200, answer.body[:300]
        for tid in task_ids:
            preds = review.client.predictions.list(task=tid)
            assert preds and preds[0].model_version == f"{MODEL}@v1"
            assert preds[0].result and all(0 < r["score"] <= 1 for r in preds[0].result)
        first = review.client.predictions.list(task=task_ids[0])[0]

        # an annotator opens the task in a browser and sees the model's boxes
        where = f"/projects/{pid}/data?task={task_ids[0]}"
        with task_in_browser(chromium, ls, where, tmp_path / "task.png", "ml-backend-task.png") as page:
            # the prediction's tab (its score, the lowest box score, in percent) and each of
            # its boxes in the Regions panel with its score
            page.get_by_text(f"{first.score * 100:.2f}%").first.wait_for(timeout=60_000)
            for region in first.result:
                page.get_by_text(f"{region['score']:.2f}", exact=True).first.wait_for(timeout=10_000)
            assert page.get_by_text("signature", exact=True).count() >= len(first.result)

        # a promotion: Label Studio's next "Retrieve predictions" gets the new version's boxes
        # from the same running backend (its /setup reports v2; tasks lacking a v2 prediction get one)
        from inkloop.models.registry import Registry

        Registry(str(registry)).promote(MODEL, "v2")
        time.sleep(1.5)  # the backend's alias TTL (--alias-ttl 1)
        answer = review.auth.request(
            "POST",
            "/api/dm/actions",
            params={"id": "retrieve_tasks_predictions", "project": pid},
            json_body={"selectedItems": {"all": True, "excluded": []}, "project": pid},
        )
        assert answer.status == 200, answer.body[:300]
        for tid in task_ids:
            versions = {p.model_version for p in review.client.predictions.list(task=tid)}
            assert versions == {f"{MODEL}@v1", f"{MODEL}@v2"}, versions
        ml = review.auth.request("GET", f"/api/ml/{record['id']}").json()
        assert ml["model_version"] == f"{MODEL}@v2"

        # a review in Label Studio: Label Studio's own webhook reaches the backend, which
        # publishes inkloop_reviews in Airflow; the curate DAG is queued on it
        review.client.annotations.create(id=task_ids[0], result=[])
        _status, assets = airflow_api.api("GET", "/assets?name_pattern=inkloop_reviews")
        asset_id = next(a["id"] for a in assets["assets"] if a["name"] == "inkloop_reviews")
        deadline = time.monotonic() + 60
        while True:
            _s, events = airflow_api.api("GET", f"/assets/events?asset_id={asset_id}")
            got = [
                e for e in events.get("asset_events", []) if e["extra"].get("action") == "ANNOTATION_CREATED"
            ]
            if got:
                break
            assert time.monotonic() < deadline, backend.logs()[-3000:]
            time.sleep(1)
        assert got[0]["extra"]["labelstudio_project"] == pid and got[0]["extra"]["from_rest_api"]
        _s, queued = airflow_api.api("GET", "/dags/inkloop_review_curate/assets/queuedEvents")
        assert any(q["asset_id"] == asset_id for q in queued.get("queued_events", [])), queued

        # Start training: Label Studio asks the backend, the backend asks Airflow, at once
        t0 = time.monotonic()
        answer = review.auth.request("POST", f"/api/ml/{record['id']}/train", json_body={})
        assert answer.status == 200 and time.monotonic() - t0 < 10
        deadline = time.monotonic() + 60
        while True:
            _s, runs = airflow_api.api("GET", "/dags/inkloop_review_curate/dagRuns")
            manual = [r for r in runs.get("dag_runs", []) if r["run_type"] == "manual"]
            if manual:
                break
            assert time.monotonic() < deadline, backend.logs()[-3000:]
            time.sleep(1)
        assert manual[0]["conf"]["min_reviewed"] == 0 and manual[0]["conf"]["project"] == "ml backend"
        logs = backend.logs()
        assert ls.token not in logs and PASSWORD not in logs
    finally:
        from inkloop.models.registry import Registry

        Registry(str(registry)).promote(MODEL, "v1")
        stop(backend.proc)


# -- the polling fallback ----------------------------------------------------------------------
WAIT_CHECK = """
import asyncio, json, sys
from inkloop.review.labelstudio import LabelStudioReview
from inkloop_provider.sensors.review import LabelStudioReviewsSensor
from inkloop_provider.triggers.review import LabelStudioReviewsTrigger

url, token, title = sys.argv[1:4]
client = LabelStudioReview(url, token, project_title=title)


class TI:
    def xcom_push(self, key, value):
        pass


sensor = LabelStudioReviewsSensor(task_id="wait", project=title, min_reviewed=2, labelstudio_conn_id="ls")
assert not sensor.poke({"ti": TI()}), "3 old reviews must not satisfy a wait for 2 new ones"
trigger = LabelStudioReviewsTrigger("ls", title, 2, poll_interval=0.5, baseline=sensor.baseline)


async def main():
    first = asyncio.ensure_future(trigger.run().__anext__())
    await asyncio.sleep(3)
    assert not first.done(), "the trigger fired on reviews from before its baseline"
    for task in list(client.iter_tasks())[:2]:
        await asyncio.to_thread(client.client.annotations.create, id=task.id, result=[])
    return (await asyncio.wait_for(first, 60)).payload


payload = asyncio.run(main())
assert sensor.poke({"ti": TI()})
print(json.dumps({"baseline": sensor.baseline, **payload}))
"""


@pytest.mark.labelstudio
@pytest.mark.airflow
def test_a_wait_counts_only_reviews_after_its_baseline(labelstudio, tmp_path, pages_dir):
    """A project that already had enough reviews still waits for new ones (sensor and trigger)."""
    from PIL import Image

    from inkloop.review.labelstudio import LabelStudioReview
    from inkloop.types import Detection, Page, PageResult

    sys.path.insert(0, str(ROOT / "tests"))
    from airflow_env import airflow_env

    title = "baseline wait"
    review = LabelStudioReview(labelstudio.url, labelstudio.token, project_title=title)
    pages = []
    for i, src in enumerate(sorted(p for p in pages_dir.iterdir() if p.suffix in (".png", ".jpg"))[:3]):
        img = tmp_path / f"p{i}.png"
        im = Image.open(src).convert("RGB")
        im.save(img)
        w, h = im.size
        page = PageResult(
            page=Page(doc_id=f"{i:064d}", index=0, width=w, height=h),
            detections=[Detection("signature", 0.5, (10, 10, 50, 30))],
            model_version="signature-detector@test",
            source=str(src),
        )
        pages.append((page, img))
    review.push(pages)
    for task in review.iter_tasks():  # every task reviewed once already: 3 reviews
        review.client.annotations.create(id=task.id, result=[])
    assert review.status()["reviews"] == 3

    conn = json.dumps({"conn_type": "labelstudio", "host": labelstudio.url, "password": labelstudio.token})
    home = tmp_path / "airflow-home"
    home.mkdir()
    env = {**airflow_env(home, tmp_path / "data"), "AIRFLOW_CONN_LS": conn}
    p = subprocess.run(
        [sys.executable, "-c", WAIT_CHECK, labelstudio.url, labelstudio.token, title],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    event = json.loads(p.stdout.strip().splitlines()[-1])
    assert event["baseline"] == 3 and event["status"] == "ready"
    assert event["new_reviews"] == 2 and event["reviews"] == 5


@pytest.mark.labelstudio
@pytest.mark.airflow
def test_review_curate_pulls_on_every_event_and_waits_for_min_reviewed(labelstudio, tmp_path, pages_dir):
    """inkloop_review_curate (the events half of the review sync) in `airflow dags test`: every run
    pulls what is new; curation waits until ``min_reviewed`` reviews were pulled since the last
    export, the count carried from run to run."""
    from PIL import Image

    from inkloop.review.labelstudio import LabelStudioReview
    from inkloop.types import Page, PageResult

    sys.path.insert(0, str(ROOT / "tests"))
    from airflow_env import AirflowCLI, migrate

    title = "curate on events"
    review = LabelStudioReview(labelstudio.url, labelstudio.token, project_title=title)
    pages = []
    for i, src in enumerate(sorted(p for p in pages_dir.iterdir() if p.suffix in (".png", ".jpg"))[:3]):
        img = tmp_path / f"p{i}.png"
        Image.open(src).convert("RGB").save(img)
        w, h = Image.open(img).size
        pages.append(
            (
                PageResult(
                    page=Page(doc_id=f"{i + 7:064d}", index=0, width=w, height=h),
                    detections=[],
                    model_version="signature-detector@test",
                    source=str(src),
                ),
                img,
            )
        )
    review.push(pages)
    tasks = list(review.iter_tasks())
    for task in tasks[:2]:
        review.client.annotations.create(id=task.id, result=[])

    results = tmp_path / "results"
    env = migrate(tmp_path / "airflow", tmp_path / "data")
    env["AIRFLOW_CONN_LABELSTUDIO_DEFAULT"] = json.dumps(
        {"conn_type": "labelstudio", "host": labelstudio.url, "password": labelstudio.token}
    )
    conf = json.dumps({"project": title, "min_reviewed": 3, "results_dir": str(results)})
    with AirflowCLI(env) as airflow:
        first = airflow.run("dags", "test", "inkloop_review_curate", "-c", conf, timeout=600)
        assert first.returncode == 0 and "state=success" in first.stdout, first.stdout[-4000:]
        assert len((results / "reviews.jsonl").read_text().splitlines()) == 2  # pulled at once
        review.client.annotations.create(id=tasks[2].id, result=[])
        conf_wait = json.dumps({"project": title, "min_reviewed": 4, "results_dir": str(results)})
        second = airflow.run("dags", "test", "inkloop_review_curate", "-c", conf_wait, timeout=600)
        assert second.returncode == 0 and "state=success" in second.stdout, second.stdout[-4000:]
        assert len((results / "reviews.jsonl").read_text().splitlines()) == 3
        # curation was skipped both times (3 < 4), the count kept for the next event
        assert "2 reviews pulled since the last export; 3 needed: wait" in first.stdout
        assert "3 reviews pulled since the last export; 4 needed: wait" in second.stdout
        assert labelstudio.token not in first.stdout + second.stdout

        # 3 of 3: curate runs, and fails (the folder holds reviews, no detection results). The
        # count is reset only after a curation that succeeded, so the next event still sees 3.
        dataset = f"inkloop-test-review-curate-{uuid.uuid4().hex[:8]}"
        conf_fail = json.dumps(
            {"project": title, "min_reviewed": 3, "results_dir": str(results), "dataset": dataset}
        )
        try:
            third = airflow.run("dags", "test", "inkloop_review_curate", "-c", conf_fail, timeout=600)
            assert "3 reviews pulled since the last export; 3 needed: curate" in third.stdout, third.stdout[
                -4000:
            ]
            assert "state=failed" in third.stdout and "has no results.jsonl" in third.stdout, third.stdout[
                -4000:
            ]
            assert "pending reviews reset" not in third.stdout
            fourth = airflow.run("dags", "test", "inkloop_review_curate", "-c", conf_wait, timeout=600)
            assert "3 reviews pulled since the last export; 4 needed: wait" in fourth.stdout, fourth.stdout[
                -4000:
            ]
        finally:  # the failed curation created its (empty) FiftyOne dataset first
            subprocess.run(
                [sys.executable, "-c", DELETE_DATASET, dataset], env=env, capture_output=True, timeout=300
            )


def test_start_training_is_answered_at_once_when_airflow_is_down(tmp_path, registry):
    """The backend never waits on Airflow inside a request: a closed port still gets an immediate
    answer, and the failure (after retries) is a log line naming Airflow, the server still up."""
    down = f"http://127.0.0.1:{net.free_port()}"
    backend = start_backend(tmp_path, registry, INKLOOP_AIRFLOW_URL=down)
    try:
        t0 = time.monotonic()
        secret = {"X-Inkloop-Webhook-Secret": SECRET}
        train = {"action": "START_TRAINING", "project": {"id": 3, "title": "p"}}
        status, answer = http("POST", f"{backend.url}/webhook", train, headers=secret)
        assert status == 201 and answer["dag"] == "inkloop_review_curate"
        created = {"action": "ANNOTATION_CREATED", "project": {"id": 3}}
        status, _ = http("POST", f"{backend.url}/webhook", created, headers=secret)
        assert status == 202 and time.monotonic() - t0 < 2
        deadline = time.monotonic() + 60
        while "cannot forward reviews to Airflow after 4 attempts" not in backend.logs():
            assert time.monotonic() < deadline, backend.logs()[-3000:]
            time.sleep(1)
        logs = backend.logs()
        assert "cannot forward train to Airflow after 4 attempts" in logs and down in logs
        assert http("GET", f"{backend.url}/health", auth=AUTH)[0] == 200
    finally:
        stop(backend.proc)


# -- a model on Triton, and `inkloop review connect` as a command -------------------------------
@pytest.mark.slow
def test_the_backend_serves_a_triton_model(tmp_path, registry, documents_dir):
    """``--model triton://…``: predictions come from a Triton server (PyTriton in its own venv,
    :mod:`inkloop.serving.launcher`) and equal the local model's within the Triton parity bound;
    ``/setup`` reports the served model's version; when the server goes away a prediction fails
    naming it, and the backend stays up."""
    import cv2

    from inkloop.convert.labelstudio import from_labelstudio
    from inkloop.detection.detector import Detector
    from inkloop.models.resolve import resolve_model
    from inkloop.serving.launcher import TritonServer
    from parity import TRITON_BOX

    letter = documents_dir / "letter.jpg"
    server = TritonServer("bundled")
    server.start()
    backend = None
    try:
        backend = start_backend(tmp_path, registry, "--model", server.ref)
        local = Detector(resolve_model("bundled"))
        status, setup = http("POST", f"{backend.url}/setup", {"project": "1.1"}, auth=AUTH)
        assert status == 200 and setup["model_version"] == local.model_version, setup
        status, out = http("POST", f"{backend.url}/predict", {"tasks": [page_task(letter)]}, auth=AUTH)
        assert status == 200, out
        img = cv2.cvtColor(cv2.imread(str(letter)), cv2.COLOR_BGR2RGB)
        want = local.detect([img])[0]
        got = out["results"][0]["result"]
        assert want and len(got) == len(want)
        worst = 0.0
        for region, det in zip(got, want, strict=True):
            box = from_labelstudio(region["value"], region["original_width"], region["original_height"])
            corners = (abs(a - b) for a, b in zip(box, det.xyxy, strict=True))
            worst = max(worst, abs(region["score"] - det.score), *corners)
        TRITON_BOX.check(worst, "ML backend over triton://")
        assert out["results"][0]["model_version"] == local.model_version

        assert server.stop() == 0
        status, out = http("POST", f"{backend.url}/predict", {"tasks": [page_task(letter)]}, auth=AUTH)
        assert status >= 500 and f"{server.host}:{server.http_port}" in out["error"], out
        assert http("GET", f"{backend.url}/health", auth=AUTH)[0] == 200 and backend.proc.poll() is None
    finally:
        if backend is not None:
            stop(backend.proc)
        server.stop()


@pytest.mark.labelstudio
def test_review_connect_command(tmp_path, registry, labelstudio_local_calls):
    """``inkloop review connect`` in its own process against a real Label Studio: refused
    credentials and a missing project exit 1 with the reason; connecting creates the ML backend
    (Label Studio validates it: /health, /setup) and narrows its webhook to review events with
    the secret header; connecting again updates that connection instead of adding one."""
    from inkloop.review.backend import REVIEW_ACTIONS, WEBHOOK_SECRET_HEADER
    from inkloop.review.labelstudio import LabelStudioReview

    ls = labelstudio_local_calls
    title = "connect command"
    review = LabelStudioReview(ls.url, ls.token, project_title=title)
    pid = review.ensure_project()
    backend = start_backend(tmp_path, registry)
    env = {
        **os.environ,
        "INKLOOP_LS_URL": ls.url,
        "INKLOOP_LS_TOKEN": ls.token,
        "INKLOOP_BACKEND_PASSWORD": PASSWORD,
        "INKLOOP_WEBHOOK_SECRET": SECRET,
    }

    def connect(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "inkloop", "review", "connect", backend.url, *args]
        return subprocess.run(argv, env={**env, **extra}, capture_output=True, text=True, timeout=300)

    try:
        wrong = connect("--project", title, INKLOOP_BACKEND_PASSWORD="not-the-password")
        assert wrong.returncode == 1, wrong.stderr
        assert "authentication parameters were either not provided or are incorrect" in wrong.stderr
        missing = connect("--project", "no such project")
        assert missing.returncode == 1 and "no project named 'no such project'" in missing.stderr

        for _ in range(2):
            done = connect("--project", title, "--json")
            assert done.returncode == 0, done.stderr
            out = json.loads(done.stdout)
            assert (out["project_id"], out["state"], out["model_version"]) == (pid, "CO", f"{MODEL}@v1")
            [ml] = review.auth.request("GET", "/api/ml", params={"project": pid}).json()
            assert (
                ml["url"] == backend.url
                and ml["auth_method"] == "BASIC_AUTH"
                and ml["id"] == out["ml_backend_id"]
            )
            [hook] = review.auth.request("GET", "/api/webhooks", params={"project": pid}).json()
            assert hook["url"] == f"{backend.url}/webhook" and hook["headers"] == {
                WEBHOOK_SECRET_HEADER: SECRET
            }
            assert not hook["send_for_all_actions"] and set(hook["actions"]) == REVIEW_ACTIONS
            for text in (done.stdout, done.stderr, wrong.stderr):
                assert ls.token not in text and PASSWORD not in text
    finally:
        stop(backend.proc)

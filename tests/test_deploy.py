"""The DAGs on a real distributed Airflow: CeleryExecutor, two workers, Redis, PostgreSQL.

Why: ``airflow dags test`` runs a DAG in one process on SQLite; what users meet when they spread
detection over workers (batches routed by Celery, queues, a worker lost mid-batch, a sensor
deferred to the triggerer) only shows on the real thing. One deployment per module, from the
project's own ``deploy/local_airflow.py`` (its own state folder and free ports, so a developer's
``make deploy-up`` is not disturbed), stopped by its PIDs at the end.

The deployment runs with its data in a bucket (``storage="s3"``: moto's S3 server started and
stopped by the deployment, ``INKLOOP_DATA=s3://inkloop-data``, the Airflow connection
``inkloop_storage`` its only way in, no AWS variables, no local data folder); tests that give the
DAGs local folders explicitly check that local paths still work beside it.

Which worker ran a task is read from the Celery result backend (``celery_taskmeta.worker``),
joined to each try of each task instance by its Celery task id: both workers run on this machine,
so ``ti.hostname`` is the same for both.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "deploy"))

import load_benchmark as lb  # noqa: E402
import local_airflow as la  # noqa: E402

from inkloop.detection.inbox import MAX_MAP_LENGTH, plan_inbox  # noqa: E402
from inkloop.detection.results import ResultStore  # noqa: E402
from inkloop.documents.inputs import plan_batches  # noqa: E402

DETECT = "inkloop_detect"


# -- without a deployment ----------------------------------------------------------------------
@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 1279, 1280, 1281, 20_000, 100_003])
def test_batch_planner_keeps_map_indexes_under_airflows_cap(n):
    files = [f"/inbox/doc-{i:06d}.pdf" for i in range(n)]  # names only: planning never opens them
    for per_batch, cap in ((20, 64), (1, 64), (20, 1024), (1, 1024)):
        batches = plan_batches(files, per_batch, cap)
        assert len(batches) <= min(cap, lb.AIRFLOW_MAX_MAP_LENGTH)
        assert [f for b in batches for f in b] == files  # each file once, order kept
        assert all(batches)


def test_plan_inbox_never_exceeds_airflows_cap_even_without_a_limit(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for i in range(1100):
        (inbox / f"d{i:05d}.png").write_bytes(b"x%d" % i)
    batches = plan_inbox(str(inbox), tmp_path / "results", docs_per_batch=1)
    assert len(batches) <= MAX_MAP_LENGTH == lb.AIRFLOW_MAX_MAP_LENGTH
    assert sum(len(b) for b in batches) == 1100


def test_a_line_cut_by_a_killed_writer_does_not_swallow_the_next_document(tmp_path):
    """A worker killed mid-write leaves half a line; the retry's first record must not join it."""
    (tmp_path / "results.jsonl").write_text('{"kind": "page", "page": {"doc_id": "a"}}\n{"kind": "pa')
    from inkloop.types import Page, PageResult

    with ResultStore(tmp_path) as store:
        assert store.is_done("a")
        store.write_document([PageResult(Page(doc_id="b", index=0, width=10, height=10), [], "m")])
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert [json.loads(x)["page"]["doc_id"] for x in lines] == ["a", "b"]


def test_a_pid_file_names_one_process_not_a_reused_number(tmp_path):
    """PIDs wrap around (pid_max 32,768 here; threads share the counter): a PID file whose process
    died must not name whatever process or thread got its number next."""
    dep = la.Deployment(state=tmp_path)
    dep.pids.mkdir(parents=True)
    proc = subprocess.Popen(["sleep", "30"], env={**os.environ, la.MARKER: str(tmp_path)}, cwd=tmp_path)
    try:
        la._write_pid(dep, "worker-wa", proc.pid)
        assert dep.pid_of("worker-wa") == proc.pid
        (dep.pids / "worker-wa.pid").write_text(f"{proc.pid} 1\n")  # the same number, another start
        assert dep.pid_of("worker-wa") is None
        (dep.pids / "worker-wa.pid").write_text(f"{proc.pid}\n")  # a file from before start times
        assert dep.pid_of("worker-wa") == proc.pid
    finally:
        proc.kill()
        proc.wait()
    assert dep.pid_of("worker-wa") is None


# -- on the deployment ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def deployment() -> Iterator[la.Deployment]:
    from inkloop.net import free_port

    state = ROOT / ".cache" / "deploy-test"
    old = la.Deployment(state=state)
    la.down(old)  # a previous session killed before its teardown
    if (state / "postgres").is_symlink():  # PostgreSQL's folder kept outside (see _place_pgroot)
        shutil.rmtree((state / "postgres").resolve(), ignore_errors=True)
    shutil.rmtree(state, ignore_errors=True)
    # A killed worker's task is declared lost after 20 s without a heartbeat (the deployment's
    # default is 30): Airflow's task supervisors beat every 5 s, so a live task misses four first.
    # A task the killed worker had taken but not started stays queued until the queued timeout
    # (Airflow's 600 s by default; one CI-like run hit it): 90 s here, where no test queues more
    # than a few short batches behind the four worker slots.
    dep = la.Deployment(
        state=state,
        pg_port=free_port(),
        redis_port=free_port(),
        api_port=free_port(),
        concurrency=2,
        heartbeat_timeout=20,
        queued_timeout=90,
        storage="s3",
        s3_port=free_port(),
    )
    t0 = time.monotonic()
    try:
        la.up(dep)
    except la.DeployError as exc:
        la.down(dep)
        pytest.fail(f"the local deployment did not start: {exc}", pytrace=False)
    print(f"deployment up in {time.monotonic() - t0:.0f} s")
    assert not dep.data.exists(), "the s3 deployment made a local data folder"  # (tests below make theirs)
    try:
        yield dep
    finally:
        la.down(dep)
        assert all(pid is None for pid in dep.processes().values())
        assert dep.pid_of("s3") is None
        assert la.strays(dep) == []


@pytest.fixture(scope="module")
def client(deployment: la.Deployment) -> la.Client:
    return la.Client(deployment)


def _safe(run_id: str) -> str:
    return run_id.replace(":", "_").replace("+", "_")


def _documents_logged(dep: la.Deployment, run_id: str, map_index: int, try_number: int = 1) -> int:
    """Documents a detect try has finished so far, from its task log (the operator logs each one
    as ``detected …`` / ``quarantined …``): how far into its batch it is, wherever it writes."""
    log = (
        dep.home
        / "logs"
        / f"dag_id={DETECT}"
        / f"run_id={run_id}"
        / "task_id=detect"
        / f"map_index={map_index}"
        / f"attempt={try_number}.log"
    )
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return 0
    return sum(1 for x in lines if '"event":"detected ' in x or '"event":"quarantined ' in x)


def _victim_mid_batch(client: la.Client, dep: la.Deployment, run_id: str) -> tuple[str, int, int]:
    """(worker, map index, documents done) of a detect task caught early in its batch (1-4
    documents done): the moment to kill its worker. Fails after 300 s."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        for t in client.task_tries(DETECT, run_id, "detect"):
            w = client.worker_of_pid(t["pid"]) if t["state"] == "running" else None
            done = _documents_logged(dep, run_id, t["map_index"]) if w is not None else 0
            if 0 < done <= 4:  # mid-batch: its first documents done, most still to come
                return w, t["map_index"], done
        time.sleep(0.2)
    pytest.fail("no detect task was seen early in a batch (1-4 documents done)")


def _kill_and_recover(
    client: la.Client, dep: la.Deployment, run_id: str, victim: str, index: int, main_only: bool = False
) -> tuple[int, float]:
    """SIGKILL the victim's worker (every process, or its main PID alone), start it again once its
    batch is in other hands, wait for the run: (processes killed, seconds from kill to success)."""
    pids = dep.worker_pids(f"worker-{victim}")
    killed_at = time.monotonic()
    restarted = False
    try:
        for pid in pids[:1] if main_only else pids:
            with contextlib.suppress(ProcessLookupError):  # a task's child that ended meanwhile
                os.kill(pid, signal.SIGKILL)
        # the victim comes back once its batch is in other hands (a later try started on a worker,
        # or the batch or the run ended), so its start overlaps the rest of the run without taking
        # the retry: a later try merely queued is not in other hands yet — the victim, back first,
        # took one such retry while the other worker was still busy (CI, 2026-12-07)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            mine = [t for t in client.task_tries(DETECT, run_id, "detect") if t["map_index"] == index]
            started = any(t["try_number"] > 1 and t["worker"] for t in mine)
            handed_on = started or mine[-1]["state"] == "success"
            if handed_on or client.run_state(DETECT, run_id) in ("success", "failed"):
                break
            time.sleep(1)
        la.start_worker(dep, victim)
        restarted = True
        assert client.wait_run(DETECT, run_id, timeout=600) == "success"
        return len(pids), time.monotonic() - killed_at
    finally:
        if not restarted:
            la.start_worker(dep, victim)
        la._wait(f"worker {victim}", lambda: la._ready_line(dep.logs / f"worker-{victim}.log", victim), 120)


def _local_url_folders(*roots: Path) -> list[Path]:
    """Folders named like a URL's scheme (``s3:``): a storage URL turned into a local path."""
    found = []
    for root in roots:
        for dirpath, dirnames, _ in os.walk(root):
            found += [Path(dirpath, d) for d in dirnames if d in ("s3:", "gs:")]
            dirnames[:] = [d for d in dirnames if d not in (".git", ".venv", "node_modules")]
    return found


@pytest.mark.slow
@pytest.mark.airflow
@pytest.mark.deploy
def test_detect_spreads_mapped_batches_over_both_workers(deployment, client):
    data = deployment.data / "spread"
    manifest = lb.make_inbox(data / "inbox", pages=10, broken_every=4, prefix="spread")
    run_id = client.trigger(
        DETECT, {"inbox": str(data / "inbox"), "out_dir": str(data / "results"), "docs_per_batch": 1}
    )
    assert client.wait_run(DETECT, run_id, timeout=600) == "success"
    tries = client.task_tries(DETECT, run_id, "detect")
    assert len({t["map_index"] for t in tries}) == len(manifest)
    by_worker: dict[str, list[int]] = {}
    for t in tries:
        assert t["state"] == "success" and t["queue"] == "default"
        by_worker.setdefault(t["worker"].split("@")[0], []).append(t["map_index"])
    print("map indexes per worker:", by_worker)
    assert set(by_worker) == {"wa", "wb"}, by_worker
    assert len({t["hostname"] for t in tries}) == 1  # why the worker comes from Celery's record
    check = lb.check_results(data / "results", manifest)
    assert check["lost"] == check["duplicated_docs"] == check["duplicated_pages"] == 0, check
    assert check["broken_quarantined"] == check["broken"] > 0, check


@pytest.mark.slow
@pytest.mark.airflow
@pytest.mark.deploy
def test_detect_workers_send_nothing_off_the_machine_idle_or_busy(deployment, client, tmp_path):
    """Both Celery workers under strace (their main processes and pool, and every task process
    they fork) while idle, through a detect run, and idle again for onnxruntime's telemetry
    delay: every connect/sendto goes to 127.0.0.0/8 (Redis, PostgreSQL, the API server), no DNS
    look-up of any public name (tests/netmonitor.py)."""
    import contextlib

    import netmonitor

    if not Path(netmonitor.STRACE).exists():
        pytest.fail("strace is not installed (apt-get install strace)")
    data = deployment.data / "privacy"
    lb.make_inbox(data / "inbox", pages=4, broken_every=100, prefix="privacy")
    pids = [pid for w in ("worker-wa", "worker-wb") for pid in deployment.worker_pids(w)]
    assert pids, "no worker runs"
    with contextlib.ExitStack() as stack:
        logs = {pid: tmp_path / f"strace-{pid}.log" for pid in pids}
        watches = [stack.enter_context(netmonitor.Attached(pid, log)) for pid, log in logs.items()]
        time.sleep(3)  # idle (and idle again after the run, below)
        run_id = client.trigger(DETECT, {"inbox": str(data / "inbox"), "out_dir": str(data / "results")})
        assert client.wait_run(DETECT, run_id, timeout=600) == "success"
        time.sleep(10)  # onnxruntime's telemetry fires seconds after a session ran
    traced = sum(len(w.log.read_text().splitlines()) for w in watches if w.log.exists())
    assert traced > 0, "strace recorded nothing: it did not attach"
    leaks = [leak for w in watches for leak in w.leaks]
    assert leaks == [], "calls leaving the machine:\n" + "\n".join(f"  {leak}" for leak in leaks)


@pytest.mark.slow
@pytest.mark.airflow
@pytest.mark.deploy
@pytest.mark.parametrize("kill", ["tree", "main"])
def test_a_worker_killed_mid_batch_loses_nothing(deployment, client, kill):
    """SIGKILL a worker while it runs a batch; the merged results hold every document exactly once.

    ``tree``: every process of the worker (a lost machine): the scheduler misses the task's
    heartbeat, fails the try, and the retry on the other worker resumes the batch's part folder.
    ``main``: the worker's main PID alone (``kill -9 PID``): whatever its orphaned pool child and
    task do next, nothing may be lost or doubled, and ``down`` still stops them.
    """
    data = deployment.data / f"kill-{kill}"
    manifest = lb.make_inbox(data / "inbox", pages=48, broken_every=10, prefix=f"kill{kill}")
    # Two batches of 18 documents (~24 pages each), killed within their first few documents: a fast
    # machine read a batch of 8 documents in 2.3 s, finishing it between the test's choice of
    # victim and the kill (2026-12-03), so the batches are long and the choice is made early.
    run_id = client.trigger(
        DETECT, {"inbox": str(data / "inbox"), "out_dir": str(data / "results"), "docs_per_batch": 18}
    )
    victim, index, written = _victim_mid_batch(client, deployment, run_id)
    n_killed, recovered_in = _kill_and_recover(client, deployment, run_id, victim, index, kill == "main")
    tries = [t for t in client.task_tries(DETECT, run_id, "detect") if t["map_index"] == index]
    print(
        f"killed {victim} ({n_killed} processes) in batch {index}; run done {recovered_in:.0f} s later;",
        tries,
    )
    assert tries[-1]["state"] == "success"
    if kill == "tree":
        assert tries[0]["try_number"] == 1 and tries[0]["state"] != "success", (
            f"the batch ended before the kill landed ({written} documents done when it was chosen): "
            "the test's batches are too short for this machine",
            tries,
        )
        assert tries[-1]["try_number"] > 1
        other = "wb" if victim == "wa" else "wa"
        assert tries[-1]["worker"].startswith(f"{other}@")
    else:
        print("strays of the killed worker:", la.strays(deployment))
    check = lb.check_results(data / "results", manifest)
    print(check)
    assert check["lost"] == check["duplicated_docs"] == check["duplicated_pages"] == 0, check
    assert check["wrong_page_count"] == 0 and check["unexpected_docs"] == 0, check
    assert check["broken_quarantined"] == check["broken"], check
    inputs = {m["doc_id"] for m in manifest.values()}
    results = {
        json.loads(x)["page"]["doc_id"] for x in (data / "results" / "results.jsonl").read_text().splitlines()
    }
    quarantine = [
        json.loads(x)["doc_id"] for x in (data / "results" / "quarantine.jsonl").read_text().splitlines()
    ]
    assert inputs == results | set(quarantine) and not results & set(quarantine)
    assert len(quarantine) == len(set(quarantine))


@pytest.mark.slow
@pytest.mark.airflow
@pytest.mark.deploy
def test_on_s3_a_worker_killed_mid_run_loses_nothing(deployment, client, tmp_path):
    """The deployment's own storage: documents uploaded into the bucket's inbox, ``inkloop_detect``
    run with its defaults (``$INKLOOP_DATA/inbox`` → ``$INKLOOP_DATA/results``, the bucket, through
    the ``inkloop_storage`` connection), every process of one worker SIGKILLed mid-batch; the run
    still succeeds, every document ends once in the bucket's results or quarantine, and no storage
    URL became a local folder."""
    from inkloop import storage

    assert deployment.s3 and deployment.data_url == f"s3://{la.S3_BUCKET}"
    # what every process of the deployment gets (Celery rewrites its processes' environment block
    # for their titles, so it is checked here, and by the run below reading the bucket)
    env = deployment.env()
    assert env["INKLOOP_DATA"] == deployment.data_url
    assert env["INKLOOP_STORAGE_CONN_ID"] == la.STORAGE_CONN_ID and "AIRFLOW_CONN_INKLOOP_STORAGE" in env
    assert not [k for k in env if k in la.AWS_ENV], "AWS variables would reach the workers"
    opts = deployment.storage_options()
    inbox, results = storage.join(deployment.data_url, "inbox"), storage.join(deployment.data_url, "results")
    manifest = lb.make_inbox(tmp_path / "inbox", pages=80, broken_every=10, prefix="s3kill")
    t0 = time.monotonic()
    for name in manifest:
        storage.write_bytes(storage.join(inbox, name), (tmp_path / "inbox" / name).read_bytes(), opts)
    print(f"uploaded {len(manifest)} documents in {time.monotonic() - t0:.1f} s")
    # two batches of 30 documents (~40 pages each): long enough to be caught early
    started = time.monotonic()
    run_id = client.trigger(DETECT, {"docs_per_batch": 30})
    victim, index, done = _victim_mid_batch(client, deployment, run_id)
    n_killed, recovered_in = _kill_and_recover(client, deployment, run_id, victim, index)
    wall = time.monotonic() - started
    logged = (deployment.home / "logs" / f"dag_id={DETECT}" / f"run_id={run_id}").rglob("*.log")
    assert any(f'"event":"detected {inbox}/' in f.read_text(errors="replace") for f in logged)
    tries = [t for t in client.task_tries(DETECT, run_id, "detect") if t["map_index"] == index]
    print(
        f"killed {victim} ({n_killed} processes) in batch {index} after {done} documents; run done "
        f"{recovered_in:.0f} s after the kill, {wall:.0f} s after the trigger;",
        tries,
    )
    assert tries[0]["try_number"] == 1 and tries[0]["state"] != "success", (
        f"the batch ended before the kill landed ({done} documents done when it was chosen)",
        tries,
    )
    assert tries[-1]["state"] == "success" and tries[-1]["try_number"] > 1
    assert tries[-1]["worker"].startswith(f"{'wb' if victim == 'wa' else 'wa'}@")
    check = lb.check_results(results, manifest, opts)
    print(check)
    assert check["lost"] == check["duplicated_docs"] == check["duplicated_pages"] == 0, check
    assert check["wrong_page_count"] == 0 and check["unexpected_docs"] == 0, check
    assert check["broken_quarantined"] == check["broken"] > 0, check
    listing = storage.find(deployment.data_url, opts)  # the bucket, listed
    by_folder: dict[str, int] = {}
    for url in listing:
        rel = url.removeprefix(deployment.data_url + "/")
        top = "/".join(rel.split("/")[:2]) if rel.startswith("results/") else rel.split("/")[0]
        by_folder[top] = by_folder.get(top, 0) + 1
    print(f"the bucket after the run: {len(listing)} objects:", json.dumps(by_folder, sort_keys=True))
    assert by_folder["inbox"] == len(manifest)
    assert {"results/results.jsonl", "results/quarantine.jsonl", "results/summary.json"} <= set(by_folder)
    assert by_folder.get("results/parts", 0) > 0
    summary = json.loads(storage.read_text(storage.join(results, "summary.json"), opts))
    print("merged summary:", summary)
    assert summary["documents"] + summary["quarantined"] == len(manifest), summary
    assert _local_url_folders(ROOT) == []  # the checkout, the deployment's state and workers' cwd in it
    assert not [p for p in (Path("/tmp/s3:"), Path.cwd() / "s3:") if p.exists()]


@pytest.mark.slow
@pytest.mark.airflow
@pytest.mark.deploy
def test_training_runs_only_on_the_training_queue(deployment, client):
    """With ``wa`` (the only worker on ``training``) stopped, ``train`` stays queued although ``wb``
    is idle; once ``wa`` is back it runs there. (Training itself fails fast here: no data.)"""
    assert la._stop_pid(deployment, "worker-wa")
    try:
        run_id = client.trigger(
            "inkloop_retrain",
            {"data": str(deployment.data / "no-such-dataset"), "epochs": 1, "time_limit": 60},
        )
        time.sleep(10)  # the scheduler queues it in a few seconds; wb would take it at once
        [train] = client.task_tries("inkloop_retrain", run_id, "train")
        assert train["queue"] == "training"
        assert train["state"] in ("scheduled", "queued"), train  # wb does not take it
    finally:
        la.start_worker(deployment, "wa")
        la._wait("worker wa", lambda: la._ready_line(deployment.logs / "worker-wa.log", "wa"), 120)
    client.wait_run("inkloop_retrain", run_id, timeout=300)
    tries = client.task_tries("inkloop_retrain", run_id, "train")
    print(tries)
    assert tries and all(t["queue"] == "training" and (t["worker"] or "").startswith("wa@") for t in tries)


@pytest.mark.slow
@pytest.mark.airflow
@pytest.mark.deploy
@pytest.mark.labelstudio
def test_review_sensor_defers_and_holds_no_worker_slot(deployment, client, labelstudio, review_slot):
    data = deployment.data / "spread" / "results"
    assert (data / "results.jsonl").exists(), "needs the spread test's results"
    _labelstudio_connection(client, labelstudio)
    conf = {"results_dir": str(data), "project": "deploy defer", "budget": 1.0, "min_uncertainty": 0.0}
    run_id = client.trigger("inkloop_review_sync", {**conf, "min_reviewed": 1})
    deadline, sensor = time.monotonic() + 300, None
    while time.monotonic() < deadline:
        tis = {t["task_id"]: t for t in client.task_tries("inkloop_review_sync", run_id)}
        sensor = tis.get("wait_for_reviews")
        if tis.get("push_reviews", {}).get("state") == "failed":
            pytest.fail(f"push_reviews failed: {tis['push_reviews']}")
        if sensor and sensor["state"] == "deferred":
            break
        time.sleep(1)
    assert sensor is not None and sensor["state"] == "deferred", sensor
    # No worker process runs it: the pid of the try that deferred leaves both workers' process
    # trees once it has handed over (a few seconds; longer on a loaded machine, hence the wait).
    waited = time.monotonic()
    while (worker := client.worker_of_pid(sensor["pid"])) is not None and time.monotonic() - waited < 60:
        time.sleep(1)
    assert worker is None, (
        f"the deferred try's process {sensor['pid']} still runs under worker {worker} after 60 s"
    )
    print(f"the deferred try's process gone after {time.monotonic() - waited:.1f} s")
    rows = client.query(
        "SELECT ti.state, ti.pid, tr.classpath, tr.triggerer_id FROM task_instance ti "
        "JOIN trigger tr ON tr.id = ti.trigger_id "
        "WHERE ti.dag_id = %s AND ti.run_id = %s AND ti.task_id = %s",
        ("inkloop_review_sync", run_id, "wait_for_reviews"),
    )
    print(rows)
    assert rows and rows[0]["classpath"].endswith("LabelStudioReviewsTrigger")
    assert rows[0]["state"] == "deferred"
    running = client.query(
        "SELECT task_id FROM task_instance WHERE state = 'running' AND dag_id = %s", ("inkloop_review_sync",)
    )
    assert running == []


@pytest.mark.slow
@pytest.mark.airflow
@pytest.mark.deploy
def test_results_published_while_a_sync_waits_are_all_read_by_the_next_run(
    deployment, client, labelstudio, review_slot
):
    """Airflow folds Asset events into one run: three results folders published while the review
    sync is busy (max_active_runs=1: a sync deferred on its sensor) become one asset-triggered run,
    and its push task reads all three folders, none dropped."""
    from inkloop.detection.results import RESULTS

    src = deployment.data / "spread" / "results"
    assert (src / RESULTS).exists(), "needs the spread test's results"
    _labelstudio_connection(client, labelstudio)
    conf = {"results_dir": str(src), "project": "deploy fold", "budget": 1.0, "min_uncertainty": 0.0}
    busy = client.trigger("inkloop_review_sync", {**conf, "min_reviewed": 100000})  # waits for ever
    _wait_state(client, busy, "wait_for_reviews", "deferred")

    assets = client.api("/assets?name_pattern=inkloop_results")["assets"]
    asset_id = next(a["id"] for a in assets if a["name"] == "inkloop_results")
    folders = []
    for name in ("a", "b", "c"):
        folder = deployment.data / "fold" / name
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(src, folder)
        folders.append(str(folder))
        client.api("/assets/events", {"asset_id": asset_id, "extra": {"results_dir": str(folder)}})
    before = {r["dag_run_id"] for r in client.api("/dags/inkloop_review_sync/dagRuns?limit=100")["dag_runs"]}
    client.api(f"/dags/inkloop_review_sync/dagRuns/{busy}", {"state": "failed"}, "PATCH")  # frees the slot

    deadline, new = time.monotonic() + 300, []
    while time.monotonic() < deadline and not new:
        runs = client.api("/dags/inkloop_review_sync/dagRuns?limit=100")["dag_runs"]
        new = [r for r in runs if r["dag_run_id"] not in before]
        time.sleep(1)
    assert len(new) == 1 and new[0]["run_type"] == "asset_triggered", new
    run_id = new[0]["dag_run_id"]
    _wait_state(client, run_id, "push_reviews", "success")
    time.sleep(3)  # no second run appears: every event went into this one
    runs = client.api("/dags/inkloop_review_sync/dagRuns?limit=100")["dag_runs"]
    assert [r["dag_run_id"] for r in runs if r["dag_run_id"] not in before] == [run_id]
    # Airflow's window for the run ends at the first event that queued it (b and c fall outside);
    # the push task reads the later ones through its inlet (inkloop_provider.assets)
    events = client.api(f"/dags/inkloop_review_sync/dagRuns/{_quote(run_id)}/upstreamAssetEvents")
    window = [e["extra"]["results_dir"] for e in events["asset_events"]]
    print(f"the run's event window: {window}")
    assert folders[0] in window
    pushed = client.api(
        f"/dags/inkloop_review_sync/dagRuns/{_quote(run_id)}/taskInstances/push_reviews/xcomEntries/return_value"
    )["value"]
    pushed = json.loads(pushed) if isinstance(pushed, str) else pushed
    assert set(folders) | set(window) <= set(pushed["results_dirs"]), pushed
    assert len(pushed["results_dirs"]) == len(set(pushed["results_dirs"]))  # each folder once


@pytest.fixture
def review_slot(client) -> Iterator[None]:
    """Frees the review sync's one run slot (``max_active_runs=1``) after the test, passed or
    failed: a sync left waiting on its sensor would hold back every later test's review run."""
    yield
    runs = client.api("/dags/inkloop_review_sync/dagRuns?limit=100&state=queued&state=running")["dag_runs"]
    for r in runs:
        with contextlib.suppress(la.DeployError):  # ended meanwhile
            client.api(
                f"/dags/inkloop_review_sync/dagRuns/{_quote(r['dag_run_id'])}", {"state": "failed"}, "PATCH"
            )


def _quote(run_id: str) -> str:
    import urllib.parse

    return urllib.parse.quote(run_id, safe="")


def _labelstudio_connection(client, labelstudio) -> None:
    """The deployment's ``labelstudio_default`` connection, pointing at this session's server."""
    body = {
        "connection_id": "labelstudio_default",
        "conn_type": "labelstudio",
        "host": labelstudio.url,
        "password": labelstudio.token,
    }
    try:
        client.api("/connections/labelstudio_default", body, "PATCH")
    except la.DeployError:  # not there yet
        client.api("/connections", body)


def _wait_state(client, run_id: str, task_id: str, state: str, timeout: float = 300) -> None:
    deadline, ti = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        tis = {t["task_id"]: t for t in client.task_tries("inkloop_review_sync", run_id)}
        ti = tis.get(task_id)
        failed = [t for t, v in tis.items() if v["state"] in ("failed", "upstream_failed")]
        if failed:
            pytest.fail(f"{failed} failed in {run_id}: {tis}")
        if ti and ti["state"] == state:
            return
        time.sleep(1)
    pytest.fail(f"{task_id} of {run_id} not {state} after {timeout:.0f} s: {ti}")

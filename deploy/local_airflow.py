"""A distributed Airflow on one machine: the inkloop DAGs on the CeleryExecutor, for real.

Why this exists: ``airflow dags test`` runs a DAG in one process on SQLite, which says nothing
about what users meet when they spread detection over workers (mapped tasks routed by Celery,
queues, a worker lost mid-batch, a sensor deferred to the triggerer). This starts the same
processes a production deployment runs, bound to 127.0.0.1, with every file under one state
folder (default ``.cache/deploy`` in the checkout):

- PostgreSQL (Debian's, ``/usr/lib/postgresql/<v>/bin``): metadata database and Celery result backend
- Redis (Debian's ``redis-server``): the Celery broker
- Airflow 3.3: API server, scheduler, DAG processor, triggerer
- two Celery workers: ``wa`` on queues ``default,training`` and ``wb`` on ``default,gpu``
- with ``INKLOOP_DEPLOY_STORAGE=s3`` (or ``up --storage s3``): an S3 endpoint (moto's server,
  :mod:`inkloop.devservers.s3`) on 127.0.0.1, the bucket ``s3://inkloop-data`` as ``INKLOOP_DATA``
  and the Airflow connection ``inkloop_storage`` for it (``AIRFLOW_CONN_INKLOOP_STORAGE``, named by
  ``INKLOOP_STORAGE_CONN_ID``); no AWS variables reach the workers and there is no local data
  folder: every task reaches the bucket through the connection, as workers on separate machines
  would. moto keeps the bucket in memory: ``down`` forgets its contents.

Each process runs in its own session; its PID is kept in ``<state>/pids/<name>.pid`` and
``down`` stops exactly those PIDs (their process groups), after checking that the PID still
belongs to this deployment (its environment carries ``INKLOOP_DEPLOY_PROCESS``, its working
directory is in the state folder). What a killed worker leaves behind (its pool children) carries
the same mark and is stopped too. Nothing else on the machine is touched.

Usage (with the checkout's venv; ``make deploy-up`` / ``deploy-down`` / ``deploy-status``)::

    python deploy/local_airflow.py up        # start (idempotent), print where things are
    python deploy/local_airflow.py status    # which processes run, health, workers
    python deploy/local_airflow.py down      # stop every process by its PID
    python deploy/local_airflow.py env       # shell exports to use the `airflow` CLI against it

Ports (all overridable): PostgreSQL 15432 (``INKLOOP_DEPLOY_PG_PORT``), Redis 16379
(``INKLOOP_DEPLOY_REDIS_PORT``), API 18080 (``INKLOOP_DEPLOY_API_PORT``); the state folder
``INKLOOP_DEPLOY_DIR``; worker concurrency ``INKLOOP_DEPLOY_CONCURRENCY`` (default 2); S3 endpoint
19000 (``INKLOOP_DEPLOY_S3_PORT``). The storage a deployment was started with is kept in
``<state>/storage``, so ``status``, ``env`` and ``down`` follow it without the variable.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from inkloop.net import http_request, port_is_free
from inkloop.processes import pid_alive
from inkloop.retry import wait_until

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
AIRFLOW_PROCESSES = ("api-server", "scheduler", "dag-processor", "triggerer")
#: Celery workers: name → queues. ``training`` is served by ``wa`` alone, ``gpu`` by ``wb`` alone
#: (on this CPU machine the gpu queue's TensorRT export is skipped with a reason).
WORKERS: dict[str, tuple[str, ...]] = {"wa": ("default", "training"), "wb": ("default", "gpu")}
READY_TIMEOUT = 180.0
#: Where the deployment's data lives: a local folder shared by the workers, or a bucket on a local
#: S3 endpoint reached through an Airflow connection.
STORAGES = ("local", "s3")
#: The bucket of an ``s3`` deployment (its ``INKLOOP_DATA`` is ``s3://<bucket>``).
S3_BUCKET = "inkloop-data"
#: The Airflow connection of an ``s3`` deployment (type ``aws``: keys in login/password, the
#: endpoint in extra), given to every data task through ``INKLOOP_STORAGE_CONN_ID``.
STORAGE_CONN_ID = "inkloop_storage"
#: Variables an ``s3`` deployment keeps from its processes: the connection must be the only way in.
AWS_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
)
#: Set in the environment of each process this module starts (never in ``env.sh``, so a user's
#: shell is never taken for one): how ``down`` recognises what it may stop.
MARKER = "INKLOOP_DEPLOY_PROCESS"
STOP_TIMEOUT = 30.0
#: Shorter grace than STOP_TIMEOUT before SIGKILL. Airflow's triggerer stops its loop on SIGTERM
#: at once, but its trigger runner subprocess ignores SIGTERM and is escalated by the triggerer
#: only 10 s later (a second signal still takes 5 s). Deferred tasks lose nothing: their triggers
#: stay in the database for the next triggerer.
STOP_GRACE: dict[str, float] = {"triggerer": 2.0}


class DeployError(RuntimeError):
    """The deployment could not be started, or is not what it should be."""


@dataclass
class Deployment:
    """Where one local deployment lives and how its processes are reached."""

    state: Path = field(
        default_factory=lambda: Path(os.environ.get("INKLOOP_DEPLOY_DIR") or ROOT / ".cache" / "deploy")
    )
    pg_port: int = field(default_factory=lambda: int(os.environ.get("INKLOOP_DEPLOY_PG_PORT", "15432")))
    redis_port: int = field(default_factory=lambda: int(os.environ.get("INKLOOP_DEPLOY_REDIS_PORT", "16379")))
    api_port: int = field(default_factory=lambda: int(os.environ.get("INKLOOP_DEPLOY_API_PORT", "18080")))
    concurrency: int = field(default_factory=lambda: int(os.environ.get("INKLOOP_DEPLOY_CONCURRENCY", "2")))
    #: Seconds without a task heartbeat before the scheduler declares the task lost and retries it
    #: (Airflow's default is 300: a killed worker's task would hang five minutes).
    heartbeat_timeout: int = field(
        default_factory=lambda: int(os.environ.get("INKLOOP_DEPLOY_HEARTBEAT_TIMEOUT", "30"))
    )
    #: Seconds a task may stay queued (sent to Celery, not yet started) before the scheduler
    #: revokes and requeues it. A worker killed in the instant between taking a task and
    #: starting it strands that task in ``queued``, and only this timeout recovers it. Airflow's
    #: default, 600, is kept: a shorter one would requeue batches that wait their turn behind busy
    #: workers (and it is also the lifetime of a queued task's token).
    queued_timeout: int = field(
        default_factory=lambda: int(os.environ.get("INKLOOP_DEPLOY_QUEUED_TIMEOUT", "600"))
    )
    python: Path = field(default_factory=lambda: Path(sys.executable))
    #: ``local`` or ``s3`` (see :data:`STORAGES`); None: ``INKLOOP_DEPLOY_STORAGE``, else what this
    #: state folder was last started with, else ``local``.
    storage: str | None = None
    s3_port: int = field(default_factory=lambda: int(os.environ.get("INKLOOP_DEPLOY_S3_PORT", "19000")))

    def __post_init__(self) -> None:
        self.state = Path(self.state).resolve()
        if self.storage is None:
            recorded = self.state / "storage"
            self.storage = os.environ.get("INKLOOP_DEPLOY_STORAGE") or (
                recorded.read_text().strip() if recorded.exists() else "local"
            )
        if self.storage not in STORAGES:
            raise DeployError(f"storage {self.storage!r}: one of {', '.join(STORAGES)}")

    # -- places ------------------------------------------------------------------------------
    @property
    def pgroot(self) -> Path:
        """PostgreSQL's folder (data, socket, log), owned by ``postgres``; a link when the checkout
        is somewhere that user cannot enter (see :func:`_place_pgroot`)."""
        return (self.state / "postgres").resolve()

    @property
    def pgdata(self) -> Path:
        return self.pgroot / "data"

    @property
    def home(self) -> Path:
        return self.state / "airflow"

    @property
    def data(self) -> Path:
        """The local data folder of a ``local`` deployment: inbox, results, registry (shared by
        both workers); an ``s3`` deployment has none (:attr:`data_url`)."""
        return self.state / "data"

    @property
    def s3(self) -> bool:
        return self.storage == "s3"

    @property
    def data_url(self) -> str:
        """``INKLOOP_DATA`` of the deployment: the bucket's URL, or the local data folder."""
        return f"s3://{S3_BUCKET}" if self.s3 else str(self.data)

    @property
    def s3_url(self) -> str:
        return f"http://{HOST}:{self.s3_port}"

    def storage_options(self) -> dict[str, Any] | None:
        """fsspec options for the deployment's bucket (what its connection holds); None if local."""
        if not self.s3:
            return None
        from inkloop.devservers.s3.server import ACCESS_KEY, SECRET_KEY

        return {"endpoint_url": self.s3_url, "key": ACCESS_KEY, "secret": SECRET_KEY}

    def storage_connection(self) -> dict[str, Any]:
        """The ``inkloop_storage`` connection (Airflow's JSON form) for the bucket's endpoint."""
        opts = self.storage_options() or {}
        return {
            "conn_type": "aws",
            "login": opts.get("key"),
            "password": opts.get("secret"),
            "extra": {"endpoint_url": opts.get("endpoint_url")},
        }

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def pids(self) -> Path:
        return self.state / "pids"

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.api_port}"

    @property
    def db_url(self) -> str:
        return f"postgresql://airflow:airflow@{HOST}:{self.pg_port}/airflow"

    def airflow_bin(self) -> str:
        return str(self.python.with_name("airflow"))

    # -- environment -------------------------------------------------------------------------
    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of every Airflow process (and of a user's ``airflow`` CLI)."""
        env = dict(os.environ if base is None else base)
        with contextlib.suppress(ImportError):  # the usage-data switches, off (inkloop.privacy)
            from inkloop import privacy

            env = privacy.child_env(env)
        secret_file = self.state / "jwt-secret"
        if not secret_file.exists():
            self.state.mkdir(parents=True, exist_ok=True)
            secret_file.write_text(secrets.token_hex(32))
            secret_file.chmod(0o600)
        db = f"postgresql+psycopg2://airflow:airflow@{HOST}:{self.pg_port}/airflow"
        env.update(
            INKLOOP_DEPLOY_DIR=str(self.state),
            AIRFLOW_HOME=str(self.home),
            AIRFLOW__CORE__EXECUTOR="CeleryExecutor",
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
            AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
            AIRFLOW__CORE__UNIT_TEST_MODE="False",
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{self.api_url}/execution/",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="True",
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=db,
            AIRFLOW__CELERY__BROKER_URL=f"redis://{HOST}:{self.redis_port}/0",
            AIRFLOW__CELERY__RESULT_BACKEND=f"db+postgresql+psycopg2://airflow:airflow@{HOST}:{self.pg_port}/airflow",
            AIRFLOW__CELERY__WORKER_CONCURRENCY=str(self.concurrency),
            # result_extended: the result backend row names the worker that ran each task
            # (celery_taskmeta.worker). worker_disable_prefetch: a worker takes a task from Redis
            # only when a pool process is free; otherwise a worker that dies holds tasks it never
            # started, unacknowledged, until the broker's visibility timeout (Airflow sets a day)
            # or Airflow's task_queued_timeout (10 min) gives them to another.
            AIRFLOW__CELERY__EXTRA_CELERY_CONFIG=json.dumps(
                {"result_extended": True, "worker_disable_prefetch": True}
            ),
            AIRFLOW__API__HOST=HOST,
            AIRFLOW__API__PORT=str(self.api_port),
            AIRFLOW__API__WORKERS="1",
            AIRFLOW__API__BASE_URL=self.api_url,
            AIRFLOW__API_AUTH__JWT_SECRET=(secret_file.read_text().strip()),
            AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT=str(self.heartbeat_timeout),
            AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL="5",
            AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT=str(self.queued_timeout),
            # checked every 120 s by default: at most a quarter of the timeout late instead
            AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL=str(
                min(120, max(5, self.queued_timeout // 4))
            ),
            AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="30",
            AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
            AIRFLOW__LOGGING__BASE_LOG_FOLDER=str(self.home / "logs"),
            INKLOOP_DATA=self.data_url,
            INKLOOP_DETECT_SCHEDULE=env.get("INKLOOP_DETECT_SCHEDULE", "none"),
            INKLOOP_TRAINING_QUEUE="training",
            INKLOOP_GPU_QUEUE="gpu",
            INKLOOP_RETRY_DELAY=env.get("INKLOOP_RETRY_DELAY", "5"),
            PYTHONUNBUFFERED="1",
            PYTHONPATH=os.pathsep.join([str(ROOT / "plugins"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            PATH=os.pathsep.join([str(self.python.parent), env.get("PATH", "")]),
        )
        if self.s3:
            for name in AWS_ENV:
                env.pop(name, None)
            env.update(
                INKLOOP_STORAGE_CONN_ID=STORAGE_CONN_ID,
                AIRFLOW_CONN_INKLOOP_STORAGE=json.dumps(self.storage_connection()),
            )
        return env

    # -- processes ---------------------------------------------------------------------------
    def pid_of(self, name: str) -> int | None:
        """The PID of ``name`` if it runs and belongs to this deployment.

        The PID file also holds the process's start time: PIDs wrap around (32,768 on some
        machines, and threads take numbers from the same counter), so a dead process's number
        may name another process, or a thread of one, that belongs to this deployment too.
        """
        try:
            fields = (self.pids / f"{name}.pid").read_text().split()
            pid = int(fields[0])
        except (OSError, ValueError, IndexError):
            return None
        if len(fields) > 1 and _start_time(pid) != fields[1]:
            return None  # that process is gone; the number now names another
        return pid if _belongs_to(pid, self.state) else None

    def worker_pids(self, name: str) -> list[int]:
        """The worker's main process and its children (Celery's pool, task supervisors, tasks)."""
        pid = self.pid_of(name)
        return [] if pid is None else [pid, *_descendants(pid)]

    def processes(self) -> dict[str, int | None]:
        names = ["postgres", "redis", *(["s3"] if self.s3 else []), *AIRFLOW_PROCESSES]
        names += [f"worker-{w}" for w in WORKERS]
        return {n: self.pid_of(n) for n in names}


# -- process helpers (psutil: no /proc parsing of our own) -----------------------------------------
def _environ(pid: int) -> dict[str, str]:
    try:
        return dict(psutil.Process(pid).environ())
    except psutil.Error:  # gone, a zombie, or not ours to read
        return {}


def _start_time(pid: int) -> str | None:
    """When ``pid`` started, in clock ticks since boot (``/proc/PID/stat`` field 22, as pid files
    written before psutil read it): with the PID, it names one process."""
    try:
        started = psutil.Process(pid).create_time()  # boot time + ticks / CLK_TCK
    except psutil.Error:
        return None
    return str(round((started - psutil.boot_time()) * os.sysconf("SC_CLK_TCK")))


def _write_pid(dep: Deployment, name: str, pid: int) -> None:
    (dep.pids / f"{name}.pid").write_text(f"{pid} {_start_time(pid)}\n")


def _belongs_to(pid: int, state: Path) -> bool:
    """Alive and started by this deployment: never signal a PID that was reused by someone else.

    Every process is started with ``INKLOOP_DEPLOY_PROCESS`` in its environment and its working
    directory in the state folder; Redis rewrites its environment block for its process title,
    so the working directory decides for it.
    """
    if not pid_alive(pid):
        return False
    if _environ(pid).get(MARKER) == str(state):
        return True
    try:
        cwd = Path(psutil.Process(pid).cwd())
    except psutil.Error:
        return False
    return cwd == state or state in cwd.parents


def _descendants(pid: int) -> list[int]:
    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def rss_bytes(pid: int) -> int:
    """Resident memory of one process (0 when gone)."""
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return 0


def _wait(what: str, check: Any, timeout: float, log: Path | None = None) -> None:
    def ready() -> bool:
        with contextlib.suppress(Exception):
            return bool(check())
        return False

    if wait_until(ready, timeout):
        return
    tail = ""
    if log is not None and log.exists():
        tail = "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:])
    raise DeployError(f"{what} not ready after {timeout:.0f} s{tail}")


def _spawn(dep: Deployment, name: str, argv: list[str], env: Mapping[str, str]) -> int:
    """Start ``argv`` in its own session, output to ``logs/<name>.log``, PID to ``pids/<name>.pid``."""
    existing = dep.pid_of(name)
    if existing is not None:
        return existing
    dep.logs.mkdir(parents=True, exist_ok=True)
    dep.pids.mkdir(parents=True, exist_ok=True)
    log_file = dep.logs / f"{name}.log"
    if log_file.exists():  # the previous run's log stays beside it, one generation
        os.replace(log_file, log_file.with_suffix(".log.1"))
    with log_file.open("wb") as log:
        proc = subprocess.Popen(
            argv,
            env={**env, MARKER: str(dep.state)},
            cwd=dep.state,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _write_pid(dep, name, proc.pid)
    return proc.pid


def _stop_pid(dep: Deployment, name: str, timeout: float = STOP_TIMEOUT) -> bool:
    """SIGTERM the process group of ``name``'s PID, SIGKILL what is left after ``timeout``
    (sooner for a process named in STOP_GRACE)."""
    return _stop_many(dep, [name], timeout)[name]


def _stop_many(dep: Deployment, names: list[str], timeout: float = STOP_TIMEOUT) -> dict[str, bool]:
    """:func:`_stop_pid` for several processes at once (one wait for all, not one each)."""
    stopped: dict[str, bool] = {}
    group: list[int] = []
    grace: dict[int, float] = {}  # PID → when it gets SIGKILL, where sooner than ``timeout``
    t0 = time.monotonic()
    for name in names:
        pid = dep.pid_of(name)
        stopped[name] = pid is not None
        if pid is None:
            (dep.pids / f"{name}.pid").unlink(missing_ok=True)
            continue
        tree = [pid, *_descendants(pid)]
        group += tree
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        if name in STOP_GRACE:
            grace.update(dict.fromkeys(tree, t0 + STOP_GRACE[name]))

    def stopped_all() -> bool:
        if not any(_belongs_to(p, dep.state) for p in group):
            return True
        for p, due in list(grace.items()):  # SIGKILL, sooner than the timeout, what STOP_GRACE names
            if time.monotonic() >= due:
                del grace[p]
                if _belongs_to(p, dep.state):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(p, signal.SIGKILL)
        return False

    wait_until(stopped_all, t0 + timeout - time.monotonic(), interval=0.2)
    for p in group:
        if _belongs_to(p, dep.state):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, signal.SIGKILL)
    for name in names:
        (dep.pids / f"{name}.pid").unlink(missing_ok=True)
    return stopped


def strays(dep: Deployment) -> list[int]:
    """Processes of this deployment that no PID file names any more: what a worker whose main
    process was killed leaves behind (Celery's pool children, a task still running)."""
    known: set[int] = set()
    for f in dep.pids.glob("*.pid") if dep.pids.exists() else []:
        pid = dep.pid_of(f.stem)
        if pid is not None:
            known |= {pid, *_descendants(pid)}
    return [p for p in psutil.pids() if p not in known and _environ(p).get(MARKER) == str(dep.state)]


def _stop_strays(dep: Deployment, timeout: float = 10.0) -> bool:
    found = strays(dep)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in found:
            if _belongs_to(p, dep.state):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(p, sig)
        wait_until(lambda: not any(_belongs_to(p, dep.state) for p in found), timeout, interval=0.2)
    return bool(found)


# -- PostgreSQL and Redis -----------------------------------------------------------------------
def _pg_bin() -> Path:
    override = os.environ.get("INKLOOP_DEPLOY_PG_BIN")
    if override:
        return Path(override)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise DeployError("no PostgreSQL (initdb) under /usr/lib/postgresql; run .ci/install-redis.sh")
    return Path(found[-1]).parent


def _as_postgres(argv: list[str]) -> list[str]:
    """initdb and the server refuse to run as root: run them as the ``postgres`` user then."""
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


def _postgres_can_enter(path: Path) -> bool:
    if os.geteuid() != 0:
        return True
    p = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(path)], capture_output=True)
    return p.returncode == 0


def _place_pgroot(dep: Deployment) -> None:
    """Where the ``postgres`` user cannot enter the checkout (a clone under a 0700 ``/root``),
    initdb fails; keep PostgreSQL's folder in ``/var/tmp`` then, linked from the state folder."""
    link = dep.state / "postgres"
    if link.exists() or link.is_symlink() or _postgres_can_enter(dep.state):
        return
    digest = hashlib.sha256(str(dep.state).encode()).hexdigest()[:10]
    target = Path("/var/tmp") / f"inkloop-deploy-{digest}" / "postgres"
    target.mkdir(parents=True, exist_ok=True)
    target.parent.chmod(0o755)
    link.symlink_to(target)


def _start_postgres(dep: Deployment, env: Mapping[str, str]) -> None:
    pg = _pg_bin()
    _place_pgroot(dep)
    run_dir = dep.pgroot / "run"
    if not (dep.pgdata / "PG_VERSION").exists():
        dep.pgdata.mkdir(parents=True, exist_ok=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(dep.pgroot, "postgres", "postgres")
            for p in (dep.pgdata, run_dir):
                shutil.chown(p, "postgres", "postgres")
        dep.pgdata.chmod(0o700)
        subprocess.run(
            _as_postgres(
                [str(pg / "initdb"), "-D", str(dep.pgdata), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
            ),
            check=True,
            capture_output=True,
            env=dict(env),
        )
    if dep.pid_of("postgres") is None:
        opts = f"-c listen_addresses={HOST} -p {dep.pg_port} -c unix_socket_directories={run_dir}"
        p = subprocess.run(
            _as_postgres(
                [
                    str(pg / "pg_ctl"),
                    "-D",
                    str(dep.pgdata),
                    "-l",
                    str(dep.pgroot / "postgres.log"),
                    "-o",
                    opts,
                    "-w",
                    "start",
                ]
            ),
            capture_output=True,
            text=True,
            env={**env, MARKER: str(dep.state)},
        )
        if p.returncode != 0:
            raise DeployError(f"PostgreSQL did not start: {p.stdout}{p.stderr}")
        pid = int((dep.pgdata / "postmaster.pid").read_text().split()[0])
        dep.pids.mkdir(parents=True, exist_ok=True)
        _write_pid(dep, "postgres", pid)
    psql = [str(pg / "psql"), "-h", HOST, "-p", str(dep.pg_port), "-U", "postgres", "-tAc"]
    have = subprocess.run(
        [*psql, "SELECT 1 FROM pg_roles WHERE rolname='airflow'"], capture_output=True, text=True
    )
    if have.stdout.strip() != "1":
        subprocess.run(
            [*psql, "CREATE ROLE airflow LOGIN PASSWORD 'airflow'"], check=True, capture_output=True
        )
    have = subprocess.run(
        [*psql, "SELECT 1 FROM pg_database WHERE datname='airflow'"], capture_output=True, text=True
    )
    if have.stdout.strip() != "1":
        subprocess.run([*psql, "CREATE DATABASE airflow OWNER airflow"], check=True, capture_output=True)


def _stop_postgres(dep: Deployment) -> bool:
    if dep.pid_of("postgres") is None:
        (dep.pids / "postgres.pid").unlink(missing_ok=True)
        return False
    subprocess.run(
        _as_postgres([str(_pg_bin() / "pg_ctl"), "-D", str(dep.pgdata), "-m", "fast", "-w", "stop"]),
        capture_output=True,
    )
    _stop_pid(dep, "postgres")  # pg_ctl stopped it by its PID; this only tidies up
    return True


def _redis_ping(port: int) -> bool:
    with socket.create_connection((HOST, port), timeout=2) as s:
        s.sendall(b"PING\r\n")
        return s.recv(64).startswith(b"+PONG")


def _start_redis(dep: Deployment, env: Mapping[str, str]) -> None:
    exe = shutil.which("redis-server")
    if exe is None:
        raise DeployError("no redis-server; run .ci/install-redis.sh (make setup-dev does)")
    rdir = dep.state / "redis"
    rdir.mkdir(parents=True, exist_ok=True)
    argv = [exe, "--bind", HOST, "--port", str(dep.redis_port), "--save", "", "--appendonly", "no"]
    _spawn(dep, "redis", [*argv, "--dir", str(rdir), "--daemonize", "no"], env)
    _wait("redis", lambda: _redis_ping(dep.redis_port), 20, dep.logs / "redis.log")


def _start_s3(dep: Deployment) -> None:
    """moto's S3 server (its PID kept like every other process's, stopped by ``down``) and the
    bucket (moto keeps buckets in memory: a restarted server has none)."""
    from inkloop import storage
    from inkloop.devservers import s3 as s3server

    if dep.pid_of("s3") is None:
        handle = s3server.start(port=dep.s3_port, log_dir=dep.logs, env={MARKER: str(dep.state)})
        _write_pid(dep, "s3", handle.pid)
    fs, _ = storage.url_to_fs(dep.data_url, dep.storage_options())
    if not fs.exists(S3_BUCKET):
        fs.mkdir(S3_BUCKET)


# -- Airflow ------------------------------------------------------------------------------------
class APIStatusError(DeployError):
    """The REST API answered an HTTP error; ``status`` and ``body`` are its answer."""

    def __init__(self, message: str, status: int, body: bytes) -> None:
        super().__init__(message)
        self.status, self.body = status, body


def _http_json(url: str, token: str | None = None, body: Any = None, method: str | None = None) -> Any:
    """JSON in and out through inkloop's one HTTP client; an error status raises
    :class:`APIStatusError`, nothing answering ``OSError``, an answer not JSON ``ValueError``."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    answer = http_request(url, method=method, data=data, headers=headers, timeout=30)
    if answer.status >= 400:
        raise APIStatusError(f"{url}: HTTP {answer.status}", answer.status, answer.body)
    return answer.json()


def _ready_line(log: Path, name: str) -> bool:
    """Celery logs ``<name>@host ready.`` once the worker consumes from its queues (the log is
    rewritten at each start, so an earlier run's line does not count)."""
    if not log.exists():
        return False
    text = log.read_text(errors="replace")
    return any(f"{name}@" in line and " ready." in line for line in text.splitlines())


def start_worker(dep: Deployment, name: str, env: Mapping[str, str] | None = None) -> int:
    env = env or dep.env()
    queues = ",".join(WORKERS[name])
    argv = [dep.airflow_bin(), "celery", "worker", "-H", f"{name}@%h", "-q", queues]
    argv += ["-c", str(dep.concurrency), "--skip-serve-logs"]  # log serving binds one fixed port
    pid = _spawn(dep, f"worker-{name}", argv, env)
    return pid


def health(dep: Deployment) -> dict[str, Any]:
    return _http_json(f"{dep.api_url}/api/v2/monitor/health")


def _healthy(dep: Deployment) -> bool:
    h = health(dep)
    return all(
        (h.get(k) or {}).get("status") == "healthy"
        for k in ("metadatabase", "scheduler", "triggerer", "dag_processor")
    )


def token(dep: Deployment) -> str:
    """A JWT for the REST API (simple auth manager, every user an admin: local only)."""
    return _http_json(f"{dep.api_url}/auth/token")["access_token"]


def _serialized_dags(dep: Deployment) -> set[str]:
    import psycopg2

    with contextlib.closing(psycopg2.connect(dep.db_url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT dag_id FROM dag WHERE is_stale IS NOT TRUE")
        return {r[0] for r in cur.fetchall()}


class Client:
    """The few REST calls and database reads that tests and the benchmark make on a deployment.

    Runs are triggered and watched through the public REST API (as a user would); which worker
    ran a task comes from the Celery result backend (``celery_taskmeta.worker``, recorded with
    ``result_extended``), joined to the task instance by its Celery task id
    (``external_executor_id``), for the current try and every earlier one
    (``task_instance_history``). ``ti.hostname`` cannot tell two workers on one machine apart.
    """

    def __init__(self, dep: Deployment) -> None:
        self.dep = dep
        self._token = token(dep)

    def api(self, path: str, body: Any = None, method: str | None = None) -> Any:
        try:
            return _http_json(f"{self.dep.api_url}/api/v2{path}", self._token, body, method)
        except APIStatusError as exc:
            if exc.status != 401:
                raise DeployError(f"{method or 'GET'} {path}: {exc.status} {exc.body[:500]!r}") from exc
            self._token = token(self.dep)  # expired
            return _http_json(f"{self.dep.api_url}/api/v2{path}", self._token, body, method)

    def unpause(self, dag_id: str) -> None:
        self.api(f"/dags/{dag_id}", {"is_paused": False}, "PATCH")

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        self.unpause(dag_id)
        run = self.api(f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": dict(conf or {})})
        return str(run["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.api(f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}")["state"])

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 600, poll: float = 2.0) -> str:
        """The run's final state (success or failed), asked every ``poll`` s for ``timeout`` s."""
        state = ""

        def finished() -> bool:
            nonlocal state
            state = self.run_state(dag_id, run_id)
            return state in ("success", "failed")

        if wait_until(finished, timeout, interval=poll):
            return state
        raise DeployError(f"{dag_id} {run_id} still running after {timeout:.0f} s")

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        import psycopg2
        import psycopg2.extras

        with (
            contextlib.closing(psycopg2.connect(self.dep.db_url)) as conn,
            conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur,
        ):
            cur.execute(sql, args)
            rows = [dict(r) for r in cur.fetchall()]
            conn.commit()
            return rows

    def task_tries(self, dag_id: str, run_id: str, task_id: str | None = None) -> list[dict[str, Any]]:
        """Every try of every task instance of a run, each with the Celery worker that ran it."""
        cols = (
            "t.task_id, t.map_index, t.try_number, t.state, t.queue, t.hostname, t.pid, "
            "t.start_date, t.end_date, t.external_executor_id, m.worker, m.status AS celery_status"
        )
        sql = (
            f"SELECT {cols} FROM task_instance t "
            "LEFT JOIN celery_taskmeta m ON m.task_id = t.external_executor_id "
            "WHERE t.dag_id = %s AND t.run_id = %s UNION ALL "
            f"SELECT {cols} FROM task_instance_history t "
            "LEFT JOIN celery_taskmeta m ON m.task_id = t.external_executor_id "
            "WHERE t.dag_id = %s AND t.run_id = %s ORDER BY 1, 2, 3"
        )
        rows = self.query(sql, (dag_id, run_id, dag_id, run_id))
        seen: set[tuple[str, int, int]] = set()
        out = []
        for r in rows:  # the current try can be in both tables
            key = (r["task_id"], r["map_index"], r["try_number"])
            if key in seen or (task_id and r["task_id"] != task_id):
                continue
            seen.add(key)
            out.append(r)
        return out

    def worker_of_pid(self, pid: int | None) -> str | None:
        """Which worker's process tree holds ``pid`` (a running task's process)."""
        if pid is None:
            return None
        for w in WORKERS:
            if pid in self.dep.worker_pids(f"worker-{w}"):
                return w
        return None


def up(dep: Deployment | None = None, *, timeout: float = READY_TIMEOUT) -> Deployment:
    """Start everything not yet running; return once all of it is healthy. Idempotent."""
    dep = dep or Deployment()
    t0 = time.monotonic()
    ports = {
        "postgres": (dep.pg_port, "PG"),
        "redis": (dep.redis_port, "REDIS"),
        "api-server": (dep.api_port, "API"),
    }
    if dep.s3:
        ports["s3"] = (dep.s3_port, "S3")
    for name, (port, var) in ports.items():
        if dep.pid_of(name) is None and not port_is_free(port):
            raise DeployError(
                f"port {port} on {HOST} is taken by something else ({name} would use it); free it or set "
                f"INKLOOP_DEPLOY_{var}_PORT"
            )
    recorded = dep.state / "storage"
    if recorded.exists() and recorded.read_text().strip() != dep.storage:
        running = [n for n in (*AIRFLOW_PROCESSES, *(f"worker-{w}" for w in WORKERS)) if dep.pid_of(n)]
        if running:
            raise DeployError(
                f"the deployment in {dep.state} runs with storage {recorded.read_text().strip()!r} "
                f"({', '.join(running)}); run down first to start it with {dep.storage!r}"
            )
    dep.state.mkdir(parents=True, exist_ok=True)
    recorded.write_text(f"{dep.storage}\n")
    for d in (dep.home, dep.logs, dep.pids, *([] if dep.s3 else [dep.data])):
        d.mkdir(parents=True, exist_ok=True)
    env = dep.env()
    _start_postgres(dep, env)
    _start_redis(dep, env)
    if dep.s3:
        _start_s3(dep)
    migrated = dep.home / ".migrated"
    if not migrated.exists():
        p = subprocess.run(
            [dep.airflow_bin(), "db", "migrate"], env=env, cwd=dep.state, capture_output=True, text=True
        )
        if p.returncode != 0:
            raise DeployError(f"airflow db migrate failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
        migrated.touch()
    af = dep.airflow_bin()
    _spawn(dep, "api-server", [af, "api-server", "-H", HOST, "-p", str(dep.api_port), "-w", "1"], env)
    for name in ("scheduler", "dag-processor", "triggerer"):
        _spawn(dep, name, [af, name], env)
    for w in WORKERS:
        start_worker(dep, w, env)
    remaining = lambda: max(10.0, timeout - (time.monotonic() - t0))  # noqa: E731
    _wait(
        "the API server and the scheduler, DAG processor, triggerer",
        lambda: _healthy(dep),
        remaining(),
        dep.logs / "scheduler.log",
    )
    for w in WORKERS:
        _wait(
            f"worker {w}",
            lambda w=w: _ready_line(dep.logs / f"worker-{w}.log", w),
            remaining(),
            dep.logs / f"worker-{w}.log",
        )
    wanted = {"inkloop_detect", "inkloop_retrain", "inkloop_review_sync", "inkloop_reexport"}
    _wait(
        "the DAGs (parsed by the DAG processor)",
        lambda: wanted <= _serialized_dags(dep),
        remaining(),
        dep.logs / "dag-processor.log",
    )
    (dep.state / "env.sh").write_text(env_exports(dep))
    return dep


def down(dep: Deployment | None = None) -> dict[str, bool]:
    """Stop every process of the deployment by its PID (workers first, databases last)."""
    dep = dep or Deployment()
    airflow = [*(f"worker-{w}" for w in WORKERS), "triggerer", "scheduler", "dag-processor"]
    stopped = _stop_many(dep, airflow)
    stopped["strays"] = _stop_strays(dep)
    # after the processes that talk to them (the S3 server of an s3 deployment, whichever the mode)
    stopped.update(_stop_many(dep, ["api-server", "redis", "s3"]))
    stopped["postgres"] = _stop_postgres(dep)
    return stopped


def status(dep: Deployment | None = None) -> dict[str, Any]:
    dep = dep or Deployment()
    out: dict[str, Any] = {"state": str(dep.state), "api": dep.api_url, "processes": dep.processes()}
    out["data"] = dep.data_url
    if dep.s3:
        out["s3_endpoint"] = dep.s3_url
    try:
        out["health"] = {k: (v or {}).get("status") for k, v in health(dep).items()}
    except (OSError, ValueError, APIStatusError) as exc:
        out["health"] = f"API not answering: {exc}"
    out["workers"] = {
        w: {
            "queues": list(q),
            "ready": _ready_line(dep.logs / f"worker-{w}.log", w),
            "pids": dep.worker_pids(f"worker-{w}"),
        }
        for w, q in WORKERS.items()
    }
    return out


def env_exports(dep: Deployment) -> str:
    """``export`` lines so a shell's ``airflow`` CLI talks to this deployment."""
    keys = [k for k in dep.env({}) if k.startswith(("AIRFLOW", "INKLOOP_"))]
    env = dep.env()
    return "".join(f"export {k}={shlex.quote(env[k])}\n" for k in sorted(keys))


@contextlib.contextmanager
def running(dep: Deployment | None = None) -> Iterator[Deployment]:
    """``up`` for the duration of a ``with`` block, ``down`` after (tests, benchmarks)."""
    dep = up(dep)
    try:
        yield dep
    finally:
        down(dep)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["up", "down", "status", "env"])
    ap.add_argument(
        "--storage",
        choices=STORAGES,
        default=None,
        help="up: the data in a local folder, or in a bucket on a local S3 endpoint "
        "(default: INKLOOP_DEPLOY_STORAGE, else what the state folder last ran with, else local)",
    )
    args = ap.parse_args(argv)
    dep = Deployment(storage=args.storage)
    if args.command == "up":
        t0 = time.monotonic()
        up(dep)
        print(f"up in {time.monotonic() - t0:.0f} s: API {dep.api_url}, state {dep.state}")
        print(f"logs: {dep.logs}; use the airflow CLI after: source {dep.state / 'env.sh'}")
        print(json.dumps(status(dep), indent=2))
    elif args.command == "down":
        print(json.dumps(down(dep), indent=2))
    elif args.command == "status":
        s = status(dep)
        print(json.dumps(s, indent=2))
        return 0 if all(s["processes"].values()) else 1
    else:
        print(env_exports(dep), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

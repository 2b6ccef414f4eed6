"""A file's identity: the SHA-256 of its bytes (a document's ``doc_id``, a model's checksum)."""

from __future__ import annotations

import hashlib
import os

from inkloop import storage


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def source_doc_id(source: str) -> str | None:
    """The ``doc_id`` of a file or storage URL, or None when its bytes cannot be read.

    For inputs that fail before they are opened (empty, unsupported, corrupt): their quarantine
    record still names the bytes, so an inbox does not hand the same file over again.
    """
    try:
        local = storage.local_path(source)
        if local is None:
            h = hashlib.sha256()
            with storage.open_file(source, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            return h.hexdigest()
        return sha256_file(local)
    except Exception:  # not found, not a file, storage error: no identity to record
        return None

"""A file's identity: the SHA-256 of its bytes (a document's ``doc_id``, a model's checksum, a
dataset file's entry in the data version). Every file hash in inkloop is computed here: with
:func:`hashlib.file_digest` (no hand-made read loop to get wrong), or while copying a stream
(:func:`copy_hashing`, the registry's uploads and cache)."""

from __future__ import annotations

import hashlib
import os
from typing import IO

from inkloop import storage


def sha256_stream(f: IO[bytes]) -> str:
    """The SHA-256 (hex) of a binary stream just opened for reading (a local file, a storage URL's)."""
    return hashlib.file_digest(f, "sha256").hexdigest()


def copy_hashing(src: IO[bytes], dst: IO[bytes], chunk_size: int = 1 << 20) -> str:
    """Copy a stream and return the SHA-256 (hex) of exactly the bytes written.

    Hashing while copying (rather than before) means the recorded checksum describes the stored
    copy even if the source file changes underneath us (the model registry's uploads and cache).
    """
    h = hashlib.sha256()
    while chunk := src.read(chunk_size):
        h.update(chunk)
        dst.write(chunk)
    return h.hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The SHA-256 (hex) of a local file's bytes."""
    with open(path, "rb") as f:
        return sha256_stream(f)


def source_doc_id(source: str) -> str | None:
    """The ``doc_id`` of a file or storage URL, or None when its bytes cannot be read.

    For inputs that fail before they are opened (empty, unsupported, corrupt): their quarantine
    record still names the bytes, so an inbox does not hand the same file over again.
    """
    try:
        local = storage.local_path(source)
        if local is None:
            with storage.open_file(source, "rb") as f:
                return sha256_stream(f)
        return sha256_file(local)
    except Exception:  # not found, not a file, storage error: no identity to record
        return None

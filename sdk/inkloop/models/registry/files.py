"""Durable files for the registry: copies that hash what they write, and the two renames that
publish a version folder and swap an alias file.

The renames are module-level functions so tests can interrupt a registration or a promotion
right before its commit (the fsspec registry calls them as ``files.commit_dir`` /
``files.replace_file``, so replacing them here takes effect).
"""

from __future__ import annotations

import os
from pathlib import Path

from inkloop.documents.hashing import copy_hashing
from inkloop.models.references import ModelError


def copy_local(src: Path, dst: Path) -> str:
    """Copy a local file durably (fsync before anyone renames it into view); return its SHA-256."""
    with open(src, "rb") as s, open(dst, "wb") as d:
        digest = copy_hashing(s, d)
        d.flush()
        os.fsync(d.fileno())
    return digest


def commit_dir(tmp: Path, final: Path) -> None:
    """Publish a fully written version folder in one step.

    ``os.rename`` of a directory fails if the target exists and is not empty, which is exactly
    "never overwrite a version" and lets concurrent registrations detect each other.
    A module-level function so tests can interrupt a registration right before its commit.
    """
    os.rename(tmp, final)


def replace_file(tmp: Path, final: Path) -> None:
    """Atomically swap in a new alias file (readers see the old or the new, never a mix).

    A module-level function so tests can interrupt a promotion between the write and the swap.
    """
    os.replace(tmp, final)


def mismatch(where: str, expected: str, actual: str) -> ModelError:
    """The error for a stored file whose SHA-256 is not the one its card records."""
    return ModelError(
        f"{where}: checksum mismatch (card says sha256 {expected[:12]}…, file is {actual[:12]}…); "
        "the file is corrupt or not the one this version registered"
    )

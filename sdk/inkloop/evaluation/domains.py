"""Which domain each page of a labelled dataset comes from: ``scan`` or ``digital`` (born digital).

Why a domain at all: a detector that is good on scans can miss most signatures on born-digital
pages (a placed signature image on a clean text PDF, ink drawn in a viewer), and a validation
split of scans alone cannot see it. Every place that judges a model (the evaluator, the gate, the
model card) reports each domain beside the total, so a domain is recorded with the data itself.

The record is one small file at a YOLO dataset's root (the folder that holds ``images/`` and
``labels/``), ``domains.json``, so datasets stay plain YOLO folders that ultralytics reads as
before::

    {"schema_version": 1, "default": "scan",
     "images": {"images/val/contract-0007-p0.png": "digital", ...}}

Keys are image paths relative to that root, with ``/``; ``default`` covers images not listed
(``null``: no domain). A dataset without the file has no domains, and reports stay as they were.
Written by ``inkloop synth`` and by the curation export, read by the evaluator and the gate.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path

from inkloop import storage
from inkloop.datasets import DOMAINS_FILE
from inkloop.documents.domain import DIGITAL, SCAN

DOMAINS_SCHEMA_VERSION = 1
#: The domains inkloop knows (the rule for incoming pages: :mod:`inkloop.documents.domain`);
#: others are accepted (a team may add ``photo``, ``fax``, …).
KNOWN_DOMAINS = (SCAN, DIGITAL)
#: The domain of images whose dataset records none, in a split where others have one (reports,
#: the gate's test-set record and curation counts all use this name).
UNKNOWN_DOMAIN = "unknown"


class DomainsError(ValueError):
    """A ``domains.json`` that cannot be read; the message names the file."""


def dataset_root_of(image: str | os.PathLike[str]) -> Path | None:
    """The dataset root an image belongs to: the parent of the last ``images`` folder in its path."""
    parts = Path(image).parts
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            return Path(*parts[:i]) if i else Path(".")
    return None


@lru_cache(maxsize=64)
def _read(root: str, mtime_ns: int) -> tuple[str | None, dict[str, str]]:
    path = Path(root) / DOMAINS_FILE
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DomainsError(f"{path}: cannot read the domains file: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("images", {}), dict):
        raise DomainsError(f"{path}: expected an object with an 'images' mapping")
    default = doc.get("default")
    if default is not None and not isinstance(default, str):
        raise DomainsError(f"{path}: 'default' must be a string or null, not {default!r}")
    images = doc.get("images", {})
    bad = next((k for k, v in images.items() if not isinstance(v, str) or not v), None)
    if bad is not None:
        raise DomainsError(f"{path}: the domain of {bad!r} must be a non-empty string, not {images[bad]!r}")
    return default, {str(k): v for k, v in images.items()}


def read_domains(root: str | os.PathLike[str]) -> tuple[str | None, dict[str, str]] | None:
    """``(default, {relative image path: domain})`` of a dataset root, or None without a file."""
    path = Path(root) / DOMAINS_FILE
    try:
        mtime = path.stat().st_mtime_ns
    except FileNotFoundError:
        return None
    return _read(str(Path(root)), mtime)


def domain_of(image: str | os.PathLike[str]) -> str | None:
    """The domain of one image of a YOLO dataset, from its root's ``domains.json`` (None: unknown).

    The root is the folder above the image's ``images/`` folder; a flat folder of images (labels
    beside them, no ``images/``) is its own root.
    """
    root = dataset_root_of(image)
    if root is None:
        root = Path(image).parent
    rec = read_domains(root)
    if rec is None:
        return None
    default, images = rec
    rel = Path(image).relative_to(root).as_posix() if Path(image).is_relative_to(root) else None
    return images.get(rel, default) if rel is not None else default


def write_domains(
    root: str | os.PathLike[str],
    images: Mapping[str, str] | Iterable[tuple[str, str]],
    default: str | None = None,
) -> Path:
    """Write ``root/domains.json`` (sorted, so the same dataset always hashes the same)."""
    mapping = dict(images.items() if isinstance(images, Mapping) else images)
    doc = {
        "schema_version": DOMAINS_SCHEMA_VERSION,
        "default": default,
        "images": {k.replace(os.sep, "/"): mapping[k] for k in sorted(mapping)},
    }
    path = Path(root) / DOMAINS_FILE
    storage.write_local_atomic(str(path), (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode())
    return path

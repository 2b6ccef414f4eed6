"""YOLO datasets on disk: which files are images, how a ``data.yaml`` names its root, the data version.

Why one module: the evaluator scores a split's images, training records the data version (the
hash of every image and label under the dataset's roots) on the model card, and the gate
compares models on a test split. If each read ``data.yaml`` or told images apart its own way, a
page could change the scores without changing the data version: it happened, when training knew
fewer image suffixes than the evaluator (``.dng``, ``.mpo`` and ``.pfm`` pages were scored but not
hashed). Here both read the same list, the same ``data.yaml`` rule and the same folders.

A dataset root is the folder that holds ``images/<split>/`` and ``labels/<split>/`` (the layout
ultralytics reads) and, optionally, ``data.yaml`` and ``domains.json``
(:mod:`inkloop.evaluation.domains`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from inkloop.documents.hashing import sha256_file

#: Image suffixes of a YOLO dataset (ultralytics' ``IMG_FORMATS``), compared in lower case.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".dng", ".mpo", ".pfm"}
)
#: The dataset description beside ``images/`` (class names, splits, ``path`` to the root).
DATA_YAML = "data.yaml"
#: The file at a dataset root that records each image's domain (:mod:`inkloop.evaluation.domains`).
DOMAINS_FILE = "domains.json"


class DatasetError(ValueError):
    """A dataset path or file that cannot be read as a YOLO dataset; the message names the path."""


def is_image(path: str | os.PathLike[str]) -> bool:
    """Whether a dataset file is an image, by its suffix in any case (``page.TIF`` is one)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def list_images(folder: Path, recursive: bool = True) -> list[Path]:
    """The images in ``folder`` (and its subfolders, unless ``recursive`` is False), sorted by path."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted((p for p in found if p.is_file() and is_image(p)), key=lambda p: p.as_posix())


def parse_data_yaml(text: str, where: str) -> dict[str, Any]:
    """A ``data.yaml``'s text → its mapping; :class:`DatasetError` naming ``where`` (the file or
    storage URL it came from) when it is not YAML or not a mapping."""
    import yaml

    try:
        cfg = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise DatasetError(f"{where}: not a readable YAML file ({exc})") from exc
    if not isinstance(cfg, dict):
        raise DatasetError(f"{where}: expected a YOLO data.yaml mapping")
    return cfg


def read_data_yaml(path: Path) -> tuple[dict[str, Any], Path]:
    """A ``data.yaml``'s mapping and the dataset root it names.

    ``path`` in the yaml is relative to the yaml's own folder (as everywhere in inkloop — not to
    the working directory, as ultralytics would take it); absent or empty, the root is that folder.
    """
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not a readable YAML file ({exc})") from exc
    cfg = parse_data_yaml(text, str(path))
    return cfg, (path.parent / str(cfg.get("path") or ".")).resolve()


def dataset_files(root: Path) -> list[Path]:
    """Images, YOLO label files and the domain record (``domains.json``) under a dataset root,
    sorted (label caches excluded). The domain record counts: moving a page from ``scan`` to
    ``digital`` changes what every per-domain number means, so it makes a new data version."""
    files = [
        p
        for p in root.rglob("*")
        if p.is_file() and (is_image(p) or p.suffix == ".txt" or p.name == DOMAINS_FILE)
    ]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def dataset_manifest(
    root: str | os.PathLike[str], external_roots: Iterable[str | os.PathLike[str]] = ()
) -> dict[str, Any]:
    """Hash every image and label file; the manifest's own hash is the data version.

    ``external_roots``: other dataset roots a combined data.yaml reads images from (scans from one
    dataset, generated pages from another); their files count too, under ``@<n>:<folder name>/``
    (content, not where the copy sits, decides the version).
    """
    base = Path(root)
    entries = {p.relative_to(base).as_posix(): sha256_file(p) for p in dataset_files(base)}
    for i, ext in enumerate(sorted({Path(r).resolve() for r in external_roots}, key=lambda p: p.name)):
        prefix = f"@{i}:{ext.name}/"
        entries.update({prefix + p.relative_to(ext).as_posix(): sha256_file(p) for p in dataset_files(ext)})
    digest = hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()
    return {"data_version": f"sha256:{digest}", "files": entries}

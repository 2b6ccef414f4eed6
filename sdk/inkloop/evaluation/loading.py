"""Loading a YOLO-format dataset split for evaluation: images, their labels in pixels, domains.

Follows ultralytics' rules (a ``data.yaml`` or a folder, ``images/`` → ``labels/``, polygons as
their bounding boxes, duplicate rows dropped) so the evaluator scores the same ground truth
``YOLO.val`` would.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inkloop.convert.yolo import from_yolo
from inkloop.datasets import DATA_YAML, DatasetError, is_image, list_images, read_data_yaml
from inkloop.evaluation.domains import DomainsError, domain_of

__all__ = ["DatasetError", "Sample", "YoloDataset", "label_path_for", "load_dataset", "load_rgb"]


@dataclass
class Sample:
    """One image of the dataset and its ground truth, in the image's own pixels."""

    image: Path
    label: Path | None
    boxes: np.ndarray  # (M, 4) xyxy float64
    classes: np.ndarray  # (M,) int64
    #: ``scan``, ``digital``, … from the image's own dataset root (``domains.json``); None: unknown.
    domain: str | None = None


@dataclass
class YoloDataset:
    """The images of one split and their labels, resolved to files."""

    source: Path
    split: str
    samples: list[Sample]
    names: list[str] | None = None

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def has_domains(self) -> bool:
        """Whether any image's domain is recorded (then reports score each domain on its own)."""
        return any(s.domain is not None for s in self.samples)


def label_path_for(image: Path) -> Path:
    """ultralytics' rule: the last ``/images/`` becomes ``/labels/``, the suffix becomes ``.txt``.

    An image not under an ``images`` folder gets its sibling ``.txt``, which is also what a flat
    folder of images with labels beside them needs.
    """
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    s = os.fspath(image)
    return Path(sb.join(s.rsplit(sa, 1)).rsplit(".", 1)[0] + ".txt")


def _parse_label_file(path: Path, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """YOLO boxes (``cls cx cy w h``) or polygons (``cls x y x y …``) → xyxy pixels and class ids.

    Duplicate rows are dropped, as ultralytics does when it verifies labels, so both count the
    same number of ground-truth boxes.
    """
    rows: list[list[float]] = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            vals = [float(v) for v in parts]
        except ValueError as exc:
            raise DatasetError(f"{path}:{n}: not a YOLO label line: {line!r}") from exc
        if len(vals) == 5:
            rows.append(vals)
        elif len(vals) >= 7 and len(vals) % 2 == 1:  # polygon: its bounding box, as ultralytics
            xs, ys = vals[1::2], vals[2::2]
            x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
            rows.append([vals[0], (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0])
        else:
            raise DatasetError(f"{path}:{n}: YOLO label line needs 5 fields (or a polygon): {line!r}")
    if not rows:
        return np.zeros((0, 4)), np.zeros(0, np.int64)
    arr = np.asarray(rows, dtype=np.float64)
    _, first = np.unique(arr, axis=0, return_index=True)
    arr = arr[np.sort(first)]  # keep the file's order for readable error reports
    boxes = np.array([from_yolo(tuple(r[1:5]), width, height) for r in arr], dtype=np.float64)
    return boxes, arr[:, 0].astype(np.int64)


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        # Oriented size: labels refer to the image as displayed (cv2.imread applies EXIF too).
        return ImageOps.exif_transpose(im).size


def _split_entries(cfg: dict[str, Any], split: str, yaml_path: Path) -> list[str]:
    entry = cfg.get(split)
    if entry is None and split == "val":
        entry = cfg.get("validation")
    if not entry:
        raise DatasetError(f"{yaml_path}: no {split!r} entry (keys: {', '.join(sorted(cfg))})")
    return [str(e) for e in (entry if isinstance(entry, list) else [entry])]


def _images_from_entry(entry: str, root: Path, yaml_path: Path) -> list[Path]:
    p = Path(entry)
    p = p if p.is_absolute() else root / p
    if p.is_dir():
        return list_images(p)
    if p.is_file() and p.suffix == ".txt":  # a list of image paths, relative to the dataset root
        out: list[Path] = []
        for line in p.read_text().splitlines():
            if line.strip():
                q = Path(line.strip())
                out.append(q if q.is_absolute() else (root / q))
        return out
    if p.is_file() and is_image(p):
        return [p]
    raise DatasetError(f"{yaml_path}: split path {p} does not exist")


def _names(cfg: dict[str, Any]) -> list[str] | None:
    names = cfg.get("names")
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names)]
    if isinstance(names, list):
        return [str(n) for n in names]
    return None


def load_dataset(
    data: str | os.PathLike[str], split: str = "val", default_domain: str | None = None
) -> YoloDataset:
    """Resolve a data.yaml, a dataset folder or a flat folder of images into labelled samples.

    Accepted forms:

    - a ``data.yaml``: ``path`` (relative to the yaml's folder, as everywhere in inkloop — not to
      the working directory as ultralytics would) and ``<split>`` (a folder, an image-list
      ``.txt``, or a list of those);
    - a folder with ``data.yaml`` in it (as above), or with ``images/<split>`` and
      ``labels/<split>``;
    - a flat folder of images with a ``.txt`` label beside each.

    An image without a label file has no objects (a background image), as in ultralytics.
    Each image's domain comes from the ``domains.json`` of *its own* dataset root
    (:mod:`inkloop.evaluation.domains`), so a data.yaml listing folders of several datasets (scans
    from one, generated digital pages from another) gets each image's domain right.
    ``default_domain`` is the domain of images whose dataset records none (a read-only collection
    of scans beside generated pages: ``default_domain="scan"``).
    """
    src = Path(data)
    names: list[str] | None = None
    if src.is_file():
        cfg, root = read_data_yaml(src)
        images = [im for e in _split_entries(cfg, split, src) for im in _images_from_entry(e, root, src)]
        names = _names(cfg)
    elif src.is_dir():
        if (src / DATA_YAML).is_file():
            return load_dataset(src / DATA_YAML, split, default_domain)
        if (src / "images" / split).is_dir():
            images = list_images(src / "images" / split)
        elif (src / "images").is_dir():
            raise DatasetError(f"{src}: no images/{split} folder and no data.yaml")
        else:
            images = list_images(src, recursive=False)
    else:
        raise DatasetError(f"dataset not found: {src}")
    if not images:
        raise DatasetError(f"{src}: no images found for split {split!r}")
    samples: list[Sample] = []
    for im in images:
        if not im.is_file():
            raise DatasetError(f"{src}: listed image {im} does not exist")
        lbl = label_path_for(im)
        try:
            domain = domain_of(im) or default_domain
        except DomainsError as exc:
            raise DatasetError(str(exc)) from exc
        if lbl.is_file():
            w, h = _image_size(im)
            boxes, classes = _parse_label_file(lbl, w, h)
            samples.append(Sample(im, lbl, boxes, classes, domain))
        else:
            samples.append(Sample(im, None, np.zeros((0, 4)), np.zeros(0, np.int64), domain))
    return YoloDataset(source=src, split=split, samples=samples, names=names)


def load_rgb(path: Path) -> np.ndarray:
    """An image as RGB uint8, EXIF orientation applied (the orientation its labels refer to)."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))

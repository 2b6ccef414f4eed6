"""Write a synthetic set: the documents as an inbox holds them, and a labelled YOLO dataset of their
rendered pages, with a manifest, domains and per-page provenance.

Layout of ``OUT``::

    documents/<split>/synth-<split>-00000.pdf   text layer, fields, annotations: input for detect/verdict
    images/<split>/synth-<split>-00000-p0.png   each page rendered at one of the chosen DPIs
    labels/<split>/synth-<split>-00000-p0.txt   YOLO boxes of the ink placed (empty: a negative page)
    data.yaml                                   names: {0: signature}; the splits made
    domains.json                                every image is ``digital``
    manifest.json                               data_version and every image/label hash, options, counts
    provenance.jsonl                            per page: crops used (source, split), ink kinds, negatives
    summary.json                                counts and timing

Determinism: each document has its own generator seeded from ``(seed, split, document number)``,
so the same options give the same bytes, and a split does not change when another is added.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inkloop.convert.pdf import points_to_pixels
from inkloop.convert.yolo import format_line, to_yolo
from inkloop.geometry import clip
from inkloop.synth.compose import Slot, make_document, template_slots
from inkloop.synth.crops import Crop, CropsError, load_crops

SPLITS = ("train", "val", "test")
DEFAULT_DPIS = (100.0, 150.0, 200.0)
#: A label narrower or lower than this many rendered pixels is dropped (nothing to see).
MIN_BOX_PX = 3.0
ProgressFn = Callable[[str, dict[str, Any]], None]


class SynthError(ValueError):
    """Bad input to ``inkloop synth``; the message names the file or URL and the reason."""


@dataclass
class SynthOptions:
    """What to make: ``pages`` rendered pages per split, crops of that split only."""

    crops: str
    out: str
    pages: dict[str, int]
    seed: int = 0
    dpis: Sequence[float] = DEFAULT_DPIS
    templates: str | None = None
    template_share: float = 0.5
    max_pages: int = 2
    notes: dict[str, Any] = field(default_factory=dict)


def _fs(url: str) -> tuple[Any, str]:
    from fsspec.core import url_to_fs

    return url_to_fs(url)


def _load_templates(url: str, workdir: Path) -> list[tuple[str, bytes, list[Slot]]]:
    """Every PDF in the templates folder with the signing places the verdict stage finds in it."""
    fs, root = _fs(url)
    if not fs.isdir(root):
        raise SynthError(f"{url}: templates folder not found")
    names = sorted(p for p in fs.find(root) if p.lower().endswith(".pdf"))
    if not names:
        raise SynthError(f"{url}: no .pdf templates in this folder")
    out: list[tuple[str, bytes, list[Slot]]] = []
    skipped: list[str] = []
    import pymupdf

    for n in names:
        with fs.open(n, "rb") as f:
            data = f.read()
        rel = os.path.relpath(n, root)
        try:
            with pymupdf.open(stream=data, filetype="pdf") as d:
                if d.needs_pass or d.page_count == 0:
                    raise SynthError(f"{n}: template is encrypted or has no pages")
        except SynthError:
            raise
        except Exception as exc:
            raise SynthError(f"{n}: not a readable PDF template ({exc.__class__.__name__}: {exc})") from exc
        local = workdir / f"template-{len(out) + len(skipped)}.pdf"
        local.write_bytes(data)
        slots = template_slots(local)
        if not slots:
            skipped.append(n)
            continue
        out.append((rel, data, slots))
    if not out:
        raise SynthError(
            f"{url}: no signing place found in any template ({', '.join(skipped[:5])}): a template needs "
            "a signature field or a labelled signing line (e.g. 'Signature: ____')"
        )
    return out


def _doc_rng(seed: int, split: str, number: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(split.encode()), number])


def _pixel_box(
    box_pt: tuple[float, float, float, float], dpi: float, w: int, h: int
) -> tuple[float, float, float, float]:
    """An ink box in PDF points as rendered pixels at ``dpi``, kept inside the page."""
    return clip(points_to_pixels(box_pt, dpi), w, h)


def _visible(b: tuple[float, float, float, float]) -> bool:
    return bool(b[2] - b[0] >= MIN_BOX_PX and b[3] - b[1] >= MIN_BOX_PX)


def _render(pdf_path: Path, indices: Sequence[int], dpi: float) -> list[np.ndarray]:
    """The pages as the detector's reader sees them: inkloop's own rendering, annotations on
    (the document opened once for all its pages)."""
    from inkloop.documents.opening import open_document

    with open_document(pdf_path) as d:
        return [d.render_for_people(i, dpi) for i in indices]


def synthesize(options: SynthOptions, progress: ProgressFn | None = None) -> dict[str, Any]:
    """Make the set described by ``options``; returns the summary (also written as summary.json)."""
    import yaml

    import inkloop
    from inkloop.datasets import dataset_manifest
    from inkloop.evaluation.domains import DIGITAL, write_domains

    started = time.perf_counter()
    unknown = [s for s in options.pages if s not in SPLITS]
    if unknown:
        raise SynthError(f"unknown split(s) {unknown}: use {', '.join(SPLITS)}")
    if any(n < 0 for n in options.pages.values()):
        raise SynthError(f"pages per split must be >= 0, got {options.pages}")
    dpis = [float(d) for d in options.dpis]
    if not dpis or any(not 36.0 <= d <= 600.0 for d in dpis):
        raise SynthError(f"DPIs must be between 36 and 600, got {list(options.dpis)}")
    if not 0.0 <= options.template_share <= 1.0:
        raise SynthError(f"template share must be in [0, 1], got {options.template_share}")
    fs, root = _fs(options.out)
    if fs.exists(root) and fs.ls(root):
        raise SynthError(f"{options.out}: output folder exists and is not empty (a set is never overwritten)")
    local = fs.protocol in ("file", "local") or "file" in (
        fs.protocol if isinstance(fs.protocol, tuple) else ()
    )
    scratch = Path(tempfile.mkdtemp(prefix="inkloop-synth-"))
    # built beside its final place and renamed when complete: a stopped run leaves no half set
    # under the name (a local folder), or is uploaded only when complete (a storage URL)
    final = Path(root)
    base = final.parent / f".{final.name}.partial-{uuid.uuid4().hex[:8]}" if local else scratch / "out"
    try:
        crops: dict[str, list[Crop]] = {}
        for split, n in options.pages.items():
            if n:
                try:
                    crops[split] = load_crops(options.crops, split)
                except CropsError as exc:
                    raise SynthError(str(exc)) from exc
        seen: dict[str, str] = {}
        for split, cs in crops.items():  # a flat folder gives every split the same pages
            for src in sorted({c.source for c in cs}):
                if seen.setdefault(src, split) != split:
                    raise SynthError(
                        f"{options.crops}: {src} is in both {seen[src]!r} and {split!r}: crops would leak "
                        "between splits (give a dataset with images/<split> folders or a data.yaml)"
                    )
        templates = _load_templates(options.templates, scratch) if options.templates else []
        base.mkdir(parents=True)
        if progress:
            progress("start", {"pages": sum(options.pages.values())})
        provenance: list[dict[str, Any]] = []
        counts: dict[str, Counter[str]] = {}
        for split, want in options.pages.items():
            c = counts.setdefault(split, Counter())
            for sub in ("documents", "images", "labels"):
                (base / sub / split).mkdir(parents=True, exist_ok=True)
            number = 0
            while c["pages"] < want:
                rng = _doc_rng(options.seed, split, number)
                left = want - c["pages"]
                tpl = None
                if templates and rng.random() < options.template_share:
                    tpl = templates[int(rng.integers(len(templates)))]
                dpi = dpis[int(rng.integers(len(dpis)))]
                doc = make_document(rng, crops[split], tpl, max_pages=min(options.max_pages, left))
                stem = f"synth-{split}-{number:05d}"
                pdf_path = base / "documents" / split / f"{stem}.pdf"
                pdf_path.write_bytes(doc.pdf)
                c["documents"] += 1
                recs = doc.pages[:left]
                for rec, image in zip(recs, _render(pdf_path, [r.index for r in recs], dpi), strict=True):
                    h, w = image.shape[:2]
                    px = [_pixel_box(ink.box, dpi, w, h) for ink in rec.inks]
                    boxes = [b for b in px if _visible(b)]
                    name = f"{stem}-p{rec.index}"
                    ok, png = cv2.imencode(
                        ".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 3]
                    )
                    if not ok:  # pragma: no cover
                        raise SynthError(f"{name}: PNG encoding failed")
                    (base / "images" / split / f"{name}.png").write_bytes(png.tobytes())
                    lines = "".join(format_line(0, to_yolo(b, w, h)) + "\n" for b in boxes)
                    (base / "labels" / split / f"{name}.txt").write_bytes(lines.encode())
                    c["pages"] += 1
                    c["signatures"] += len(boxes)
                    c["negative_pages"] += not boxes
                    for ink in rec.inks:
                        c[f"ink:{ink.kind}"] += 1
                    for neg in rec.negatives:
                        c[f"negative:{neg['kind']}"] += 1
                    c["host:template" if tpl else "host:generated"] += 1
                    provenance.append(
                        {
                            "image": f"images/{split}/{name}.png",
                            "label": f"labels/{split}/{name}.txt",
                            "document": f"documents/{split}/{stem}.pdf",
                            "page": rec.index,
                            "split": split,
                            "dpi": dpi,
                            "size_px": [w, h],
                            "host": doc.host,
                            "language": doc.language,
                            "signatures": [
                                {
                                    "crop": ink.crop.crop_id,
                                    "crop_split": ink.crop.split,
                                    "ink": ink.kind,
                                    "color": list(ink.color),
                                    "angle": round(ink.angle, 2),
                                    "box_pt": [round(v, 2) for v in ink.box],
                                    "box_px": [round(v, 2) for v in b],
                                    "labelled": _visible(b),
                                }
                                for ink, b in zip(rec.inks, px, strict=True)
                            ],
                            "negatives": rec.negatives,
                        }
                    )
                    if progress:
                        progress("page", {"split": split, "name": name, "signatures": len(boxes)})
                number += 1
        made = [s for s, n in options.pages.items() if n]
        cfg: dict[str, Any] = {"path": ".", **{s: f"images/{s}" for s in made}, "names": {0: "signature"}}
        (base / "data.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        write_domains(base, {}, default=DIGITAL)
        with (base / "provenance.jsonl").open("w") as f:
            for row in provenance:
                f.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
        manifest = dataset_manifest(base)
        opts = asdict(options)
        opts["dpis"] = dpis
        summary = {
            "kind": "synth",
            "data_version": manifest["data_version"],
            "inkloop_version": inkloop.__version__,
            "options": {
                k: opts[k]
                for k in ("crops", "pages", "seed", "dpis", "templates", "template_share", "max_pages")
            },
            "crops": {s: len(v) for s, v in crops.items()},
            "templates": [t[0] for t in templates],
            "splits": {s: dict(sorted(c.items())) for s, c in counts.items()},
            "domain": DIGITAL,
        }
        # the curation export's keys (version, data_version, classes, splits, boxes, negatives,
        # files), so tools reading an export's manifest read this one; no date: same seed, same bytes
        digest = str(manifest["data_version"]).split(":", 1)[-1]
        doc_manifest = {
            "version": f"synth-{digest[:16]}",
            "data_version": manifest["data_version"],
            "dataset": "synth",
            "inkloop_version": inkloop.__version__,
            "classes": ["signature"],
            "splits": {s: c["pages"] for s, c in counts.items()},
            "boxes": sum(c["signatures"] for c in counts.values()),
            "negatives": sum(c["negative_pages"] for c in counts.values()),
            "synth": {k: summary[k] for k in ("options", "crops", "templates", "splits", "domain")},
            "files": manifest["files"],
        }
        summary["version"] = doc_manifest["version"]
        (base / "manifest.json").write_text(
            json.dumps(doc_manifest, indent=1, ensure_ascii=False, sort_keys=True) + "\n"
        )
        summary["seconds"] = round(time.perf_counter() - started, 1)
        summary["out"] = options.out
        (base / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
        if local:
            if final.exists():
                final.rmdir()  # empty, checked above
            os.replace(base, final)
        else:
            fs.put(str(base) + "/", root, recursive=True)
        return summary
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if local:
            shutil.rmtree(base, ignore_errors=True)

"""Signature crops from a labelled dataset, and the three ways ink reaches a born-digital page.

Why real crops: the strokes of a real signature (pressure, speed, loops, the way a name is
abbreviated) are what the detector must learn; a random scribble teaches it scribbles. Each crop
is turned into the ink a digital document really carries:

- **ink on a transparent background** (the "upload your signature" image of e-signing tools):
  alpha from the crop's darkness, recoloured black or blue (:func:`ink_rgba`);
- **the crop with its own paper** (a photographed or scanned signature pasted as it is);
- **vector ink** (a stylus or mouse in a PDF viewer): the crop's ink skeleton traced into strokes
  (:func:`inkloop.documents.ink.trace_strokes`, on :func:`tracing_crop`), drawn as an Ink annotation
  or as paths.

Crops of a split come only from that split of the source dataset, so a validation page never
carries a signature that training saw.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

#: Source pages stored stretched to a square, by file-name prefix: the width factor that gives
#: their ink its true aspect back (Tobacco800 pages are 2550×3300 scans stored as 1000×1000).
STRETCHED_PREFIXES: dict[str, float] = {"tobacco800": 2550 / 3300}
#: A crop narrower or lower than this (pixels) is too small to look like anything when placed.
MIN_CROP_SIDE = 8
#: Alpha from which a pixel counts as ink for labels and tracing (about gray 176 when rendered black).
INK_ALPHA = 0.35
#: In a crop pasted with its paper, a pixel at least this dark (and 50 below the paper) is ink.
PAPER_INK_LEVEL = 185.0


class CropsError(ValueError):
    """A crop source that cannot be used; the message names the dataset and the reason."""


@dataclass(frozen=True)
class Crop:
    """A signature cut from a labelled page (grayscale), with the page and split it came from."""

    image: np.ndarray
    source: str
    split: str = ""
    index: int = 0  # which labelled box of ``source``

    @property
    def crop_id(self) -> str:
        """A stable name for provenance: the source page and the box's index on it."""
        return f"{self.source}#{self.index}"


def _aspect_fix(image: str, shape: tuple[int, int]) -> float:
    name = os.path.basename(image).lower()
    h, w = shape
    for prefix, factor in STRETCHED_PREFIXES.items():
        if name.startswith(prefix) and h == w:
            return factor
    return 1.0


def signature_crops(
    samples: Sequence[Any], pad: float = 0.04, split: str = "", restore_aspect: bool = True
) -> list[Crop]:
    """Every labelled signature of ``samples`` (evaluator ``Sample``s) as a grayscale crop with a
    little margin; with ``restore_aspect``, sources stored stretched get their true aspect back
    (off when the crops go back onto pages stretched the same way, as ``tools/synthetic.py`` does)."""
    from inkloop.evaluation.evaluator import load_rgb

    crops: list[Crop] = []
    for s in samples:
        if not len(s.boxes):
            continue
        gray = cv2.cvtColor(load_rgb(s.image), cv2.COLOR_RGB2GRAY)
        h, w = gray.shape
        fix = _aspect_fix(str(s.image), (h, w)) if restore_aspect else 1.0
        for k, (x0, y0, x1, y1) in enumerate(s.boxes):
            mx, my = pad * (x1 - x0), pad * (y1 - y0)
            a, b = int(max(0, x0 - mx)), int(max(0, y0 - my))
            c, d = int(min(w, x1 + mx)), int(min(h, y1 + my))
            if c - a < MIN_CROP_SIDE or d - b < MIN_CROP_SIDE:
                continue
            piece = gray[b:d, a:c].copy()
            if fix != 1.0:
                piece = cv2.resize(piece, (max(1, round(piece.shape[1] * fix)), piece.shape[0]))
            crops.append(Crop(piece, str(s.image), split, k))
    return crops


def load_crops(source: str, split: str) -> list[Crop]:
    """The signature crops of one split of ``source``: a YOLO dataset (folder or data.yaml) or
    ``fiftyone:NAME`` (the reviewed pages of that FiftyOne dataset, by their ``split`` field)."""
    if source.startswith("fiftyone:"):
        samples = _fiftyone_samples(source.removeprefix("fiftyone:"), split)
    else:
        from inkloop.evaluation.evaluator import DatasetError, load_dataset

        try:
            samples = load_dataset(source, split).samples
        except DatasetError as exc:
            raise CropsError(f"{source}: cannot read split {split!r} for signature crops: {exc}") from exc
    crops = signature_crops(samples, split=split)
    if not crops:
        raise CropsError(f"{source}: no labelled signatures in split {split!r} to cut crops from")
    return crops


def _fiftyone_samples(name: str, split: str) -> list[Any]:
    from pathlib import Path

    from inkloop.convert.fiftyone import from_fiftyone
    from inkloop.curation.store import CurationStore
    from inkloop.evaluation.evaluator import Sample

    store = CurationStore(name, create=False)
    paths, ws, hs, boxes = store.reviewed(split).values(
        ["filepath", "page_width", "page_height", "ground_truth.detections.bounding_box"]
    )
    out = []
    for p, w, h, bxs in zip(paths, ws, hs, boxes, strict=True):
        xyxy = np.array([from_fiftyone(b, w, h) for b in bxs or []], dtype=np.float64).reshape(-1, 4)
        out.append(Sample(Path(p), None, xyxy, np.zeros(len(xyxy), np.int64)))
    return out


# -- ink -------------------------------------------------------------------------------------------
def ink_alpha(gray: np.ndarray) -> np.ndarray:
    """Opacity of the ink in [0, 1] from a crop's darkness relative to its own paper.

    The paper level is the crop's bright majority (90th percentile), so a yellowed or grey scan
    gives the same ink as a white one; specks of a few pixels are dropped (they are dust).
    """
    g = gray.astype(np.float32)
    paper = float(np.percentile(g, 90))
    dark = float(np.percentile(g, 1))
    top = paper - 25.0
    alpha = np.clip((top - g) / max(20.0, top - dark), 0.0, 1.0)
    alpha = np.power(alpha, 0.7)  # keep thin, light strokes visible
    w = alpha.shape[1]
    if w >= 40:  # a printed rule cut with the signature is not ink: long flat runs go
        run = max(20, int(w * 0.45))
        rule = cv2.morphologyEx(
            (alpha >= INK_ALPHA).astype(np.uint8), cv2.MORPH_OPEN, np.ones((1, run), np.uint8)
        )
        if rule.any():
            alpha[cv2.dilate(rule, np.ones((3, 1), np.uint8)) > 0] = 0.0
    n, lab, stats, _ = cv2.connectedComponentsWithStats((alpha >= INK_ALPHA).astype(np.uint8), connectivity=8)
    small = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] < 4]
    if small:
        speck = np.isin(lab, small)
        around = cv2.dilate(speck.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        alpha[around & (alpha < 1.0)] = 0.0
        alpha[speck] = 0.0
    return alpha


def ink_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Pixel box ``(x0, y0, x1, y1)`` (exclusive ends) of the true pixels, or None."""
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def rotate_rgba(rgba: np.ndarray, angle: float, border: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Rotate an RGBA picture by ``angle`` degrees on a canvas large enough to keep every corner.

    The new corners are transparent; their colour is ``border`` (the ink's own colour, or paper
    white), so interpolation at the edges does not darken them with invisible black.
    """
    h, w = rgba.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    c, s = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(np.ceil(h * s + w * c)), int(np.ceil(h * c + w * s))
    m[0, 2] += nw / 2 - w / 2
    m[1, 2] += nh / 2 - h / 2
    return cv2.warpAffine(rgba, m, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=(*border, 0))


def ink_rgba(gray: np.ndarray, color: tuple[int, int, int] | None, angle: float = 0.0) -> np.ndarray:
    """The crop as an RGBA picture: ink of ``color`` on transparency, or (``None``) the crop with
    its own paper, opaque, rotated by ``angle``. Alpha of the ink pixels is what labels measure."""
    if color is None:
        rgb = cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
        rgba = np.dstack([rgb, np.full(gray.shape, 255, np.uint8)])
    else:
        alpha = (ink_alpha(gray) * 255).round().astype(np.uint8)
        rgba = np.dstack([np.broadcast_to(np.array(color, np.uint8), (*gray.shape, 3)), alpha])
    return rotate_rgba(rgba, angle, (255, 255, 255) if color is None else color) if angle else rgba


def ink_mask_of(rgba: np.ndarray, paper: bool) -> np.ndarray:
    """Which pixels of an :func:`ink_rgba` picture are ink (dark enough to be seen as a stroke).

    A crop pasted with its paper shows everything it holds, so every dark pixel of it counts
    (as its original box did); transparent ink counts where its alpha makes it visible.
    """
    a = rgba[:, :, 3].astype(np.float32) / 255.0
    if not paper:
        return a >= INK_ALPHA
    gray = cv2.cvtColor(np.ascontiguousarray(rgba[:, :, :3]), cv2.COLOR_RGB2GRAY)
    level = min(float(np.percentile(gray[a >= 0.5], 90)) - 50.0, PAPER_INK_LEVEL)
    return (gray < level) & (a >= 0.5)


def png_bytes(rgba: np.ndarray) -> bytes:
    """PNG of an RGBA picture (cv2 writes BGRA; deterministic bytes)."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA), [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:  # pragma: no cover - cv2 encodes any uint8 RGBA array
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


#: Crops are enlarged to about this many pixels (longer side) before their strokes are traced.
TRACE_SIDE = 600


def tracing_crop(gray: np.ndarray) -> np.ndarray:
    """The crop as the stroke tracer should see it: everything that is not ink (paper, specks, a
    printed rule) white, enlarged and smoothed so a low-resolution scan's staircase edges trace
    into a pen's curves rather than into jagged segments."""
    clean = np.where(ink_alpha(gray) > 0.0, gray, 255).astype(np.uint8)
    h, w = clean.shape
    f = float(np.clip(TRACE_SIDE / max(h, w), 1.0, 6.0))
    if f > 1.0:
        clean = cv2.resize(clean, (round(w * f), round(h * f)), interpolation=cv2.INTER_CUBIC)
    k = 2 * int(f) + 1
    return cv2.GaussianBlur(clean, (k, k), 0)

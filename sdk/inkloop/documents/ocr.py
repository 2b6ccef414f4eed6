"""Lines of printed text read from page pixels (OCR), for pages that have no text layer.

Why: a scanned page carries its printed labels only as pixels, and some decisions need a word or
two of them. The verdict asks one narrow question: what is printed beside or under a box of ink
(``Date``: a handwritten date, not a signature). Reading a small crop around a box costs a
fraction of a second, where reading whole pages would cost seconds each.

The engine is RapidOCR (Apache-2.0): PaddleOCR's PP-OCRv4 text detection and recognition models
(Apache-2.0) run by onnxruntime, which inkloop already uses for detection. The models are inside
its wheel, so nothing is downloaded and nothing leaves the machine. It is an optional dependency
(the ``verdict`` extra): :func:`read_lines` raises :class:`OcrUnavailable` with the install line
when it is not installed.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from inkloop.types import BoxXYXY

#: What to install for OCR.
INSTALL_HINT = "pip install 'inkloop[verdict]' (RapidOCR)"
#: Recognised lines scoring below this are dropped (RapidOCR's own default text score).
MIN_SCORE = 0.5


class OcrUnavailable(RuntimeError):
    """OCR was asked for but RapidOCR is not installed."""


@dataclass(frozen=True, slots=True)
class TextLine:
    """One printed line found in an image: its box in the image's pixels, its text, its score."""

    box: BoxXYXY
    text: str
    score: float


@functools.lru_cache(maxsize=1)
def _engine(threads: int) -> Any:
    """RapidOCR, loaded once per process (its three ONNX sessions take about a second)."""
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError as exc:
        raise OcrUnavailable(f"OCR needs RapidOCR: {INSTALL_HINT}") from exc
    logging.getLogger("RapidOCR").setLevel(logging.WARNING)  # it logs every call at INFO
    # Its text detector enlarges an image until its short side is 736 px (a crop of 190 x 410 px
    # becomes 736 x 1590): 1.9 s a crop. Up to 320 px reads the same labels (5 of 5 date labels
    # on val crops) in 0.55 s; not enlarging at all misses 4 of 5 (small print).
    return RapidOCR(
        intra_op_num_threads=threads,
        inter_op_num_threads=1,
        det_limit_type="min",
        det_limit_side_len=320,
    )


def read_lines(image: np.ndarray, threads: int = 1, min_score: float = MIN_SCORE) -> list[TextLine]:
    """The printed lines of ``image`` (RGB or grey pixels), top to bottom.

    No text-direction classifier: labels on an upright page are upright, and it would cost a
    third model per line. ``threads`` is onnxruntime's thread count (one by default: the verdict
    reads small crops, and detection workers already use the cores).
    """
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    result, _ = _engine(threads)(np.ascontiguousarray(image[:, :, :3]), use_cls=False)
    out: list[TextLine] = []
    for quad, text, score in result or []:
        if float(score) < min_score:
            continue
        xs = [float(p[0]) for p in quad]
        ys = [float(p[1]) for p in quad]
        out.append(TextLine((min(xs), min(ys), max(xs), max(ys)), str(text), float(score)))
    out.sort(key=lambda t: (t.box[1], t.box[0]))
    return out

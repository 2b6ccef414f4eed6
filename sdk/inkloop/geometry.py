"""Box geometry on ``xyxy`` boxes: intersection over union, one-to-one matching, clipping to a page.

Why one module: NMS, routing's test-time-augmentation signal, the evaluator's mAP, the export
parity check and the throughput benchmark all ask "is this the same box?"; routing and the
verdict also ask "how much of this box lies on that zone?" (:func:`covered_share`). Written once each,
their answers could drift apart (an ``eps`` here, a float32 there), and a change that makes two
models agree in one place would not in another. Every box is the canonical box of
:mod:`inkloop.types`: ``(x0, y0, x1, y1)`` in page pixels.

The functions take what callers hold (tuples, lists or arrays) and stay exact where it matters:
:func:`box_iou` keeps ultralytics' ``eps`` in the denominator for the evaluator, takes ``eps=0``
for the plain ratio (an empty union gives 0, never a division by zero), and computes in the
caller's ``dtype`` (NMS works in float32, as ultralytics' does).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from inkloop.types import BoxXYXY

#: Boxes as callers hold them: an ``(N, 4)`` array, or a sequence of 4-sequences.
Boxes = npt.ArrayLike

#: What :func:`match_boxes` returns: ``(pairs, unmatched_rows, unmatched_cols)``.
Matching = tuple[list[tuple[int, int]], list[int], list[int]]


def clip(xyxy: Sequence[float], width: float, height: float) -> BoxXYXY:
    """Keep a box inside a ``width``×``height`` page; models may predict slightly past the border."""
    x0, y0, x1, y1 = xyxy
    return (
        min(max(x0, 0.0), width),
        min(max(y0, 0.0), height),
        min(max(x1, 0.0), width),
        min(max(y1, 0.0), height),
    )


def covered_share(box: Sequence[float], zone: Sequence[float]) -> float:
    """The share of ``box``'s area that lies on ``zone``: 0 when they do not overlap.

    Not IoU: the question is "is this box on that zone?", asked of a signature that overflows its
    line (routing's ``place:`` signal), a label lying on a field (the verdict's places) and ink on
    typed words (the verdict's judge); a small box inside a big zone is wholly on it.
    """
    iw = min(box[2], zone[2]) - max(box[0], zone[0])
    ih = min(box[3], zone[3]) - max(box[1], zone[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    return float(iw * ih / ((box[2] - box[0]) * (box[3] - box[1])))  # > 0: box holds the overlap


def box_iou(a: Boxes, b: Boxes, eps: float = 1e-7, dtype: npt.DTypeLike = np.float64) -> np.ndarray:
    """Pairwise intersection over union, ``(len(a), len(b))``: ``inter / (union + eps)``.

    ``eps=1e-7`` is ultralytics' (its mAP and ours must count the same matches); ``eps=0`` gives
    the plain ratio, 0 where the union is empty. A box that does not overlap has IoU 0.
    """
    a = np.asarray(a, dtype=dtype).reshape(-1, 4)
    b = np.asarray(b, dtype=dtype).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    denominator = area_a[:, None] + area_b[None, :] - inter + eps
    return np.divide(inter, denominator, out=np.zeros_like(inter), where=denominator != 0)


def match_boxes(
    iou: np.ndarray,
    min_iou: float,
    allowed: np.ndarray | None = None,
    order: Literal["iou", "rows"] = "iou",
) -> Matching:
    """Pair rows with columns one to one, each pair's IoU ≥ ``min_iou``; greedy.

    ``iou`` is a ``(rows, cols)`` matrix (:func:`box_iou`); ``allowed`` an optional mask of the
    same shape (same label, same class). Two greedy orders, because callers ask two questions:

    - ``"iou"``: the highest IoU of all pairs first (ties: lower row, then lower column) — the
      same boxes seen twice (two renderings, two model variants), no side preferred;
    - ``"rows"``: each row in turn (sort rows by score first) takes its best unclaimed column
      (ties: the lower column) — predictions claiming ground truth, as ultralytics matches.

    Returns ``(pairs, unmatched_rows, unmatched_cols)``, pairs in the order they were made.
    """
    iou = np.asarray(iou, dtype=np.float64)
    n_rows, n_cols = iou.shape
    ok = iou >= min_iou
    if allowed is not None:
        ok &= np.asarray(allowed, dtype=bool)
    pairs: list[tuple[int, int]] = []
    if order == "iou":
        cand = np.argwhere(ok)  # row-major, so the stable sort breaks ties by (row, column)
        cand = cand[np.argsort(-iou[cand[:, 0], cand[:, 1]], kind="stable")]
        used_rows: set[int] = set()
        used_cols: set[int] = set()
        for i, j in cand.tolist():
            if i not in used_rows and j not in used_cols:
                used_rows.add(i)
                used_cols.add(j)
                pairs.append((i, j))
    elif order == "rows":
        free = np.ones(n_cols, dtype=bool)
        for i in range(n_rows):
            available = np.where(ok[i] & free, iou[i], -np.inf)
            if n_cols and np.isfinite(available[j := int(available.argmax())]):
                free[j] = False
                pairs.append((i, j))
    else:
        raise ValueError(f"order must be 'iou' or 'rows', got {order!r}")
    rows = {i for i, _ in pairs}
    cols = {j for _, j in pairs}
    return pairs, [i for i in range(n_rows) if i not in rows], [j for j in range(n_cols) if j not in cols]

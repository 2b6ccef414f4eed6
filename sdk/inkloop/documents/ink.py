"""A real signature's pen strokes, traced from a picture of it, and drawn back into a PDF as vector ink.

Why: a signature drawn with a stylus or a mouse in a PDF viewer is not an image. It is an Ink
annotation (``/Subtype /Ink``: a list of strokes, each a list of points) or vector paths in the
page content, which is what tablets and e-signing tools write. Tests, the verdict corpus and
``inkloop synth`` need such signatures, and they must be *real* handwriting, not random scribbles,
or what they measure would not be signatures. So the strokes come from a crop of a real
signature: its ink is thresholded, thinned to a one-pixel skeleton (Zhang-Suen, in numpy: the base
install has OpenCV without its contrib thinning), the skeleton followed into polylines between
its ends and junctions, and each polyline simplified (Douglas-Peucker). The pen width is the
median stroke thickness of the crop (its distance transform on the skeleton), so the redrawn ink
has the weight of the original.

Typical use::

    strokes = trace_strokes(crop)                       # PIL image or numpy array
    box = draw_strokes(page, strokes, rect, as_annotation=True)   # an Ink annotation
    box = draw_strokes(page, strokes, rect, as_annotation=False)  # drawn paths in the content

``box`` is where the ink landed (PDF points, top-left origin): the label of the rendered page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

#: Crops smaller than this (longer side, pixels) are upscaled before thinning: a skeleton of a
#: 2-pixel stroke at scan resolution is jagged, the same stroke at twice the size traces smoothly.
_UPSCALE_BELOW = 400
#: The thinnest pen :func:`draw_strokes` draws (PDF points): thinner ink vanishes at screen resolution.
MIN_PEN = 0.4


@dataclass(frozen=True)
class Strokes:
    """Pen strokes in the crop's pixel frame (x right, y down).

    ``paths``: one ``(N, 2)`` float array per stroke (N ≥ 2); ``width``: the pen width in crop
    pixels; ``size``: the crop's ``(width, height)``.
    """

    paths: tuple[np.ndarray, ...]
    width: float
    size: tuple[int, int]

    def ink_box(self) -> tuple[float, float, float, float]:
        """The strokes' bounding box in crop pixels, pen width included."""
        return stroke_box(self.paths, self.width)

    def fit(
        self, rect: tuple[float, float, float, float]
    ) -> tuple[list[list[tuple[float, float]]], float, tuple[float, float, float, float]]:
        """The strokes scaled (aspect kept) and centred into ``rect`` (x0, y0, x1, y1).

        Returns the strokes as point lists, the pen width and the box the ink covers, all in
        ``rect``'s units.
        """
        bx0, by0, bx1, by1 = self.ink_box()
        x0, y0, x1, y1 = rect
        s = min((x1 - x0) / max(bx1 - bx0, 1e-6), (y1 - y0) / max(by1 - by0, 1e-6))
        ox = x0 + ((x1 - x0) - (bx1 - bx0) * s) / 2 - bx0 * s
        oy = y0 + ((y1 - y0) - (by1 - by0) * s) / 2 - by0 * s
        strokes = [[(float(ox + x * s), float(oy + y * s)) for x, y in p] for p in self.paths]
        box = (ox + bx0 * s, oy + by0 * s, ox + bx1 * s, oy + by1 * s)
        return strokes, self.width * s, box


def stroke_box(
    paths: Sequence[Sequence[tuple[float, float]]] | Sequence[np.ndarray], pen: float
) -> tuple[float, float, float, float]:
    """The box that strokes drawn with a ``pen`` this wide cover: their points' extent, grown by
    half the pen on every side (round caps reach that far past a stroke's end)."""
    pts = np.concatenate([np.asarray(p).reshape(-1, 2) for p in paths])  # in the paths' own dtype
    h = pen / 2
    return (
        float(pts[:, 0].min() - h),
        float(pts[:, 1].min() - h),
        float(pts[:, 0].max() + h),
        float(pts[:, 1].max() + h),
    )


def _gray(image: Any) -> np.ndarray:
    """uint8 grey from a PIL image or an array (grey, RGB, RGBA: transparency is paper)."""
    arr = np.asarray(image.convert("RGBA") if hasattr(image, "convert") else image)
    if arr.ndim == 2:
        return arr.astype(np.uint8)
    if arr.shape[2] == 4:
        alpha = arr[:, :, 3:4].astype(np.float32) / 255.0
        rgb = arr[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        arr = rgb.astype(np.uint8)
    return cv2.cvtColor(arr[:, :, :3], cv2.COLOR_RGB2GRAY)


def ink_mask(image: Any) -> np.ndarray:
    """Where the ink is (bool): Otsu's threshold on the blurred crop; specks removed."""
    gray = _gray(image)
    blur = cv2.GaussianBlur(gray, (3, 3), 0)
    _thr, mask = cv2.threshold(blur, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    if int(blur.max()) - int(blur.min()) < 40:  # no contrast: no ink to find
        return np.zeros(gray.shape, bool)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    min_area = max(4, int(0.0002 * gray.size))
    keep = np.zeros(n, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
    return keep[labels]


def thin(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning of a bool mask to one-pixel-wide lines (bool)."""
    img = np.pad(mask.astype(np.uint8), 1)
    while True:
        changed = False
        for step in (0, 1):
            c = img[1:-1, 1:-1]
            p2, p3, p4 = img[:-2, 1:-1], img[:-2, 2:], img[1:-1, 2:]
            p5, p6, p7 = img[2:, 2:], img[2:, 1:-1], img[2:, :-2]
            p8, p9 = img[1:-1, :-2], img[:-2, :-2]
            ring = (p2, p3, p4, p5, p6, p7, p8, p9, p2)
            b = sum(p.astype(np.int16) for p in ring[:8])
            a = sum(((ring[i] == 0) & (ring[i + 1] == 1)).astype(np.int16) for i in range(8))
            if step == 0:
                cond = (p2 * p4 * p6 == 0) & (p4 * p6 * p8 == 0)
            else:
                cond = (p2 * p4 * p8 == 0) & (p2 * p6 * p8 == 0)
            drop = (c == 1) & (b >= 2) & (b <= 6) & (a == 1) & cond
            if drop.any():
                c[drop] = 0
                changed = True
        if not changed:
            return img[1:-1, 1:-1].astype(bool)


_NEIGHBOURS = ((0, 1), (1, 0), (0, -1), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1))  # 4-connected first


def _follow(skeleton: np.ndarray) -> list[list[tuple[int, int]]]:
    """The skeleton as polylines (lists of (row, col)): from each end or junction to the next, then loops."""
    on = {(int(r), int(c)) for r, c in zip(*np.nonzero(skeleton), strict=True)}

    def neighbours(p: tuple[int, int]) -> list[tuple[int, int]]:
        # m-adjacency: a diagonal step counts only when no 4-neighbour already links the two
        # pixels, or every stair of a thinned diagonal line would be a three-way junction
        r, c = p
        out = []
        for dr, dc in _NEIGHBOURS:
            q = (r + dr, c + dc)
            if q in on and not (dr and dc and ((r + dr, c) in on or (r, c + dc) in on)):
                out.append(q)
        return out

    degree = {p: len(neighbours(p)) for p in on}
    nodes = [p for p in sorted(on) if degree[p] != 2]
    used: set[frozenset[tuple[int, int]]] = set()  # skeleton edges already in a polyline
    lines: list[list[tuple[int, int]]] = []

    def walk(start: tuple[int, int], nxt: tuple[int, int]) -> list[tuple[int, int]]:
        line = [start]
        prev, cur = start, nxt
        used.add(frozenset((prev, cur)))
        while True:
            line.append(cur)
            if degree[cur] != 2 or cur == start:
                return line
            step = [q for q in neighbours(cur) if q != prev and frozenset((cur, q)) not in used]
            if not step:
                return line
            prev, cur = cur, step[0]
            used.add(frozenset((prev, cur)))

    for node in nodes:
        for q in neighbours(node):
            if frozenset((node, q)) not in used:
                lines.append(walk(node, q))
    for p in sorted(on):  # closed loops (an "o", a looped capital) have no end to start from
        if degree[p] == 2:
            for q in neighbours(p):
                if frozenset((p, q)) not in used:
                    lines.append(walk(p, q))
        elif degree[p] == 0:
            lines.append([p, p])  # a dot: the pen touched and lifted
    return lines


def _free_ends(skeleton: np.ndarray) -> set[tuple[int, int]]:
    """Skeleton pixels with one 8-neighbour: where a stroke (or a spur) ends."""
    k = np.ones((3, 3), np.float32)
    k[1, 1] = 0
    n = cv2.filter2D(skeleton.astype(np.float32), -1, k, borderType=cv2.BORDER_CONSTANT)
    return {(int(r), int(c)) for r, c in zip(*np.nonzero(skeleton & (n <= 1)), strict=True)}


def trace_strokes(image: Any, epsilon: float = 0.7, min_length: float = 3.0) -> Strokes:
    """The pen strokes of the signature in ``image`` (a crop: PIL image or array, grey/RGB/RGBA).

    ``epsilon``: the Douglas-Peucker tolerance in crop pixels; strokes shorter than
    ``min_length`` crop pixels (skeleton spurs, specks) are dropped unless they are the whole
    mark. Raises ``ValueError`` when the crop holds no ink (a blank or uniform picture).
    """
    gray = _gray(image)
    h0, w0 = gray.shape
    k = 2.0 if max(h0, w0) < _UPSCALE_BELOW else 1.0
    if k != 1.0:
        gray = cv2.resize(gray, (round(w0 * k), round(h0 * k)), interpolation=cv2.INTER_CUBIC)
    mask = ink_mask(gray)
    if not mask.any():
        raise ValueError(f"no ink found in the {w0}×{h0} crop (blank or without contrast)")
    skeleton = thin(mask)
    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
    # the distance to paper at the skeleton is half the stroke plus half a pixel of the mask's
    # own edge: twice it, less one pixel, is the stroke's width
    width = max(1.0, float(2.0 * np.median(dist[skeleton])) - 1.0) / k if skeleton.any() else 1.0
    paths: list[np.ndarray] = []
    spur: list[bool] = []  # a short line with a free end is a thinning artefact, not a stroke
    ends = _free_ends(skeleton)
    for line in _follow(skeleton):
        pts = np.array([(c, r) for r, c in line], np.float32).reshape(-1, 1, 2)
        simple = cv2.approxPolyDP(pts, epsilon * k, False).reshape(-1, 2) / k
        if len(simple) == 1:
            simple = np.vstack([simple, simple])
        paths.append(simple.astype(np.float32))
        spur.append(line[0] in ends or line[-1] in ends)
    lengths = [float(np.linalg.norm(np.diff(p, axis=0), axis=1).sum()) for p in paths]
    kept = tuple(p for p, n, s in zip(paths, lengths, spur, strict=True) if n >= min_length or not s)
    if not kept:
        kept = (paths[int(np.argmax(lengths))],)
    return Strokes(kept, max(width, 0.5), (w0, h0))


def draw_strokes(
    page: Any,
    strokes: Strokes,
    rect: tuple[float, float, float, float],
    as_annotation: bool,
    color: tuple[float, float, float] = (0.05, 0.05, 0.3),
    width_scale: float = 1.0,
) -> tuple[float, float, float, float]:
    """Draw ``strokes`` into ``rect`` (PDF points, top-left origin) of a pymupdf ``page``.

    ``as_annotation``: an Ink annotation (what a viewer's "draw" tool writes); otherwise stroked
    paths in the page content (what a tablet app that flattens its ink writes). Round caps and
    joins, as a pen leaves them. ``width_scale`` thins or thickens the traced pen (never below
    :data:`MIN_PEN`). Returns the box the ink covers, with the pen it is drawn with.
    """
    import pymupdf

    points, pen, _traced_box = strokes.fit(rect)
    pen = max(MIN_PEN, pen * width_scale)
    box = stroke_box(points, pen)  # not fit's box: that one has the traced pen, before width_scale
    if page.rotation:  # pymupdf places both in the unrotated page frame
        m = page.derotation_matrix
        points = [[tuple(pymupdf.Point(p) * m) for p in line] for line in points]
    if as_annotation:
        annot = page.add_ink_annot(points)
        annot.set_colors(stroke=color)
        annot.set_border(width=pen)
        annot.update()
    else:
        shape = page.new_shape()
        for line in points:
            shape.draw_polyline(line)
        shape.finish(color=color, width=pen, closePath=False, lineCap=1, lineJoin=1)
        shape.commit()
    return box

"""Page pixels ⇄ Label Studio rectangle values (percent of the image, top-left corner, rotation).

Label Studio rotates a rectangle around its top-left corner. A rotated region cannot be an
axis-aligned box without loss, so :func:`from_labelstudio` returns the axis-aligned box that
encloses the rotated one and callers can see ``rotation`` to decide (the review pull records it).
"""

from __future__ import annotations

import math
from typing import Any

from inkloop.types import BoxXYXY


def to_labelstudio(xyxy: BoxXYXY, width: float, height: float) -> dict[str, float]:
    x0, y0, x1, y1 = xyxy
    return {
        "x": x0 / width * 100.0,
        "y": y0 / height * 100.0,
        "width": (x1 - x0) / width * 100.0,
        "height": (y1 - y0) / height * 100.0,
        "rotation": 0.0,
    }


def from_labelstudio(value: dict[str, Any], width: float, height: float) -> BoxXYXY:
    """The box in pixels; for a rotated region, the axis-aligned box that encloses it."""
    x = float(value["x"]) / 100.0 * width
    y = float(value["y"]) / 100.0 * height
    w = float(value["width"]) / 100.0 * width
    h = float(value["height"]) / 100.0 * height
    rot = float(value.get("rotation") or 0.0) % 360.0
    if rot == 0.0:
        return (x, y, x + w, y + h)
    a = math.radians(rot)
    c, s = math.cos(a), math.sin(a)
    corners = [(0.0, 0.0), (w, 0.0), (w, h), (0.0, h)]
    xs = [x + cx * c - cy * s for cx, cy in corners]
    ys = [y + cx * s + cy * c for cx, cy in corners]
    return (min(xs), min(ys), max(xs), max(ys))

"""Page pixels ⇄ FiftyOne bounding boxes (``[x, y, w, h]`` of the top-left corner, normalized)."""

from __future__ import annotations

from inkloop.types import BoxXYXY


def to_fiftyone(xyxy: BoxXYXY, width: float, height: float) -> list[float]:
    x0, y0, x1, y1 = xyxy
    return [x0 / width, y0 / height, (x1 - x0) / width, (y1 - y0) / height]


def from_fiftyone(box: list[float] | tuple[float, ...], width: float, height: float) -> BoxXYXY:
    x, y, w, h = (float(v) for v in box)
    return (x * width, y * height, (x + w) * width, (y + h) * height)

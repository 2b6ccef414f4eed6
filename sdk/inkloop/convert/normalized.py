"""Page pixels ⇄ normalized ``xyxy`` in [0, 1], the pivot every other format is built on."""

from __future__ import annotations

from inkloop.types import BoxXYXY


def to_normalized(xyxy: BoxXYXY, width: float, height: float) -> BoxXYXY:
    """Divide by the page size, so a box survives re-rendering at another DPI."""
    if width <= 0 or height <= 0:
        raise ValueError(f"page size must be positive, got {width}x{height}")
    x0, y0, x1, y1 = xyxy
    return (x0 / width, y0 / height, x1 / width, y1 / height)


def from_normalized(nxyxy: BoxXYXY, width: float, height: float) -> BoxXYXY:
    """Scale a normalized box back to pixels of a page ``width``×``height``."""
    x0, y0, x1, y1 = nxyxy
    return (x0 * width, y0 * height, x1 * width, y1 * height)

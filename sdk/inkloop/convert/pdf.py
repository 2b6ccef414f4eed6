"""Page pixels at a render DPI ⇄ PDF points (1/72 inch, origin top-left as pymupdf uses it)."""

from __future__ import annotations

from inkloop.types import BoxXYXY

POINTS_PER_INCH = 72.0


def pixels_to_points(xyxy: BoxXYXY, dpi: float) -> BoxXYXY:
    f = POINTS_PER_INCH / dpi
    x0, y0, x1, y1 = xyxy
    return (x0 * f, y0 * f, x1 * f, y1 * f)


def points_to_pixels(xyxy: BoxXYXY, dpi: float) -> BoxXYXY:
    f = dpi / POINTS_PER_INCH
    x0, y0, x1, y1 = xyxy
    return (x0 * f, y0 * f, x1 * f, y1 * f)

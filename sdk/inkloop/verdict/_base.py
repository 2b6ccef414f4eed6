"""The verdict stage's only imports from the rest of inkloop (the low layers), in one place.

When the SDK is restructured into stage subpackages these names move; keeping every such import
here means one file changes at merge time. One exception, on purpose: ``dates.py`` imports the
documents stage's opening and OCR inside the function that reads a page (they load OpenCV and
RapidOCR, which most verdicts never need).
"""

from __future__ import annotations

from inkloop.convert.pdf import pixels_to_points, points_to_pixels
from inkloop.models.references import Thresholds
from inkloop.types import BoxXYXY, Detection, Page, PageResult

__all__ = ["BoxXYXY", "Detection", "Page", "PageResult", "Thresholds", "pixels_to_points", "points_to_pixels"]

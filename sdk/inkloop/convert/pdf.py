"""Page pixels at a render DPI ⇄ PDF points (1/72 inch, origin top-left as pymupdf uses it).

The conversion itself lives in :mod:`inkloop.types` (a ``Detection`` serialises its PDF-point box);
this module is its home for callers converting to and from the PDF format.
"""

from __future__ import annotations

from inkloop.types import POINTS_PER_INCH, pixels_to_points, points_to_pixels

__all__ = ["POINTS_PER_INCH", "pixels_to_points", "points_to_pixels"]

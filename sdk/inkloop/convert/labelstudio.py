"""Page pixels ⇄ Label Studio rectangle values (percent of the image, top-left corner, rotation).

Label Studio rotates a rectangle around its top-left corner. A rotated region cannot be an
axis-aligned box without loss, so :func:`from_labelstudio` returns the axis-aligned box that
encloses the rotated one and callers can see ``rotation`` to decide (the review pull records it).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from typing import Any

from inkloop.types import BoxXYXY, Detection


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


def prediction(
    detections: Sequence[Detection],
    width: int,
    height: int,
    model_version: str,
    from_name: str = "label",
    to_name: str = "image",
) -> dict[str, Any]:
    """One Label Studio prediction for a page: the model's boxes as rectangle regions with their
    scores, and ``model_version``.

    The one conversion behind every prediction Label Studio shows: tasks pushed by
    ``inkloop review push`` and answers of the ML backend (``inkloop review backend``), so a
    reviewer sees the same regions, scores and version label whichever way they came. The
    prediction's own score is the lowest box score (the page is as uncertain as its weakest
    box; 1.0 with no box), which is what Label Studio sorts and filters tasks by.
    """
    regions = []
    for d in detections:
        value: dict[str, Any] = dict(to_labelstudio(d.xyxy, width, height))
        value["rectanglelabels"] = [d.label]
        regions.append(
            {
                "id": uuid.uuid4().hex[:10],
                "from_name": from_name,
                "to_name": to_name,
                "type": "rectanglelabels",
                "original_width": width,
                "original_height": height,
                "image_rotation": 0,
                "value": value,
                "score": round(float(d.score), 5),
            }
        )
    page_score = min((d.score for d in detections), default=1.0)
    return {"model_version": model_version, "score": round(float(page_score), 5), "result": regions}

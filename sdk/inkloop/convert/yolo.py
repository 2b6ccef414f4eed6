"""Page pixels ⇄ YOLO label lines (``cls cx cy w h``, normalized to the image size)."""

from __future__ import annotations

from inkloop.types import BoxXYXY


def to_yolo(xyxy: BoxXYXY, width: float, height: float) -> tuple[float, float, float, float]:
    """Centre and size, each divided by the image size, as ultralytics expects."""
    x0, y0, x1, y1 = xyxy
    return ((x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height)


def from_yolo(cxcywh: tuple[float, float, float, float], width: float, height: float) -> BoxXYXY:
    cx, cy, w, h = cxcywh
    return ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)


def format_line(class_id: int, cxcywh: tuple[float, float, float, float]) -> str:
    """One label line; 6 decimals keep a 10 000 px page exact to 0.01 px."""
    return f"{class_id} " + " ".join(f"{v:.6f}" for v in cxcywh)


def parse_line(line: str) -> tuple[int, tuple[float, float, float, float]]:
    """Parse ``cls cx cy w h``; raises ValueError naming the bad line."""
    parts = line.split()
    if len(parts) != 5:
        raise ValueError(f"YOLO label line needs 5 fields, got {len(parts)}: {line!r}")
    cls = int(float(parts[0]))
    cx, cy, w, h = (float(v) for v in parts[1:])
    return cls, (cx, cy, w, h)


def read_labels(text: str) -> list[tuple[int, tuple[float, float, float, float]]]:
    return [parse_line(ln) for ln in text.splitlines() if ln.strip()]

"""Which pages a model gets wrong: the ground truth routing is measured against."""

from __future__ import annotations

from inkloop.detection.routing import match_boxes
from inkloop.types import Detection


def page_has_error(pred: list[tuple[float, ...]], gt: list[tuple[float, ...]], iou: float = 0.5) -> bool:
    """True when a true box is missed or a predicted box matches no true box (greedy, IoU ≥ 0.5)."""
    pairs, _, _ = match_boxes(
        [Detection("signature", 1.0, tuple(b)) for b in pred],  # type: ignore[arg-type]
        [Detection("signature", 1.0, tuple(b)) for b in gt],  # type: ignore[arg-type]
        iou,
    )
    return len(pairs) != len(pred) or len(pairs) != len(gt)

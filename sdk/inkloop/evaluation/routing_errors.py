"""Which pages a model gets wrong: the ground truth routing is measured against."""

from __future__ import annotations

from inkloop.geometry import box_iou, match_boxes


def page_has_error(pred: list[tuple[float, ...]], gt: list[tuple[float, ...]], iou: float = 0.5) -> bool:
    """True when a true box is missed or a predicted box matches no true box (greedy, IoU ≥ 0.5)."""
    pairs, _, _ = match_boxes(box_iou(pred, gt, eps=0.0), iou)
    return len(pairs) != len(pred) or len(pairs) != len(gt)

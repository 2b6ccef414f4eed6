"""Decoding YOLOv8 heads and non-maximum suppression, vectorized in numpy.

Mirrors ultralytics' ``non_max_suppression`` (class-aware via coordinate offsets, greedy IoU
suppression, ``max_det``) so results agree with ``YOLO(...).predict`` on the same tensor.
"""

from __future__ import annotations

import numpy as np

from inkloop.geometry import box_iou

MAX_WH = 7680  # class offset, as in ultralytics


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS; returns kept indices ordered by descending score."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        if order.size == 1:
            break
        # the plain ratio in the boxes' own dtype, as ultralytics' (torchvision's) NMS
        ious = box_iou(boxes[i], boxes[order[1:]], eps=0.0, dtype=boxes.dtype)[0]
        order = order[1:][ious <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def decode(
    pred: np.ndarray, conf: float, iou: float, max_det: int = 300
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's raw head ``(4 + nc, anchors)`` → (xyxy boxes, scores, class ids) after NMS."""
    scores_all = pred[4:]
    cls = scores_all.argmax(axis=0)
    score = scores_all[cls, np.arange(scores_all.shape[1])]
    mask = score > conf
    if not mask.any():
        empty = np.zeros((0, 4), np.float32)
        return empty, np.zeros(0, np.float32), np.zeros(0, np.int64)
    cx, cy, w, h = pred[:4, mask]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    score, cls = score[mask], cls[mask]
    if score.size > 30000:  # ultralytics' max_nms
        top = np.argsort(-score)[:30000]
        boxes, score, cls = boxes[top], score[top], cls[top]
    keep = nms(boxes + cls[:, None] * MAX_WH, score, iou)[:max_det]
    return boxes[keep], score[keep], cls[keep]

"""The metric primitives, as ultralytics computes them: greedy matching at ten IoU thresholds,
the precision envelope, 101-point COCO interpolation, and the operating and best-F1 thresholds.

Pure numpy, on predictions from anywhere (:mod:`inkloop.evaluation.report` pools them per image).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: The ten IoU thresholds of mAP50-95 (COCO), as ultralytics' ``DetectionValidator.iouv``.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
#: Score threshold for collecting predictions: ultralytics' ``val`` default, so low-score boxes
#: still count towards the precision–recall curve.
EVAL_CONF = 0.001
_AP_X = np.linspace(0, 1, 101)
_EPS = 1e-16
_TRAPZ = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 has only trapz


def match_predictions(
    pred_classes: np.ndarray,
    true_classes: np.ndarray,
    iou: np.ndarray,
    thresholds: np.ndarray = IOU_THRESHOLDS,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching, as ultralytics' ``DetectionValidator.match_predictions``.

    Predictions must be in descending score order; ``iou`` is ``(n_true, n_pred)``. Each
    prediction, in turn, takes the unclaimed same-class target with the highest IoU, separately at
    every IoU threshold. Returns ``correct`` ``(n_pred, T)`` and ``assigned`` ``(n_pred, T)``: the
    target index each prediction matched, or -1 (for per-image error reports).
    """
    n_pred, n_t = len(pred_classes), len(thresholds)
    correct = np.zeros((n_pred, n_t), dtype=bool)
    assigned = np.full((n_pred, n_t), -1, dtype=np.int64)
    if n_pred == 0 or len(true_classes) == 0:
        return correct, assigned
    iou = iou * (np.asarray(true_classes)[:, None] == np.asarray(pred_classes)[None, :])
    matched = np.zeros((iou.shape[0], n_t), dtype=bool)
    cols = np.arange(n_t)
    for j in np.flatnonzero((iou >= thresholds.min()).any(0)):
        available = np.where(matched, 0, iou[:, j, None])
        k = available.argmax(0)
        correct[j] = available[k, cols] >= thresholds
        matched[k, cols] |= correct[j]
        assigned[j] = np.where(correct[j], k, -1)
    return correct, assigned


def compute_ap(recall: np.ndarray, precision: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AP as ultralytics' ``compute_ap``: monotone precision envelope, 101-point COCO integration.

    Returns (AP, envelope precision, recall with sentinels) — the last two draw the PR curve.
    """
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    mrec = np.concatenate(([0.0], recall, [recall[-1] if len(recall) else 1.0], [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0], [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    ap = float(_TRAPZ(np.interp(_AP_X, mrec, mpre), _AP_X))
    return ap, mpre, mrec


def _smooth(y: np.ndarray, f: float = 0.05) -> np.ndarray:
    """Box filter of fraction ``f``, as ultralytics' ``smooth`` (used to pick its P and R)."""
    nf = round(len(y) * f * 2) // 2 + 1
    p = np.ones(nf // 2)
    yp = np.concatenate((p * y[0], y, p * y[-1]), 0)
    return np.convolve(yp, np.ones(nf) / nf, mode="valid")


@dataclass
class APResult:
    """Per-class average precision and the curves behind it."""

    classes: np.ndarray  # class ids that have ground truth (the classes mAP averages over)
    ap: np.ndarray  # (nc, T)
    n_true: np.ndarray  # (nc,) ground-truth boxes per class
    pr_recall: np.ndarray  # (1000,) recall axis of the plotted curves
    pr_precision: np.ndarray  # (nc, 1000) precision envelope at IoU 0.5
    ul_precision: float  # ultralytics' reported P (at its smoothed max-F1 score)
    ul_recall: float  # ultralytics' reported R


def ap_per_class(tp: np.ndarray, conf: np.ndarray, pred_cls: np.ndarray, target_cls: np.ndarray) -> APResult:
    """AP per class at every IoU threshold, as ultralytics' ``ap_per_class``.

    Only classes with ground truth count (predictions of a class absent from the labels are
    ignored), and mAP is the plain mean over those classes — both exactly as ultralytics.
    """
    i = np.argsort(-conf)  # ultralytics' (unstable) sort, so ties order the same way
    tp, conf, pred_cls = tp[i], conf[i], pred_cls[i]
    unique_classes, nt = np.unique(target_cls, return_counts=True)
    nc = unique_classes.shape[0]
    x = np.linspace(0, 1, 1000)
    n_t = tp.shape[1] if tp.ndim == 2 else len(IOU_THRESHOLDS)
    ap = np.zeros((nc, n_t))
    p_curve, r_curve = np.zeros((nc, 1000)), np.zeros((nc, 1000))
    prec_values = np.zeros((max(nc, 1), 1000))
    for ci, c in enumerate(unique_classes):
        sel = pred_cls == c
        n_l, n_p = nt[ci], sel.sum()
        if n_p == 0 or n_l == 0:
            continue
        fpc = (1 - tp[sel]).cumsum(0)
        tpc = tp[sel].cumsum(0)
        recall = tpc / (n_l + _EPS)
        r_curve[ci] = np.interp(-x, -conf[sel], recall[:, 0], left=0)
        precision = tpc / (tpc + fpc)
        p_curve[ci] = np.interp(-x, -conf[sel], precision[:, 0], left=1)
        for j in range(n_t):
            ap[ci, j], mpre, mrec = compute_ap(recall[:, j], precision[:, j])
            if j == 0:
                prec_values[ci] = np.interp(x, mrec, mpre)
    f1_curve = 2 * p_curve * r_curve / (p_curve + r_curve + _EPS)
    k = int(_smooth(f1_curve.mean(0), 0.1).argmax()) if nc else 0
    ul_p = float(p_curve[:, k].mean()) if nc else 0.0
    ul_r = float(r_curve[:, k].mean()) if nc else 0.0
    return APResult(unique_classes.astype(np.int64), ap, nt, x, prec_values[:nc], ul_p, ul_r)


@dataclass
class ThresholdChoice:
    """Score thresholds worth putting on a card, with what they give at IoU 0.5.

    ``threshold`` keeps boxes scoring strictly above it (as the detector does); it is the midpoint
    between the last kept and the first dropped score, so it does not sit on one image's score.
    """

    threshold: float
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _prf(tp: int, fp: int, n_true: int) -> tuple[float, float, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / n_true if n_true else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f1


def counts_at(
    tp50: np.ndarray, conf: np.ndarray, n_true: int, threshold: float, cut: np.ndarray | None = None
) -> ThresholdChoice:
    """Precision, recall and F1 at IoU 0.5 for the boxes scoring above ``threshold``.

    Valid because matching is greedy in score order: the boxes above a threshold match exactly as
    they would if the lower ones had never been predicted (within each image, so also when
    ``cut`` gives each box its own image's threshold, as per-domain thresholds do; ``threshold``
    is then only the label recorded).
    """
    keep = conf > (threshold if cut is None else cut)
    tp = int(tp50[keep].sum())
    fp = int(keep.sum()) - tp
    p, r, f1 = _prf(tp, fp, n_true)
    return ThresholdChoice(float(threshold), p, r, f1, tp, fp, n_true - tp)


def choose_threshold(
    tp50: np.ndarray,
    conf: np.ndarray,
    n_true: int,
    target_recall: float | None = None,
    floor: float = EVAL_CONF,
) -> tuple[ThresholdChoice, ThresholdChoice | None]:
    """The score threshold with the best F1, and (if asked) the one reaching ``target_recall``
    with the best precision (``None`` when no threshold reaches it).

    This picks a card's operating threshold from a validation run. Among equal F1 (or equal
    precision) the higher threshold wins: fewer boxes for the same quality. Only cut points between
    distinct scores are considered, since tied scores cannot be separated by any threshold.
    """
    tp50 = np.asarray(tp50, dtype=bool)
    conf = np.asarray(conf, dtype=np.float64)
    if conf.size == 0:
        empty = ThresholdChoice(floor, 0.0, 0.0, 0.0, 0, 0, n_true)
        return empty, None
    order = np.argsort(-conf, kind="stable")
    c, t = conf[order], tp50[order]
    tpc = np.cumsum(t)
    k = np.arange(1, len(c) + 1)
    ends = np.flatnonzero(np.append(c[:-1] > c[1:], True))  # last index of each tie group
    nxt = np.append(c[1:], min(floor, c[-1]))
    thr = (c + nxt) / 2
    prec = tpc / k
    rec = tpc / n_true if n_true else np.zeros_like(prec)
    f1 = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, _EPS), 0.0)

    def make(i: int) -> ThresholdChoice:
        tp_i = int(tpc[i])
        p, r, f = _prf(tp_i, int(k[i]) - tp_i, n_true)
        return ThresholdChoice(float(thr[i]), p, r, f, tp_i, int(k[i]) - tp_i, n_true - tp_i)

    best = ends[np.argmax(f1[ends])]  # argmax takes the first = highest threshold on ties
    at_recall: ThresholdChoice | None = None
    if target_recall is not None:
        ok = ends[rec[ends] >= target_recall - 1e-12]
        if ok.size:
            at_recall = make(int(ok[np.argmax(prec[ok])]))
    return make(int(best)), at_recall

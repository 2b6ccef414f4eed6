"""Scoring predictions against ground truth: the report (``report.json``), the per-image errors
(``errors.jsonl``), and the same numbers per group of images and per domain.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from inkloop.evaluation.grouping import split_by_domain, split_by_pattern
from inkloop.evaluation.metrics import (
    EVAL_CONF,
    IOU_THRESHOLDS,
    ThresholdChoice,
    ap_per_class,
    choose_threshold,
    counts_at,
    match_predictions,
)
from inkloop.geometry import box_iou
from inkloop.models.references import Thresholds


@dataclass
class ImagePredictions:
    """Ground truth and predictions of one image (any source), in that image's pixels."""

    path: str
    gt_boxes: np.ndarray  # (M, 4)
    gt_classes: np.ndarray  # (M,)
    boxes: np.ndarray  # (N, 4)
    scores: np.ndarray  # (N,)
    classes: np.ndarray  # (N,)
    domain: str | None = None  # the image's domain (``scan``, ``digital``, …), None: unknown


@dataclass
class ImageErrors:
    """One line of ``errors.jsonl``: what went wrong on an image at the operating threshold."""

    path: str
    n_gt: int
    tp: int
    missed: list[dict[str, Any]]
    false: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EvalReport:
    """Everything ``inkloop evaluate`` measured; :meth:`to_dict` is ``report.json``."""

    model_version: str
    model_ref: str
    data: str
    split: str
    n_images: int
    n_gt: int
    n_predictions: int
    eval_conf: float
    nms_iou: float
    operating_threshold: float
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int
    map50: float
    map50_95: float
    per_class: dict[str, dict[str, float]]
    best_f1: ThresholdChoice
    target_recall: float | None = None
    at_target_recall: ThresholdChoice | None = None
    ultralytics_style: dict[str, float] = field(default_factory=dict)
    latency_ms_per_image: float | None = None
    seconds: float | None = None
    errors_path: str | None = None
    pr_curve_path: str | None = None
    pr_curve: dict[str, list[float]] = field(default_factory=dict, repr=False)
    #: The regular expression that split images into groups, and each group's numbers
    #: (:func:`metrics_by_group`).
    group_by: str | None = None
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The same numbers per domain (``scan``, ``digital``; :data:`UNKNOWN_DOMAIN` for images whose
    #: dataset records none), filled whenever the data records domains (:func:`metrics_by_domain`).
    domains: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Domains whose images were cut at their own operating threshold (a card's
    #: ``domain_thresholds``); every other image at ``operating_threshold``.
    domain_thresholds: dict[str, float] = field(default_factory=dict)

    @property
    def thresholds(self) -> Thresholds:
        """Where each image was cut, per domain."""
        return Thresholds(self.operating_threshold, self.domain_thresholds)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "pr_curve"}
        d["best_f1"] = self.best_f1.to_dict()
        d["at_target_recall"] = self.at_target_recall.to_dict() if self.at_target_recall else None
        for k in ("precision", "recall", "f1", "map50", "map50_95"):
            d[k] = round(d[k], 6)
        return d


def _stack(
    images: Sequence[ImagePredictions],
) -> tuple[list[ImagePredictions], list[np.ndarray], list[np.ndarray], dict[str, np.ndarray]]:
    """Match every image (predictions sorted by descending score, as NMS leaves them, on a copy);
    returns the sorted images, per-image ``correct`` and ``assigned``, and the pooled stats."""
    ordered: list[ImagePredictions] = []
    corrects, assigns = [], []
    tps, confs, pcls, tcls = [], [], [], []
    for im in images:
        order = np.argsort(-np.asarray(im.scores), kind="stable")
        srt = replace(im, boxes=im.boxes[order], scores=im.scores[order], classes=im.classes[order])
        ordered.append(srt)
        iou = box_iou(srt.gt_boxes, srt.boxes)
        correct, assigned = match_predictions(srt.classes, srt.gt_classes, iou)
        corrects.append(correct)
        assigns.append(assigned)
        tps.append(correct)
        confs.append(np.asarray(srt.scores, dtype=np.float64))
        pcls.append(np.asarray(srt.classes, dtype=np.int64))
        tcls.append(np.asarray(srt.gt_classes, dtype=np.int64))
    pooled = {
        "tp": np.concatenate(tps) if tps else np.zeros((0, len(IOU_THRESHOLDS)), bool),
        "conf": np.concatenate(confs) if confs else np.zeros(0),
        "pred_cls": np.concatenate(pcls) if pcls else np.zeros(0, np.int64),
        "target_cls": np.concatenate(tcls) if tcls else np.zeros(0, np.int64),
    }
    return ordered, corrects, assigns, pooled


def image_errors(
    im: ImagePredictions,
    correct: np.ndarray,
    assigned: np.ndarray,
    threshold: float,
    class_names: Sequence[str],
) -> ImageErrors:
    """Missed ground truth and false boxes of one image at ``threshold`` (IoU 0.5)."""

    def name(c: int) -> str:
        return class_names[c] if 0 <= c < len(class_names) else str(c)

    keep = np.asarray(im.scores) > threshold
    hit = set(int(a) for a in assigned[keep, 0] if a >= 0)
    missed = [
        {"label": name(int(im.gt_classes[i])), "xyxy": [round(float(v), 2) for v in im.gt_boxes[i]]}
        for i in range(len(im.gt_boxes))
        if i not in hit
    ]
    false = [
        {
            "label": name(int(im.classes[j])),
            "score": round(float(im.scores[j]), 5),
            "xyxy": [round(float(v), 2) for v in im.boxes[j]],
        }
        for j in np.flatnonzero(keep & ~correct[:, 0])
    ]
    return ImageErrors(im.path, len(im.gt_boxes), len(hit), missed, false)


def compute_metrics(
    images: Sequence[ImagePredictions],
    class_names: Sequence[str],
    operating_threshold: float | Thresholds,
    target_recall: float | None = 0.9,
    *,
    model_version: str = "",
    model_ref: str = "",
    data: str = "",
    split: str = "",
    eval_conf: float = EVAL_CONF,
    nms_iou: float = 0.7,
    by_domain: bool = True,
) -> tuple[EvalReport, list[ImageErrors]]:
    """Score predictions against ground truth: the report and the per-image errors.

    Precision/recall/F1 at the operating threshold pool all classes (one class in practice);
    mAP is the per-class mean, as ultralytics. ``operating_threshold`` may give domains their
    own (:class:`~inkloop.models.references.Thresholds`, a card's): each image is then cut at
    its domain's, as detection cuts its pages. When images carry a domain (and ``by_domain``),
    ``report.domains`` scores each domain on its own (:func:`metrics_by_domain`).
    """
    th = Thresholds.of_value(operating_threshold)
    ordered, corrects, assigns, st = _stack(images)
    apr = ap_per_class(st["tp"], st["conf"], st["pred_cls"], st["target_cls"])
    tp50 = st["tp"][:, 0] if len(st["tp"]) else np.zeros(0, bool)
    n_gt = len(st["target_cls"])
    cut = None
    if th.by_domain:  # each box at its image's domain's threshold
        cut = np.concatenate([np.full(len(im.scores), th.of(im.domain)) for im in ordered] or [np.zeros(0)])
    op = counts_at(tp50, st["conf"], n_gt, th.default, cut)
    best, at_recall = choose_threshold(tp50, st["conf"], n_gt, target_recall, floor=eval_conf)
    per_class = {
        (class_names[c] if c < len(class_names) else str(c)): {
            "ap50": round(float(apr.ap[i, 0]), 6),
            "ap50_95": round(float(apr.ap[i].mean()), 6),
            "n_gt": int(apr.n_true[i]),
        }
        for i, c in enumerate(apr.classes)
    }
    map50 = float(apr.ap[:, 0].mean()) if len(apr.classes) else 0.0
    map50_95 = float(apr.ap.mean()) if len(apr.classes) else 0.0
    pick = np.linspace(0, 999, 201).round().astype(int)  # 201 points keep report.json small
    mean_prec = apr.pr_precision.mean(0) if len(apr.classes) else np.zeros(1000)
    curve = {"recall": apr.pr_recall[pick].round(4).tolist(), "precision": mean_prec[pick].round(4).tolist()}
    report = EvalReport(
        model_version=model_version,
        model_ref=model_ref,
        data=data,
        split=split,
        n_images=len(images),
        n_gt=n_gt,
        n_predictions=len(st["conf"]),
        eval_conf=eval_conf,
        nms_iou=nms_iou,
        operating_threshold=float(th.default),
        domain_thresholds=dict(th.by_domain),
        precision=op.precision,
        recall=op.recall,
        f1=op.f1,
        tp=op.tp,
        fp=op.fp,
        fn=op.fn,
        map50=map50,
        map50_95=map50_95,
        per_class=per_class,
        best_f1=best,
        target_recall=target_recall,
        at_target_recall=at_recall,
        ultralytics_style={"precision": round(apr.ul_precision, 6), "recall": round(apr.ul_recall, 6)},
        pr_curve=curve,
    )
    if by_domain and any(im.domain is not None for im in images):
        report.domains = metrics_by_domain(images, class_names, th)
    errors = [
        image_errors(im, c, a, th.of(im.domain), class_names)
        for im, c, a in zip(ordered, corrects, assigns, strict=True)
    ]
    return report, errors


def write_errors(errors: Iterable[ImageErrors], path: str | os.PathLike[str]) -> Path:
    """errors.jsonl: one JSON object per image, images with nothing wrong included (n_gt, tp)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for e in errors:
            f.write(json.dumps(e.to_dict(), ensure_ascii=False) + "\n")
    return out


#: What :func:`metrics_by_group` and :func:`metrics_by_domain` report per group (as in
#: ``report.json``): every number the total has at the operating threshold, and the counts.
GROUP_FIELDS = (
    "n_images",
    "n_gt",
    "n_predictions",
    "map50",
    "map50_95",
    "precision",
    "recall",
    "f1",
    "tp",
    "fp",
    "fn",
)


def _score_members(
    members: dict[str, list[ImagePredictions]],
    class_names: Sequence[str],
    operating_threshold: float | Thresholds,
) -> dict[str, dict[str, Any]]:
    """Each group of images scored on its own, as if it were the whole split (sorted by name);
    every image still cut at its own domain's threshold. A group cut at one threshold records
    it (``operating_threshold``), as a domain does."""
    out: dict[str, dict[str, Any]] = {}
    th = Thresholds.of_value(operating_threshold)
    for name in sorted(members):
        d = compute_metrics(members[name], class_names, th, None, by_domain=False)[0]
        out[name] = {k: v for k, v in d.to_dict().items() if k in GROUP_FIELDS}
        cuts = {th.of(im.domain) for im in members[name]}
        if th.by_domain and len(cuts) == 1:
            out[name]["operating_threshold"] = cuts.pop()
    return out


def metrics_by_group(
    images: Sequence[ImagePredictions],
    class_names: Sequence[str],
    operating_threshold: float | Thresholds,
    pattern: str | re.Pattern[str],
) -> dict[str, dict[str, Any]]:
    """The same metrics for each group of images (by file name), e.g. per source of a pooled dataset.

    Why: a split pooled from several collections gives one mAP that hides which collection the
    model fails on, and collections differ in more than pictures: ``signatures-real`` pools
    Tobacco800 scans (tight boxes round the ink) and signatures-xc8up photos (boxes that often
    take in the printed name under a signature). A model can be fine on one and poor on the other.
    Each group is scored on its own, as if it were the whole split.
    """
    rx = re.compile(pattern) if isinstance(pattern, str) else pattern
    return _score_members(split_by_pattern(images, rx), class_names, operating_threshold)


def metrics_by_domain(
    images: Sequence[ImagePredictions],
    class_names: Sequence[str],
    operating_threshold: float | Thresholds,
) -> dict[str, dict[str, Any]]:
    """The same metrics for each domain (``scan``, ``digital``, …) of the images.

    Why beside the total, always: a model can be good on scans and miss half the signatures on
    born-digital pages, and a total over a split that is mostly scans hides it. Images without a
    recorded domain form :data:`UNKNOWN_DOMAIN`, so the domains always add up to the total.
    """
    return _score_members(split_by_domain(images), class_names, operating_threshold)

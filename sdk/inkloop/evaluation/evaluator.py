"""Evaluate a detector on a YOLO-format dataset, with the numbers ultralytics' ``val`` would give.

Why our own evaluator and not ``YOLO(...).val``: the model we ship runs through
:class:`inkloop.detection.detector.Detector` (onnxruntime, our preprocessing, our NMS), so that is the code
whose accuracy matters; we also need things ``val`` does not give — precision, recall and F1 at the
card's *operating* threshold, the threshold that should go on the card, and the list of missed and
false boxes per image for people to look at.

Why the metric code copies ultralytics' algorithm step by step (greedy matching by IoU at ten IoU
thresholds, precision envelope, 101-point COCO interpolation): model cards, training logs and the
issue tracker quote ultralytics' mAP. A number computed differently would not be comparable, and
"mAP went down" would mean nothing. ``tests/test_evaluate.py`` checks the agreement.

The metric functions are pure numpy and take predictions from anywhere (:func:`compute_metrics`),
so they can score other detectors' output, or ultralytics' own predictions, too.

One module per job, all re-exported here: :mod:`~inkloop.evaluation.loading` (the dataset split),
:mod:`~inkloop.evaluation.inference` (the detector over it), :mod:`~inkloop.evaluation.metrics`
(matching, AP, thresholds), :mod:`~inkloop.evaluation.report` (the report, errors, per group and
per domain), :mod:`~inkloop.evaluation.grouping` (which images form a group),
:mod:`~inkloop.evaluation.plots` (the PR curve). :func:`evaluate` runs them in order.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from inkloop.datasets import DatasetError
from inkloop.evaluation.domains import UNKNOWN_DOMAIN
from inkloop.evaluation.grouping import NO_GROUP, group_of
from inkloop.evaluation.inference import check_classes, predict_dataset
from inkloop.evaluation.loading import Sample, YoloDataset, label_path_for, load_dataset, load_rgb
from inkloop.evaluation.metrics import (
    EVAL_CONF,
    IOU_THRESHOLDS,
    APResult,
    ThresholdChoice,
    ap_per_class,
    choose_threshold,
    compute_ap,
    counts_at,
    match_predictions,
)
from inkloop.evaluation.plots import plot_pr_curve
from inkloop.evaluation.report import (
    GROUP_FIELDS,
    EvalReport,
    ImageErrors,
    ImagePredictions,
    compute_metrics,
    image_errors,
    metrics_by_domain,
    metrics_by_group,
    write_errors,
)
from inkloop.models.references import Thresholds

if TYPE_CHECKING:
    from inkloop.detection.detector import Detector
    from inkloop.models.references import ModelRef

__all__ = [
    "EVAL_CONF",
    "GROUP_FIELDS",
    "IOU_THRESHOLDS",
    "NO_GROUP",
    "UNKNOWN_DOMAIN",
    "APResult",
    "DatasetError",
    "EvalReport",
    "ImageErrors",
    "ImagePredictions",
    "Sample",
    "ThresholdChoice",
    "YoloDataset",
    "ap_per_class",
    "check_classes",
    "choose_threshold",
    "compute_ap",
    "compute_metrics",
    "counts_at",
    "evaluate",
    "group_of",
    "image_errors",
    "label_path_for",
    "load_dataset",
    "load_rgb",
    "match_predictions",
    "metrics_by_domain",
    "metrics_by_group",
    "plot_pr_curve",
    "predict_dataset",
    "write_errors",
]


def evaluate(
    model: str | os.PathLike[str] | ModelRef | Detector | None,
    data: str | os.PathLike[str],
    split: str = "val",
    conf: float | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    device: str = "cpu",
    batch_size: int = 4,
    target_recall: float | None = 0.9,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    plot: bool = True,
    group_by: str | None = None,
    default_domain: str | None = None,
) -> EvalReport:
    """Evaluate ``model`` (any model reference, or a :class:`Detector`) on a YOLO dataset split.

    Predictions are collected at score 0.001 with the card's NMS IoU, as ``YOLO.val`` does, so
    mAP covers the whole precision–recall curve; P/R/F1 are reported at ``conf`` (default: the
    card's operating threshold). With ``out_dir``, writes ``report.json``, ``errors.jsonl`` and
    ``pr_curve.png`` there. With ``group_by`` (a regular expression over image file names), the
    report also scores each group on its own (:func:`metrics_by_group`); when the dataset records
    domains, each domain is scored on its own too (``report.domains``, always; ``default_domain``
    names the domain of images whose dataset records none). Raises
    :class:`DatasetError` for unusable data, :class:`inkloop.models.references.ModelError` for unusable
    models and :class:`re.error` for a ``group_by`` that is not a regular expression.
    """
    from inkloop.detection.detector import Detector

    rx = re.compile(group_by) if group_by is not None else None  # fail before any work
    t0 = time.perf_counter()
    dataset = load_dataset(data, split, default_domain)
    if isinstance(model, Detector):
        det = model
    else:
        from inkloop.models.references import ModelRef, is_triton_ref
        from inkloop.models.resolve import resolve_model

        if is_triton_ref(model):  # served: the detector reads the card from the server
            det = Detector(str(model), device=device, conf=EVAL_CONF)
        else:
            ref = model if isinstance(model, ModelRef) else resolve_model(model)
            det = Detector(ref, device=device, conf=EVAL_CONF, iou=ref.card.iou_threshold)
    check_classes(dataset, len(det.card.class_names), det.card.model_version)
    if on_start is not None:
        on_start(len(dataset))
    preds, latency = predict_dataset(det, dataset, batch_size, progress)
    # each image at its domain's operating threshold, as detection cuts pages; --conf: one for all
    threshold = det.card.thresholds if conf is None else Thresholds(conf)
    report, errors = compute_metrics(
        preds,
        det.card.class_names,
        threshold,
        target_recall,
        model_version=det.card.model_version,
        model_ref=det.model.ref,
        data=str(data),
        split=split,
        eval_conf=det.conf,
        nms_iou=det.iou,
    )
    report.latency_ms_per_image = round(latency, 3)
    if rx is not None:
        report.group_by = group_by
        report.groups = metrics_by_group(preds, det.card.class_names, threshold, rx)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        report.errors_path = str(write_errors(errors, out / "errors.jsonl"))
        if plot:
            report.pr_curve_path = str(plot_pr_curve(report, out / "pr_curve.png"))
    report.seconds = round(time.perf_counter() - t0, 3)
    if out_dir is not None:
        (Path(out_dir) / "report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report

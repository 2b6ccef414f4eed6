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
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from inkloop.convert.yolo import from_yolo
from inkloop.datasets import DATA_YAML, DatasetError, is_image, list_images, read_data_yaml
from inkloop.evaluation.domains import UNKNOWN_DOMAIN, DomainsError, domain_of
from inkloop.geometry import box_iou

#: The ten IoU thresholds of mAP50-95 (COCO), as ultralytics' ``DetectionValidator.iouv``.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
#: Score threshold for collecting predictions: ultralytics' ``val`` default, so low-score boxes
#: still count towards the precision–recall curve.
EVAL_CONF = 0.001
_AP_X = np.linspace(0, 1, 101)
_EPS = 1e-16
_TRAPZ = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 has only trapz


# --------------------------------------------------------------------------------------------- data


@dataclass
class Sample:
    """One image of the dataset and its ground truth, in the image's own pixels."""

    image: Path
    label: Path | None
    boxes: np.ndarray  # (M, 4) xyxy float64
    classes: np.ndarray  # (M,) int64
    #: ``scan``, ``digital``, … from the image's own dataset root (``domains.json``); None: unknown.
    domain: str | None = None


@dataclass
class YoloDataset:
    """The images of one split and their labels, resolved to files."""

    source: Path
    split: str
    samples: list[Sample]
    names: list[str] | None = None

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def has_domains(self) -> bool:
        """Whether any image's domain is recorded (then reports score each domain on its own)."""
        return any(s.domain is not None for s in self.samples)


def label_path_for(image: Path) -> Path:
    """ultralytics' rule: the last ``/images/`` becomes ``/labels/``, the suffix becomes ``.txt``.

    An image not under an ``images`` folder gets its sibling ``.txt``, which is also what a flat
    folder of images with labels beside them needs.
    """
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    s = os.fspath(image)
    return Path(sb.join(s.rsplit(sa, 1)).rsplit(".", 1)[0] + ".txt")


def _parse_label_file(path: Path, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """YOLO boxes (``cls cx cy w h``) or polygons (``cls x y x y …``) → xyxy pixels and class ids.

    Duplicate rows are dropped, as ultralytics does when it verifies labels, so both count the
    same number of ground-truth boxes.
    """
    rows: list[list[float]] = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            vals = [float(v) for v in parts]
        except ValueError as exc:
            raise DatasetError(f"{path}:{n}: not a YOLO label line: {line!r}") from exc
        if len(vals) == 5:
            rows.append(vals)
        elif len(vals) >= 7 and len(vals) % 2 == 1:  # polygon: its bounding box, as ultralytics
            xs, ys = vals[1::2], vals[2::2]
            x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
            rows.append([vals[0], (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0])
        else:
            raise DatasetError(f"{path}:{n}: YOLO label line needs 5 fields (or a polygon): {line!r}")
    if not rows:
        return np.zeros((0, 4)), np.zeros(0, np.int64)
    arr = np.asarray(rows, dtype=np.float64)
    _, first = np.unique(arr, axis=0, return_index=True)
    arr = arr[np.sort(first)]  # keep the file's order for readable error reports
    boxes = np.array([from_yolo(tuple(r[1:5]), width, height) for r in arr], dtype=np.float64)
    return boxes, arr[:, 0].astype(np.int64)


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        # Oriented size: labels refer to the image as displayed (cv2.imread applies EXIF too).
        return ImageOps.exif_transpose(im).size


def _split_entries(cfg: dict[str, Any], split: str, yaml_path: Path) -> list[str]:
    entry = cfg.get(split)
    if entry is None and split == "val":
        entry = cfg.get("validation")
    if not entry:
        raise DatasetError(f"{yaml_path}: no {split!r} entry (keys: {', '.join(sorted(cfg))})")
    return [str(e) for e in (entry if isinstance(entry, list) else [entry])]


def _images_from_entry(entry: str, root: Path, yaml_path: Path) -> list[Path]:
    p = Path(entry)
    p = p if p.is_absolute() else root / p
    if p.is_dir():
        return list_images(p)
    if p.is_file() and p.suffix == ".txt":  # a list of image paths, relative to the dataset root
        out: list[Path] = []
        for line in p.read_text().splitlines():
            if line.strip():
                q = Path(line.strip())
                out.append(q if q.is_absolute() else (root / q))
        return out
    if p.is_file() and is_image(p):
        return [p]
    raise DatasetError(f"{yaml_path}: split path {p} does not exist")


def _names(cfg: dict[str, Any]) -> list[str] | None:
    names = cfg.get("names")
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names)]
    if isinstance(names, list):
        return [str(n) for n in names]
    return None


def load_dataset(
    data: str | os.PathLike[str], split: str = "val", default_domain: str | None = None
) -> YoloDataset:
    """Resolve a data.yaml, a dataset folder or a flat folder of images into labelled samples.

    Accepted forms:

    - a ``data.yaml``: ``path`` (relative to the yaml's folder, as everywhere in inkloop — not to
      the working directory as ultralytics would) and ``<split>`` (a folder, an image-list
      ``.txt``, or a list of those);
    - a folder with ``data.yaml`` in it (as above), or with ``images/<split>`` and
      ``labels/<split>``;
    - a flat folder of images with a ``.txt`` label beside each.

    An image without a label file has no objects (a background image), as in ultralytics.
    Each image's domain comes from the ``domains.json`` of *its own* dataset root
    (:mod:`inkloop.evaluation.domains`), so a data.yaml listing folders of several datasets (scans
    from one, generated digital pages from another) gets each image's domain right.
    ``default_domain`` is the domain of images whose dataset records none (a read-only collection
    of scans beside generated pages: ``default_domain="scan"``).
    """
    src = Path(data)
    names: list[str] | None = None
    if src.is_file():
        cfg, root = read_data_yaml(src)
        images = [im for e in _split_entries(cfg, split, src) for im in _images_from_entry(e, root, src)]
        names = _names(cfg)
    elif src.is_dir():
        if (src / DATA_YAML).is_file():
            return load_dataset(src / DATA_YAML, split, default_domain)
        if (src / "images" / split).is_dir():
            images = list_images(src / "images" / split)
        elif (src / "images").is_dir():
            raise DatasetError(f"{src}: no images/{split} folder and no data.yaml")
        else:
            images = list_images(src, recursive=False)
    else:
        raise DatasetError(f"dataset not found: {src}")
    if not images:
        raise DatasetError(f"{src}: no images found for split {split!r}")
    samples: list[Sample] = []
    for im in images:
        if not im.is_file():
            raise DatasetError(f"{src}: listed image {im} does not exist")
        lbl = label_path_for(im)
        try:
            domain = domain_of(im) or default_domain
        except DomainsError as exc:
            raise DatasetError(str(exc)) from exc
        if lbl.is_file():
            w, h = _image_size(im)
            boxes, classes = _parse_label_file(lbl, w, h)
            samples.append(Sample(im, lbl, boxes, classes, domain))
        else:
            samples.append(Sample(im, None, np.zeros((0, 4)), np.zeros(0, np.int64), domain))
    return YoloDataset(source=src, split=split, samples=samples, names=names)


# ------------------------------------------------------------------------------------------ metrics


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


def counts_at(tp50: np.ndarray, conf: np.ndarray, n_true: int, threshold: float) -> ThresholdChoice:
    """Precision, recall and F1 at IoU 0.5 for the boxes scoring above ``threshold``.

    Valid because matching is greedy in score order: the boxes above a threshold match exactly as
    they would if the lower ones had never been predicted.
    """
    keep = conf > threshold
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


# ------------------------------------------------------------------------------------------ reports


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
    operating_threshold: float,
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
    mAP is the per-class mean, as ultralytics. When images carry a domain (and ``by_domain``),
    ``report.domains`` scores each domain on its own (:func:`metrics_by_domain`).
    """
    ordered, corrects, assigns, st = _stack(images)
    apr = ap_per_class(st["tp"], st["conf"], st["pred_cls"], st["target_cls"])
    tp50 = st["tp"][:, 0] if len(st["tp"]) else np.zeros(0, bool)
    n_gt = len(st["target_cls"])
    op = counts_at(tp50, st["conf"], n_gt, operating_threshold)
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
        operating_threshold=float(operating_threshold),
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
        report.domains = metrics_by_domain(images, class_names, operating_threshold)
    errors = [
        image_errors(im, c, a, operating_threshold, class_names)
        for im, c, a in zip(ordered, corrects, assigns, strict=True)
    ]
    return report, errors


def plot_pr_curve(report: EvalReport, path: str | os.PathLike[str]) -> Path:
    """Precision–recall curve at IoU 0.5 (the envelope AP integrates), with the operating point
    and the best-F1 point marked, so a reviewer sees where the card's threshold sits."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rec = report.pr_curve.get("recall", [])
    prec = report.pr_curve.get("precision", [])
    fig, ax = plt.subplots(figsize=(6, 5), dpi=120)
    try:
        ax.plot(rec, prec, lw=2, color="tab:blue", label=f"PR @IoU0.5 (mAP50 {report.map50:.3f})")
        ax.scatter(
            [report.recall],
            [report.precision],
            color="tab:red",
            zorder=3,
            label=f"operating conf>{report.operating_threshold:.3g} (F1 {report.f1:.3f})",
        )
        b = report.best_f1
        ax.scatter(
            [b.recall],
            [b.precision],
            color="tab:green",
            marker="s",
            zorder=3,
            label=f"best F1 conf>{b.threshold:.3g} (F1 {b.f1:.3f})",
        )
        if report.at_target_recall is not None:
            a = report.at_target_recall
            ax.scatter(
                [a.recall],
                [a.precision],
                color="tab:orange",
                marker="^",
                zorder=3,
                label=f"recall≥{report.target_recall:g}: conf>{a.threshold:.3g}",
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("Recall")
        ax.set_ylabel("Precision")
        ax.set_title(
            f"{report.model_version} on {Path(report.data).name or report.data} [{report.split}]", fontsize=9
        )
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, bbox_inches="tight")
    finally:
        plt.close(fig)
    return out


def write_errors(errors: Iterable[ImageErrors], path: str | os.PathLike[str]) -> Path:
    """errors.jsonl: one JSON object per image, images with nothing wrong included (n_gt, tp)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for e in errors:
            f.write(json.dumps(e.to_dict(), ensure_ascii=False) + "\n")
    return out


# ----------------------------------------------------------------------------------------- running


NO_GROUP = "(no match)"
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
    members: dict[str, list[ImagePredictions]], class_names: Sequence[str], operating_threshold: float
) -> dict[str, dict[str, Any]]:
    """Each group of images scored on its own, as if it were the whole split (sorted by name)."""
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(members):
        d = compute_metrics(members[name], class_names, operating_threshold, None, by_domain=False)[0]
        out[name] = {k: v for k, v in d.to_dict().items() if k in GROUP_FIELDS}
    return out


def group_of(path: str, pattern: re.Pattern[str]) -> str:
    """The group an image belongs to: ``pattern``'s first capture group (or whole match) in the
    file name; :data:`NO_GROUP` when it does not match."""
    m = pattern.search(Path(path).name)
    if m is None:
        return NO_GROUP
    return str(m.group(1) if m.groups() else m.group(0))


def metrics_by_group(
    images: Sequence[ImagePredictions],
    class_names: Sequence[str],
    operating_threshold: float,
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
    members: dict[str, list[ImagePredictions]] = {}
    for im in images:
        members.setdefault(group_of(im.path, rx), []).append(im)
    return _score_members(members, class_names, operating_threshold)


def metrics_by_domain(
    images: Sequence[ImagePredictions], class_names: Sequence[str], operating_threshold: float
) -> dict[str, dict[str, Any]]:
    """The same metrics for each domain (``scan``, ``digital``, …) of the images.

    Why beside the total, always: a model can be good on scans and miss half the signatures on
    born-digital pages, and a total over a split that is mostly scans hides it. Images without a
    recorded domain form :data:`UNKNOWN_DOMAIN`, so the domains always add up to the total.
    """
    members: dict[str, list[ImagePredictions]] = {}
    for im in images:
        members.setdefault(im.domain or UNKNOWN_DOMAIN, []).append(im)
    return _score_members(members, class_names, operating_threshold)


def load_rgb(path: Path) -> np.ndarray:
    """An image as RGB uint8, EXIF orientation applied (the orientation its labels refer to)."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def predict_dataset(
    detector: Any,
    dataset: YoloDataset,
    batch_size: int = 4,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[ImagePredictions], float]:
    """Run the detector over every image; returns predictions and mean ms per image of
    :meth:`Detector.run` (inference + decoding, without image loading and preprocessing)."""
    names = list(detector.card.class_names)
    index = {n: i for i, n in enumerate(names)}
    out: list[ImagePredictions] = []
    run_seconds = 0.0
    samples = dataset.samples
    for start in range(0, len(samples), max(1, batch_size)):
        chunk = samples[start : start + batch_size]
        prepared = [detector.prepare(load_rgb(s.image)) for s in chunk]
        t0 = time.perf_counter()
        dets = detector.run(prepared)
        run_seconds += time.perf_counter() - t0
        for s, ds in zip(chunk, dets, strict=True):
            out.append(
                ImagePredictions(
                    path=str(s.image),
                    gt_boxes=s.boxes,
                    gt_classes=s.classes,
                    boxes=np.array([d.xyxy for d in ds], dtype=np.float64).reshape(-1, 4),
                    scores=np.array([d.score for d in ds], dtype=np.float64),
                    classes=np.array([index[d.label] for d in ds], dtype=np.int64),
                    domain=s.domain,
                )
            )
        if progress is not None:
            progress(len(chunk))
    return out, (1000.0 * run_seconds / len(samples) if samples else 0.0)


def check_classes(dataset: YoloDataset, n_classes: int, model_version: str) -> None:
    """Refuse labels with class ids the model does not have.

    ultralytics would silently drop such images as corrupt, and a plain mean over classes would
    count them as classes with AP 0: either way the mAP would mean something else. A dataset
    labelled for another model is a mistake worth stopping for.
    """
    for s in dataset.samples:
        bad = s.classes[(s.classes < 0) | (s.classes >= n_classes)]
        if bad.size:
            raise DatasetError(
                f"{s.label}: class id {int(bad[0])} but {model_version} has {n_classes} class(es)"
            )


def evaluate(
    model: Any,
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
    threshold = det.card.conf_threshold if conf is None else conf
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

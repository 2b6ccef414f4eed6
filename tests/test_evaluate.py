"""``inkloop.evaluation.evaluator``: metric code on hand-built cases, and agreement with ultralytics' ``val``.

Why three kinds of parity test: the bundled model changes during development and an early
checkpoint scores mAP ≈ 0, where "ours ≈ theirs" proves little. So the metric code is also
checked against ultralytics' own metric code on random predictions with mAP well above 0
(exact agreement), and on the very predictions ultralytics' ``val`` scored (exact agreement);
the end-to-end tests then only have to show that our inference gives the same boxes.

``INKLOOP_PARITY_MODEL=<model.onnx>`` runs the ultralytics parity tests with another model (for
example a new checkpoint) instead of the bundled one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from domain_data import add_digital_pages, make_two_domain_dataset

from inkloop.evaluation.domains import DOMAINS_FILE, domain_of, write_domains
from inkloop.evaluation.evaluator import (
    EVAL_CONF,
    IOU_THRESHOLDS,
    DatasetError,
    ImagePredictions,
    choose_threshold,
    compute_ap,
    compute_metrics,
    evaluate,
    group_of,
    load_dataset,
    match_predictions,
    metrics_by_domain,
    metrics_by_group,
    predict_dataset,
)
from inkloop.geometry import box_iou
from inkloop.models.resolve import resolve_model
from parity import EVAL_VS_VAL_MAP50, EVAL_VS_VAL_MAP50_95

NAMES = ["signature"]


def img(gt: list[list[float]], preds: list[tuple[list[float], float]], cls: int = 0) -> ImagePredictions:
    return ImagePredictions(
        path="x.png",
        gt_boxes=np.array(gt, dtype=np.float64).reshape(-1, 4),
        gt_classes=np.full(len(gt), cls, dtype=np.int64),
        boxes=np.array([b for b, _ in preds], dtype=np.float64).reshape(-1, 4),
        scores=np.array([s for _, s in preds], dtype=np.float64),
        classes=np.full(len(preds), cls, dtype=np.int64),
    )


A, B, C = [10, 10, 50, 50], [100, 100, 160, 140], [300, 300, 340, 360]


# ------------------------------------------------------------------------------- hand-built cases


#: What ultralytics reports for perfect predictions: its PR curve drops to precision 0 exactly at
#: recall 1, and the 101-point trapezoid loses half of the last 0.01 step. We keep the quirk so
#: our numbers stay comparable with every mAP ultralytics has printed.
PERFECT_AP = 0.995


def test_perfect_predictions_give_ap_one() -> None:
    report, errors = compute_metrics([img([A, B], [(A, 0.9), (B, 0.8)]), img([C], [(C, 0.7)])], NAMES, 0.25)
    assert report.map50 == pytest.approx(PERFECT_AP)
    assert report.map50_95 == pytest.approx(PERFECT_AP)
    assert (report.precision, report.recall, report.f1) == (1.0, 1.0, 1.0)
    assert (report.tp, report.fp, report.fn) == (3, 0, 0)
    assert all(not e.missed and not e.false for e in errors)


def test_one_missed_box() -> None:
    report, errors = compute_metrics([img([A, B], [(A, 0.9)])], NAMES, 0.25)
    assert report.recall == 0.5 and report.precision == 1.0
    assert report.map50 == pytest.approx(0.5, abs=0.01)  # recall stops at 0.5
    assert errors[0].missed == [{"label": "signature", "xyxy": [100.0, 100.0, 160.0, 140.0]}]
    assert errors[0].false == [] and errors[0].tp == 1 and errors[0].n_gt == 2


def test_one_false_positive_and_operating_threshold() -> None:
    preds = [(A, 0.9), (C, 0.5), (B, 0.3)]  # C is not a ground-truth box
    report, errors = compute_metrics([img([A, B], preds)], NAMES, 0.25)
    assert (report.tp, report.fp, report.fn) == (2, 1, 0)
    assert report.precision == pytest.approx(2 / 3)
    assert errors[0].false == [{"label": "signature", "score": 0.5, "xyxy": [300.0, 300.0, 340.0, 360.0]}]
    # At 0.3, B (scoring exactly 0.3) is dropped, as the detector drops it: B becomes a miss.
    report, errors = compute_metrics([img([A, B], preds)], NAMES, 0.3)
    assert (report.tp, report.fp, report.fn) == (1, 1, 1)
    assert [m["xyxy"] for m in errors[0].missed] == [[100.0, 100.0, 160.0, 140.0]]


def test_score_ordering_matters() -> None:
    fp_first, _ = compute_metrics([img([A], [(C, 0.9), (A, 0.5)])], NAMES, 0.25)
    fp_last, _ = compute_metrics([img([A], [(A, 0.9), (C, 0.5)])], NAMES, 0.25)
    assert fp_last.map50 == pytest.approx(PERFECT_AP)
    assert fp_first.map50 == pytest.approx(0.5, abs=0.01)
    # Order of the input lists must not matter, only scores do.
    shuffled, _ = compute_metrics([img([A], [(C, 0.5), (A, 0.9)])], NAMES, 0.25)
    assert shuffled.map50 == fp_last.map50


def test_iou_thresholds_and_duplicates() -> None:
    shifted = [A[0] + 8, A[1], A[2] + 8, A[3]]  # IoU 0.667 with A
    assert box_iou(np.array([A]), np.array([shifted]))[0, 0] == pytest.approx(32 / 48, abs=1e-6)
    report, _ = compute_metrics([img([A], [(shifted, 0.9), (A, 0.8)])], NAMES, 0.25)
    # IoU 0.5/0.55/0.6/0.65: the shifted box claims A, the exact one is a duplicate; above: reverse.
    assert report.map50 == pytest.approx(PERFECT_AP)
    assert report.tp == 1 and report.fp == 1
    correct, assigned = match_predictions(
        np.zeros(2, np.int64), np.zeros(1, np.int64), box_iou(np.array([A]), np.array([shifted, A]))
    )
    assert correct[0].tolist() == [True] * 4 + [False] * 6
    assert correct[1].tolist() == [False] * 4 + [True] * 6
    assert assigned[0, 0] == 0 and assigned[1, 0] == -1


def test_wrong_class_never_matches() -> None:
    im = img([A], [(A, 0.9)])
    im.classes = np.array([1])
    report, errors = compute_metrics([im], ["signature", "stamp"], 0.25)
    assert report.map50 == 0.0 and report.fp == 1 and report.fn == 1
    assert errors[0].false[0]["label"] == "stamp"


def test_metrics_by_group_scores_each_group_as_its_own_split() -> None:
    from dataclasses import replace

    good = [replace(img([A], [(A, 0.9)]), path=f"/d/tobacco800_{i}.png") for i in range(3)]
    poor = [
        replace(img([A, B], [(A, 0.8), (C, 0.7)]), path="/d/xc8up_1.jpg"),
        replace(img([B], []), path="/d/xc8up_2.jpg"),
    ]
    other = [replace(img([], [(C, 0.6)]), path="/d/scan.png")]
    images = good + poor + other
    groups = metrics_by_group(images, NAMES, 0.25, r"^(tobacco800|xc8up)_")
    assert list(groups) == ["(no match)", "tobacco800", "xc8up"]
    t, x, n = groups["tobacco800"], groups["xc8up"], groups["(no match)"]
    assert (t["n_images"], t["n_gt"], t["tp"], t["fp"], t["fn"]) == (3, 3, 3, 0, 0)
    assert t["map50"] == pytest.approx(PERFECT_AP) and t["recall"] == 1.0
    assert (x["n_images"], x["n_gt"], x["tp"], x["fp"], x["fn"]) == (2, 3, 1, 1, 2)
    assert x["recall"] == pytest.approx(1 / 3) and x["precision"] == pytest.approx(0.5)
    assert (n["n_images"], n["n_gt"], n["fp"]) == (1, 0, 1)
    # each group is the metric of that subset alone, and the groups partition the split
    alone, _ = compute_metrics(poor, NAMES, 0.25)
    assert x["map50"] == pytest.approx(alone.map50) and x["map50_95"] == pytest.approx(alone.map50_95)
    whole, _ = compute_metrics(images, NAMES, 0.25)
    assert sum(g["tp"] for g in groups.values()) == whole.tp
    assert sum(g["n_images"] for g in groups.values()) == len(images)
    # without a capture group the whole match names the group
    assert group_of("/d/tobacco800_1.png", re.compile(r"^[^_]+")) == "tobacco800"


def test_domains_are_scored_beside_the_total() -> None:
    """Every number the total has, per domain; the domains partition the split; unknown counted."""
    from dataclasses import replace

    scans = [replace(img([A], [(A, 0.9)]), path=f"/d/s{i}.png", domain="scan") for i in range(3)]
    digital = [
        replace(img([A, B], [(A, 0.8), (C, 0.7)]), path="/d/c1.png", domain="digital"),
        replace(img([B], []), path="/d/c2.png", domain="digital"),
    ]
    unknown = [replace(img([C], [(C, 0.6)]), path="/d/u.png")]
    report, _ = compute_metrics(scans + digital + unknown, NAMES, 0.25)
    assert list(report.domains) == ["digital", "scan", "unknown"]
    d = report.domains["digital"]
    assert (d["n_images"], d["n_gt"], d["n_predictions"], d["tp"], d["fp"], d["fn"]) == (2, 3, 2, 1, 1, 2)
    assert d["recall"] == pytest.approx(1 / 3) and d["precision"] == pytest.approx(0.5)
    alone, _ = compute_metrics(digital, NAMES, 0.25)
    for k in ("map50", "map50_95", "precision", "recall", "f1"):
        assert d[k] == pytest.approx(getattr(alone, k))
    assert report.domains["scan"]["recall"] == 1.0 and report.domains["unknown"]["n_images"] == 1
    for k in ("n_images", "n_gt", "tp", "fp", "fn"):
        assert sum(g[k] for g in report.domains.values()) == report.to_dict()[k]
    assert report.to_dict()["domains"] == metrics_by_domain(scans + digital + unknown, NAMES, 0.25)
    # no domain recorded anywhere: the report is as it always was
    plain, _ = compute_metrics([replace(i, domain=None) for i in scans + digital], NAMES, 0.25)
    assert plain.domains == {} and plain.to_dict()["domains"] == {}


def test_domains_file_is_read_per_image_root(tmp_path: Path, pages_dir: Path) -> None:
    """A combined data.yaml (a list of folders from two datasets): each image's domain comes from
    its own root's domains.json; a root without the file has no domains."""
    scans = tmp_path / "scans"  # a plain dataset of scans: no domains.json
    for p in pages_dir.iterdir():
        if p.suffix != ".txt":
            for kind, src in (("images", p), ("labels", p.with_suffix(".txt"))):
                (scans / kind / "val").mkdir(parents=True, exist_ok=True)
                shutil.copy(src, scans / kind / "val" / src.name)
    synth = tmp_path / "synth"
    rels = add_digital_pages(synth, pages_dir, "val")
    write_domains(synth, {r: "digital" for r in rels})
    combined = tmp_path / "combined" / "data.yaml"
    combined.parent.mkdir()
    combined.write_text(
        f"path: .\nval:\n  - {scans / 'images' / 'val'}\n  - {synth / 'images' / 'val'}\nnames: [signature]\n"
    )
    ds = load_dataset(combined, "val")
    got = {s.image.parent.parent.parent.name: set() for s in ds.samples}
    for s in ds.samples:
        got[s.image.parent.parent.parent.name].add(s.domain)
    assert got == {"scans": {None}, "synth": {"digital"}} and ds.has_domains
    assert not load_dataset(scans, "val").has_domains  # reports stay unchanged without the file
    # a collection that cannot be written to (a shared, read-only copy): its domain named here
    named = load_dataset(combined, "val", default_domain="scan")
    assert {s.domain for s in named.samples} == {"scan", "digital"}
    # the scans root says what it is: every image gets a domain, through "default"
    write_domains(scans, {}, default="scan")
    assert {s.domain for s in load_dataset(combined, "val").samples} == {"scan", "digital"}
    assert domain_of(synth / rels[0]) == "digital"
    # a broken domains.json is a dataset error naming the file
    (synth / DOMAINS_FILE).write_text('{"images": {"images/val/x.png": 3}}')
    with pytest.raises(DatasetError, match=str(synth / DOMAINS_FILE)):
        load_dataset(combined, "val")


def test_compute_ap_endpoints() -> None:
    assert compute_ap(np.array([1.0]), np.array([1.0]))[0] == pytest.approx(PERFECT_AP)
    # Linear between curve points (not a COCO step): 0.5 + 0.5 * 0.75, less the last-step quirk.
    assert compute_ap(np.array([0.5, 1.0]), np.array([1.0, 0.5]))[0] == pytest.approx(0.8725)


def test_choose_threshold() -> None:
    # Scores high→low: TP, TP, FP, TP, FP; 4 ground-truth boxes.
    tp = np.array([1, 1, 0, 1, 0], dtype=bool)
    conf = np.array([0.9, 0.8, 0.6, 0.4, 0.2])
    best, at_recall = choose_threshold(tp, conf, 4, target_recall=0.75)
    assert (best.tp, best.fp) == (3, 1)  # P .75 R .75 F1 .75 beats 2/2 (F1 .667)
    assert best.threshold == pytest.approx(0.3)  # midway between kept 0.4 and dropped 0.2
    assert at_recall is not None and at_recall.recall == 0.75 and at_recall.precision == 0.75
    _, unreachable = choose_threshold(tp, conf, 4, target_recall=1.0)
    assert unreachable is None
    # Tied scores cannot be split by a threshold.
    best, _ = choose_threshold(np.array([1, 0, 1], bool), np.array([0.5, 0.5, 0.1]), 2)
    assert best.threshold != pytest.approx(0.5)


# ----------------------------------------------------------------------------------------- dataset


def make_dataset(pages_dir: Path, root: Path, max_side: int | None = None) -> Path:
    """A YOLO dataset (images/val, labels/val, data.yaml) from the committed fixture pages.

    ``max_side``: pages with a longer side are first shrunk to it (OpenCV's area filter, as
    ultralytics' ``val`` loader shrinks them), saved losslessly; labels are relative, unchanged.
    Why: ``val`` shrinks a large page with the area filter and ``predict`` (whose preprocessing
    inkloop follows) with the bilinear one; pages already at the model's input size are read as
    the same pixels by both, so a parity test compares detector and metric, not resampling.
    """
    import cv2

    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    for im in sorted(pages_dir.iterdir()):
        if im.suffix.lower() in (".png", ".jpg"):
            image = cv2.imread(str(im)) if max_side else None
            if image is not None and max_side and max(image.shape[:2]) > max_side:
                r = max_side / max(image.shape[:2])
                size = (round(image.shape[1] * r), round(image.shape[0] * r))
                cv2.imwrite(
                    str(root / "images" / "val" / f"{im.stem}.png"),
                    cv2.resize(image, size, interpolation=cv2.INTER_AREA),
                )
            else:
                shutil.copy2(im, root / "images" / "val" / im.name)
            shutil.copy2(im.with_suffix(".txt"), root / "labels" / "val" / f"{im.stem}.txt")
    yml = root / "data.yaml"
    yml.write_text(f"path: {root}\ntrain: images/val\nval: images/val\nnames:\n  0: signature\n")
    return yml


def test_dataset_forms_agree(tmp_path: Path, pages_dir: Path) -> None:
    yml = make_dataset(pages_dir, tmp_path / "ds")
    by_yaml, by_dir, flat = load_dataset(yml), load_dataset(tmp_path / "ds"), load_dataset(pages_dir)
    assert len(by_yaml) == len(by_dir) == len(flat) == 4
    assert sum(len(s.boxes) for s in flat.samples) == 10
    for a, b in zip(by_yaml.samples, flat.samples, strict=True):
        assert a.image.name == b.image.name
        np.testing.assert_allclose(a.boxes, b.boxes)
    assert by_yaml.names == ["signature"]
    (tmp_path / "bare" / "images" / "val").mkdir(parents=True)
    shutil.copy2(next(pages_dir.glob("*.png")), tmp_path / "bare" / "images" / "val")
    bare = load_dataset(tmp_path / "bare")  # no labels folder: background images
    assert len(bare) == 1 and len(bare.samples[0].boxes) == 0


def test_bad_dataset_paths_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="nope"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty"):
        load_dataset(tmp_path / "empty")
    yml = tmp_path / "d.yaml"
    yml.write_text("path: .\nval: images/missing\n")
    with pytest.raises(DatasetError, match="missing"):
        load_dataset(yml)
    with pytest.raises(DatasetError, match="test"):
        load_dataset(yml, split="test")


def test_labels_with_unknown_classes_are_refused(tmp_path: Path, pages_dir: Path) -> None:
    im = next(pages_dir.glob("*.png"))
    shutil.copy2(im, tmp_path / im.name)
    (tmp_path / f"{im.stem}.txt").write_text("3 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DatasetError, match=r"class id 3"):
        evaluate(None, tmp_path)


# ---------------------------------------------------------------------------- ultralytics parity


def _ultralytics_metrics(images: list[ImagePredictions], nc: int) -> Any:
    """Score ``images`` with ultralytics' own matching and DetMetrics, as its validator does."""
    import torch
    from ultralytics.models.yolo.detect.val import DetectionValidator
    from ultralytics.utils.metrics import DetMetrics
    from ultralytics.utils.metrics import box_iou as ul_box_iou

    fake = SimpleNamespace(iouv=torch.linspace(0.5, 0.95, 10))
    metrics = DetMetrics(names={i: f"c{i}" for i in range(nc)})
    for n, im in enumerate(images):
        order = np.argsort(-im.scores, kind="stable")  # NMS output order
        boxes, scores, classes = im.boxes[order], im.scores[order], im.classes[order]
        if len(im.gt_boxes) and len(boxes):
            iou = ul_box_iou(torch.tensor(im.gt_boxes), torch.tensor(boxes))
            tp = DetectionValidator.match_predictions(
                fake, torch.tensor(classes), torch.tensor(im.gt_classes), iou
            ).numpy()
        else:
            tp = np.zeros((len(boxes), 10), dtype=bool)
        metrics.update_stats(
            {
                "tp": tp,
                "conf": scores,
                "pred_cls": classes.astype(np.float64),
                "target_cls": im.gt_classes.astype(np.float64),
                "target_img": np.unique(im.gt_classes),
                "im_name": f"{n}.jpg",
            }
        )
    metrics.process()
    return metrics


def _random_images(rng: np.random.Generator, n_images: int, nc: int) -> list[ImagePredictions]:
    """Jittered copies of ground truth plus random false boxes, random scores: mAP well above 0."""
    out = []
    for _ in range(n_images):
        m = int(rng.integers(0, 6))
        xy = rng.uniform(0, 800, (m, 2))
        wh = rng.uniform(20, 200, (m, 2))
        gt = np.concatenate([xy, xy + wh], 1)
        gcls = rng.integers(0, nc, m)
        boxes, scores, classes = [], [], []
        for b, c in zip(gt, gcls, strict=True):
            for _ in range(int(rng.integers(0, 3))):  # 0–2 detections per object, some duplicates
                jitter = rng.normal(0, 0.08, 4) * np.r_[b[2] - b[0], b[3] - b[1], b[2] - b[0], b[3] - b[1]]
                boxes.append(b + jitter)
                scores.append(rng.uniform(0.05, 1.0))
                classes.append(c if rng.random() > 0.1 else (c + 1) % nc)
        for _ in range(int(rng.integers(0, 4))):
            p = rng.uniform(0, 800, 2)
            boxes.append(np.r_[p, p + rng.uniform(20, 200, 2)])
            scores.append(rng.uniform(0.001, 0.7))
            classes.append(int(rng.integers(0, nc)))
        out.append(
            ImagePredictions(
                path="r.jpg",
                gt_boxes=gt.reshape(-1, 4),
                gt_classes=gcls.astype(np.int64),
                boxes=np.array(boxes, dtype=np.float64).reshape(-1, 4),
                scores=np.round(np.array(scores, dtype=np.float64), 3),  # rounding makes ties
                classes=np.array(classes, dtype=np.int64),
            )
        )
    return out


@pytest.mark.parametrize("seed,nc", [(0, 1), (1, 1), (2, 3)])
def test_metric_code_matches_ultralytics_on_random_predictions(seed: int, nc: int) -> None:
    images = _random_images(np.random.default_rng(seed), 60, nc)
    ours, _ = compute_metrics(images, [f"c{i}" for i in range(nc)], 0.25)
    theirs = _ultralytics_metrics(images, nc)
    assert 0.2 < ours.map50 < 0.99  # a meaningful, non-trivial case
    assert ours.map50 == pytest.approx(theirs.box.map50, abs=1e-9)
    assert ours.map50_95 == pytest.approx(theirs.box.map, abs=1e-9)
    assert ours.ultralytics_style["precision"] == pytest.approx(theirs.box.mp, abs=1e-6)
    assert ours.ultralytics_style["recall"] == pytest.approx(theirs.box.mr, abs=1e-6)
    for i, c in enumerate(theirs.box.ap_class_index):
        assert ours.per_class[f"c{c}"]["ap50"] == pytest.approx(theirs.box.ap50[i], abs=1e-6)


@pytest.fixture(scope="module")
def ultralytics_val(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One ultralytics ``val`` run on the fixture pages, capturing the exact boxes it scored."""
    from ultralytics import YOLO
    from ultralytics.models.yolo.detect.val import DetectionValidator
    from ultralytics.utils import ops

    pages_dir = Path(__file__).parent / "fixtures" / "pages"
    root = tmp_path_factory.mktemp("evalds")
    ref = resolve_model(os.environ.get("INKLOOP_PARITY_MODEL"))  # default: the bundled model
    card = ref.card
    # at the model's input size, so val and inkloop read the same pixels (make_dataset): on the
    # 2344-px xc8up page, val's area-shrunk input and predict's bilinear one score @7's boxes
    # 0.745 / 0.679 / 0.488 and 0.701 / 0.696 / 0.533, which on 10 boxes moves mAP50 by 0.07
    yml = make_dataset(pages_dir, root / "ds", max_side=card.input_size)
    captured: list[ImagePredictions] = []  # as scored: letterboxed model-input pixels
    in_source: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # boxes in image pixels, scores
    original = DetectionValidator.update_metrics

    def capture(self: Any, preds: list[dict[str, Any]], batch: dict[str, Any]) -> None:
        for si, pred in enumerate(preds):
            pb = self._prepare_batch(si, batch)
            captured.append(
                ImagePredictions(
                    path=pb["im_file"],
                    gt_boxes=pb["bboxes"].cpu().numpy().astype(np.float64).reshape(-1, 4),
                    gt_classes=pb["cls"].cpu().numpy().astype(np.int64),
                    boxes=pred["bboxes"].cpu().numpy().astype(np.float64).reshape(-1, 4),
                    scores=pred["conf"].cpu().numpy().astype(np.float64),
                    classes=pred["cls"].cpu().numpy().astype(np.int64),
                )
            )
            src = ops.scale_boxes(
                pb["imgsz"], pred["bboxes"].clone(), pb["ori_shape"], ratio_pad=pb["ratio_pad"]
            )
            in_source[Path(pb["im_file"]).name] = (
                src.cpu().numpy().astype(np.float64).reshape(-1, 4),
                pred["conf"].cpu().numpy().astype(np.float64),
            )
        original(self, preds, batch)

    DetectionValidator.update_metrics = capture  # type: ignore[method-assign]
    try:
        metrics = YOLO(str(ref.path), task="detect").val(
            data=str(yml), imgsz=card.input_size, batch=1, conf=0.001, iou=card.iou_threshold,
            device="cpu", plots=False, rect=False, project=str(root / "runs"), name="val",
            verbose=False, workers=0,
        )  # fmt: skip
    finally:
        DetectionValidator.update_metrics = original  # type: ignore[method-assign]
    return {
        "yaml": yml, "metrics": metrics, "captured": captured, "in_source": in_source,
        "ref": ref, "card": card, "root": root,
    }  # fmt: skip


def test_metric_code_matches_ultralytics_on_its_own_val_predictions(ultralytics_val: dict[str, Any]) -> None:
    captured, metrics, card = ultralytics_val["captured"], ultralytics_val["metrics"], ultralytics_val["card"]
    assert len(captured) == 4 and sum(len(c.gt_boxes) for c in captured) == 10
    ours, _ = compute_metrics(captured, card.class_names, card.conf_threshold)
    assert ours.map50 == pytest.approx(metrics.box.map50, abs=1e-6)
    assert ours.map50_95 == pytest.approx(metrics.box.map, abs=1e-6)
    assert ours.n_predictions == sum(len(c.scores) for c in captured)


def test_detector_finds_the_boxes_ultralytics_val_finds(ultralytics_val: dict[str, Any]) -> None:
    """Box by box: every confident box of ``val`` is one of ours, same place, same score.

    Only boxes scoring ≥ 0.1 are compared: an untrained checkpoint scores everything alike
    (≈ 0.01), and among near-tied scores NMS keeps a different, equally meaningless box on any
    float difference. For such a model this test is vacuous and the metric tests carry the weight.
    """
    from inkloop.detection.detector import Detector

    ref = ultralytics_val["ref"]
    det = Detector(ref, conf=EVAL_CONF, iou=ref.card.iou_threshold)
    det.stride = None  # val (rect=False) letterboxes to the full square; predict pads to the stride
    ours, _ = predict_dataset(det, load_dataset(ultralytics_val["yaml"]))
    compared = matched = 0
    for p in ours:
        boxes, scores = ultralytics_val["in_source"][Path(p.path).name]
        confident = scores >= 0.1
        if not confident.any():
            continue
        iou = box_iou(boxes[confident], p.boxes)
        for row, score in zip(iou, scores[confident], strict=True):
            compared += 1
            # Same box: IoU ≥ 0.95 (val letterboxes to the full square, predict to the stride: a
            # sub-pixel shift at most) and the score within parity.ULTRALYTICS_SCORE's 0.01.
            same = (row >= 0.95) & (np.abs(p.scores - score) <= 0.01)
            matched += bool(same.any())
    assert matched >= 0.95 * compared, (matched, compared)


def test_evaluate_agrees_with_ultralytics_val(ultralytics_val: dict[str, Any]) -> None:
    """The issue's acceptance test: within 1 point of mAP50 (and of mAP50-95) on the same data."""
    metrics, yml = ultralytics_val["metrics"], ultralytics_val["yaml"]
    out = ultralytics_val["root"] / "ours"
    report = evaluate(ultralytics_val["ref"], yml, out_dir=out)
    assert report.n_images == 4 and report.n_gt == 10
    # The metric itself, on val's own input (rect=False: the full square): the report below
    # scores the input inkloop serves (padded to the stride), which moves a box's score a little,
    # and on 10 boxes one rank that changes moves mAP50 by 0.02 (@4: 0.914 served vs val's 0.934).
    from inkloop.detection.detector import Detector

    square = Detector(ultralytics_val["ref"], conf=EVAL_CONF, iou=ultralytics_val["ref"].card.iou_threshold)
    square.stride = None
    like_val = evaluate(square, yml, plot=False)
    m50, m50_95 = metrics.box.map50, metrics.box.map
    EVAL_VS_VAL_MAP50.check(abs(like_val.map50 - m50), f"{like_val.map50:.4f} vs {m50:.4f}")
    EVAL_VS_VAL_MAP50_95.check(abs(like_val.map50_95 - m50_95), f"{like_val.map50_95:.4f} vs {m50_95:.4f}")
    # Same boxes, not just the same summary. On val's own input (rect=False: the full square)
    # inkloop's detector keeps as many boxes as val, down to conf 0.001 (measured for
    # signature-detector@3, the bundled model then: 63 and 63). The report scores the input inkloop
    # serves (padded to the stride, not the square), where the low-scoring tail moves (@3: 67 vs 63
    # boxes at conf 0.001, 33 vs 31 at 0.01, 13 vs 14 at 0.1), so its count is not compared with val's.
    n_theirs = sum(len(c.scores) for c in ultralytics_val["captured"])
    on_square, _ = predict_dataset(square, load_dataset(yml))
    n_ours = sum(len(p.scores) for p in on_square)
    assert abs(n_ours - n_theirs) <= max(1, 0.02 * n_theirs), (n_ours, n_theirs)  # a near-tie in NMS
    served, _ = predict_dataset(Detector(ultralytics_val["ref"], conf=EVAL_CONF), load_dataset(yml))
    assert report.n_predictions == sum(len(p.scores) for p in served)
    assert (out / "pr_curve.png").stat().st_size > 1000
    saved = json.loads((out / "report.json").read_text())
    assert saved["map50"] == pytest.approx(report.map50, abs=1e-6)
    lines = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]
    assert len(lines) == 4
    for ln in lines:
        assert ln["n_gt"] == ln["tp"] + len(ln["missed"])
        assert set(ln) == {"path", "n_gt", "tp", "missed", "false"}


# ------------------------------------------------------------------------------------------- CLI


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inkloop", *args], capture_output=True, text=True, timeout=600
    )


def test_cli_evaluate(tmp_path: Path, pages_dir: Path) -> None:
    out = tmp_path / "eval"
    p = run_cli("evaluate", "--data", str(pages_dir), "--out", str(out), "--json", "--conf", "0.1")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["operating_threshold"] == 0.1 and d["n_images"] == 4
    assert {f.name for f in out.iterdir()} == {"report.json", "errors.jsonl", "pr_curve.png"}


def test_cli_evaluate_by_group(tmp_path: Path, pages_dir: Path) -> None:
    """The fixture pages come from two collections; ``--group-by`` scores each on its own."""
    out = tmp_path / "eval"
    p = run_cli("evaluate", "--data", str(pages_dir), "--out", str(out), "--group-by", "^[^_]+")
    assert p.returncode == 0, p.stderr
    assert "by group" in p.stdout and "tobacco800" in p.stdout and "xc8up" in p.stdout
    d = json.loads((out / "report.json").read_text())
    assert d["group_by"] == "^[^_]+"
    assert {k: v["n_images"] for k, v in d["groups"].items()} == {"tobacco800": 2, "xc8up": 2}
    assert sum(v["n_gt"] for v in d["groups"].values()) == d["n_gt"]
    assert sum(v["tp"] for v in d["groups"].values()) == d["tp"]
    bad = run_cli("evaluate", "--data", str(pages_dir), "--out", str(out), "--group-by", "(unclosed")
    assert bad.returncode == 2
    assert "--group-by" in bad.stdout and "unclosed" in bad.stdout


def test_cli_evaluate_reports_each_domain(tmp_path: Path, pages_dir: Path) -> None:
    """Scans and born-digital pages in one split: the report scores each domain beside the total
    (no option needed) and beside --group-by."""
    data = make_two_domain_dataset(tmp_path / "ds", pages_dir, split="val")
    out = tmp_path / "eval"
    p = run_cli("evaluate", "--data", str(data), "--out", str(out), "--group-by", "^[^_-]+")
    assert p.returncode == 0, p.stderr
    assert "by domain" in p.stdout and "digital" in p.stdout and "by group" in p.stdout
    d = json.loads((out / "report.json").read_text())
    assert {k: v["n_images"] for k, v in d["domains"].items()} == {"digital": 6, "scan": 4}
    assert set(d["groups"]) == {"contract", "tobacco800", "xc8up"}
    for k in ("n_images", "n_gt", "n_predictions", "tp", "fp", "fn"):
        assert sum(v[k] for v in d["domains"].values()) == d[k]
    for m in d["domains"].values():
        assert {"map50", "map50_95", "precision", "recall", "f1"} <= set(m)
    # the scans alone are the same numbers as the scan domain
    (data / DOMAINS_FILE).unlink()
    for f in (data / "images" / "val").glob("contract-*"):
        f.unlink()
    p = run_cli("evaluate", "--data", str(data), "--out", str(tmp_path / "scans"), "--json")
    assert p.returncode == 0, p.stderr
    alone = json.loads(p.stdout)
    assert alone["domains"] == {} and "by domain" not in p.stderr
    for k in ("map50", "map50_95", "precision", "recall", "tp", "fp", "fn"):
        assert alone[k] == pytest.approx(d["domains"]["scan"][k], abs=1e-6)


def test_cli_evaluate_exit_codes(tmp_path: Path, pages_dir: Path) -> None:
    p = run_cli("evaluate", "--data", str(tmp_path / "no such dir"), "--out", str(tmp_path / "o"))
    assert p.returncode == 2
    assert "no such dir" in p.stdout + p.stderr
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    p = run_cli("evaluate", "--data", str(pages_dir), "--model", str(bad), "--out", str(tmp_path / "o"))
    assert p.returncode == 4
    assert "bad.onnx" in p.stdout + p.stderr


def test_iou_thresholds_are_cocos() -> None:
    assert IOU_THRESHOLDS.tolist() == pytest.approx([0.5 + 0.05 * i for i in range(10)])

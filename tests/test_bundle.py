"""Shipping a training run as the bundled model: every figure on the card is measured."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from bundle import GRID, NMS_IOUS, choose_domain_thresholds, choose_operating_threshold, duplicate_boxes, ship
from fixture_data import make_dataset

from inkloop.evaluation.evaluator import ImagePredictions
from inkloop.lifecycle.training import dataset_manifest
from inkloop.models.resolve import resolve_model


def test_ship_writes_a_measured_card(tmp_path: Path, pages_dir: Path) -> None:
    """A run folder (the bundled weights stand in for a trained run) shipped on fixture data: the
    card states the preprocessing the run was trained with, the threshold chosen on the grid,
    the val metrics measured with that threshold, the latency ratio and the data hash; served at a
    size other than the training size, the card keeps both."""
    data = make_dataset(tmp_path / "ds", pages_dir)
    run = tmp_path / "run"
    (run / "weights").mkdir(parents=True)
    shutil.copy(resolve_model(None).path.with_name("model.pt"), run / "weights" / "best.pt")
    (run / "recipe.json").write_text(
        json.dumps({"recipe": "bundled-v2", "imgsz": 576, "epochs": 3, "model": "yolov8n.yaml"})
    )
    (run / "results.csv").write_text("epoch,metrics/mAP50(B)\n1,0.5\n2,0.6\n")
    preprocessing = "stretch"  # not the default: the card must say what the run was trained with
    card = ship(run, data, tmp_path / "out", "9", preprocessing=preprocessing, imgsz=416)

    saved = resolve_model(tmp_path / "out" / "model.onnx").card
    assert saved.preprocessing == card.preprocessing == preprocessing
    assert saved.version == "9" and saved.input_size == 416 and saved.recipe["imgsz"] == 576
    assert saved.conf_threshold in GRID
    m = saved.metrics
    assert m["split"] == "val" and m["images"] == 1 and m["boxes"] > 0
    assert 0.0 <= m["mAP50-95"] <= m["mAP50"] <= 1.0
    chosen = next(r for r in m["threshold_choice"]["grid"] if r["threshold"] == saved.conf_threshold)
    assert chosen["recall"] == pytest.approx(m["recall"], abs=1e-4)
    lat = m["cpu_latency"]
    assert 0 < lat["ms_per_image"] < lat["yolov8s_640_ms_per_image"]
    assert saved.recipe["recipe"] == "bundled-v2" and saved.recipe["epochs_completed"] == 2
    assert saved.data_version == dataset_manifest(data)["data_version"] and "AGPL" in saved.license
    assert saved.iou_threshold in NMS_IOUS
    nms = m["nms_choice"]["grid"]
    assert [r["nms_iou"] for r in nms] == list(NMS_IOUS) and isinstance(m["duplicate_boxes"], int)
    picked = next(r for r in nms if r["nms_iou"] == saved.iou_threshold)
    assert picked["mAP50"] == pytest.approx(m["mAP50"], abs=1e-4)
    top = max(r["mAP50"] for r in nms)
    assert picked["mAP50"] >= top - 0.01
    assert picked["duplicate_boxes"] == min(r["duplicate_boxes"] for r in nms if r["mAP50"] >= top - 0.01)
    assert saved.extra["init_weights"]["name"]  # what the run started from, on the card


def _preds(rows: list[tuple[list[list[float]], list[float], list[list[float]]]]) -> list[ImagePredictions]:
    return [
        ImagePredictions(
            path=f"{i}.png",
            gt_boxes=np.array(gt, dtype=np.float64).reshape(-1, 4),
            gt_classes=np.zeros(len(gt), np.int64),
            boxes=np.array(boxes, dtype=np.float64).reshape(-1, 4),
            scores=np.array(scores, dtype=np.float64),
            classes=np.zeros(len(scores), np.int64),
        )
        for i, (boxes, scores, gt) in enumerate(rows)
    ]


def test_threshold_is_the_lowest_with_enough_precision() -> None:
    """Ten true boxes scoring 0.9 … 0.45 and two false ones at 0.5 and 0.3: below 0.5 precision
    falls under 0.85; the rule keeps the most recall that 0.85 precision allows."""
    gt = [[i * 100.0, 0, i * 100.0 + 50, 50] for i in range(10)]
    true_scores = [0.9 - 0.05 * i for i in range(10)]  # 0.90 … 0.45
    boxes = [*gt, [0, 500, 50, 550], [0, 600, 50, 650]]
    preds = _preds([(boxes, [*true_scores, 0.5, 0.3], gt)])
    t, table, rule = choose_operating_threshold(preds, ["signature"])
    row = next(r for r in table if r["threshold"] == t)
    assert row["precision"] >= 0.85 and rule.startswith("lowest")
    lower = [r for r in table if r["threshold"] < t]
    assert lower and all(r["precision"] < 0.85 for r in lower)
    # no threshold precise enough: the best F1 instead, and the rule says so
    noisy = _preds(
        [
            (
                boxes + [[0, 700 + 60 * k, 50, 750 + 60 * k] for k in range(12)],
                [*true_scores, 0.5, 0.3] + [0.95] * 12,
                gt,
            )
        ]
    )
    t2, table2, rule2 = choose_operating_threshold(noisy, ["signature"])
    assert rule2.startswith("best F1") and next(r for r in table2 if r["threshold"] == t2)["f1"] == max(
        r["f1"] for r in table2
    )


def test_each_domain_gets_its_own_lowest_precise_threshold() -> None:
    """Scans with false boxes at 0.5 and 0.45 need 0.45 for precision 0.85 (10 true, 1 false);
    clean digital pages keep it down to 0.10. The card's threshold serves every domain (0.45);
    digital gets its own."""
    gt = [[i * 100.0, 0, i * 100.0 + 50, 50] for i in range(10)]
    scan = _preds([([*gt, [0, 500, 50, 550], [0, 600, 50, 650]], [0.9] * 10 + [0.5, 0.45], gt)])
    digital = _preds([(gt, [0.12 + 0.09 * i for i in range(10)], gt)])  # 0.12 … 0.93, all true
    for p in scan:
        p.domain = "scan"
    for p in digital:
        p.path, p.domain = "d.png", "digital"
    preds = scan + digital
    t, table, rule = choose_operating_threshold(preds, ["signature"])
    assert t == 0.45 and "in every domain (0.85, digital 0.9)" in rule
    assert choose_domain_thresholds(table, t) == {"digital": 0.1}
    # one domain, or none precise enough lower down: nothing of their own
    t1, table1, _ = choose_operating_threshold(scan, ["signature"])
    assert choose_domain_thresholds(table1, t1) == {}


def test_born_digital_pages_are_held_to_their_own_precision_floor() -> None:
    """Born-digital pages must reach precision 0.90, scans 0.85. Digital pages with 20 true boxes
    and 3 false ones at 0.32 read precision 0.87 up to 0.30: enough for a scan's floor, not for
    theirs, so they (and the card's threshold, which serves every domain) start at 0.35; clean
    scans keep their own 0.10."""
    gt = [[i * 100.0, 0, i * 100.0 + 50, 50] for i in range(10)]
    gt2 = [[i * 100.0, 100, i * 100.0 + 50, 150] for i in range(10)]
    false = [[0, 500 + 100 * k, 50, 550 + 100 * k] for k in range(3)]
    scan = _preds([(gt, [0.9] * 10, gt)])
    digital = _preds([([*gt, *gt2, *false], [0.9] * 20 + [0.32] * 3, [*gt, *gt2])])
    for p in scan:
        p.domain = "scan"
    for p in digital:
        p.path, p.domain = "d.png", "digital"
    t, table, _ = choose_operating_threshold(scan + digital, ["signature"])
    at_010 = table[0]["domains"]["digital"]
    assert 0.85 <= at_010["precision"] < 0.90 and at_010["recall"] == 1.0
    assert t == 0.35
    assert choose_domain_thresholds(table, t) == {"scan": 0.1}


def test_duplicate_boxes_counts_nested_and_overlapping_boxes() -> None:
    big, inner, apart = [0, 0, 100, 40], [10, 5, 60, 35], [300, 0, 400, 40]
    preds = _preds([([big, inner, apart], [0.9, 0.8, 0.7], [big, apart])])
    assert duplicate_boxes(preds, 0.5) == 1  # the nested box (IoU 0.375: plain NMS keeps it)
    assert duplicate_boxes(preds, 0.85) == 0  # only the big box is kept

"""Shipping a training run as the bundled model: every figure on the card is measured."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fixture_data import make_dataset

from inkloop.bundle import GRID, ship
from inkloop.models import resolve_model
from inkloop.training import dataset_manifest


def test_ship_writes_a_measured_card(tmp_path: Path, pages_dir: Path) -> None:
    """A run folder (the bundled weights stand in for a trained run) shipped on fixture data: the
    card states the preprocessing the run was trained with, the threshold chosen on the grid,
    the val metrics measured with that threshold, the latency ratio and the data hash."""
    data = make_dataset(tmp_path / "ds", pages_dir)
    run = tmp_path / "run"
    (run / "weights").mkdir(parents=True)
    shutil.copy(resolve_model(None).path.with_name("model.pt"), run / "weights" / "best.pt")
    (run / "recipe.json").write_text(json.dumps({"recipe": "bundled-v2", "imgsz": 416, "epochs": 3}))
    (run / "results.csv").write_text("epoch,metrics/mAP50(B)\n1,0.5\n2,0.6\n")
    preprocessing = "stretch"  # not the default: the card must say what the run was trained with
    card = ship(run, data, tmp_path / "out", "9", preprocessing=preprocessing)

    saved = resolve_model(tmp_path / "out" / "model.onnx").card
    assert saved.preprocessing == card.preprocessing == preprocessing
    assert saved.version == "9" and saved.input_size == 416
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

"""The stretched copy of a dataset: square pages, labels unchanged, trainable by ultralytics."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
import yaml
from fixture_data import SPLITS, make_dataset
from stretched import make_stretched

from inkloop.evaluation.evaluator import load_dataset


def test_stretched_pages_are_square_and_keep_their_labels(tmp_path, pages_dir):
    src = make_dataset(tmp_path / "src", pages_dir)
    info = make_stretched(src, tmp_path / "sq", size=256)
    assert info["pages"] == {split: len(stems) for split, stems in SPLITS.items()}
    cfg = yaml.safe_load((tmp_path / "sq" / "data.yaml").read_text())
    assert [cfg[k] for k in ("train", "val", "test")] == ["images/train", "images/val", "images/test"]
    assert cfg["names"] == {0: "signature"}
    for split in SPLITS:
        before = {s.image.stem: s for s in load_dataset(src, split).samples}
        after = load_dataset(tmp_path / "sq", split).samples
        assert {s.image.stem for s in after} == set(before)
        for s in after:
            h, w = cv2.imread(str(s.image)).shape[:2]
            assert (w, h) == (256, 256)
            orig = before[s.image.stem]
            text = orig.label.read_text() if orig.label is not None and orig.label.is_file() else ""
            assert s.label is not None and s.label.read_text() == text
            # boxes scale with the page: the same normalized box on a 256-px square
            oh, ow = cv2.imread(str(orig.image)).shape[:2]
            if len(orig.boxes):
                assert abs(s.boxes[0][2] / 256 - orig.boxes[0][2] / ow) < 1e-6
                assert abs(s.boxes[0][3] / 256 - orig.boxes[0][3] / oh) < 1e-6


def test_stretching_refuses_a_dataset_without_train(tmp_path, pages_dir):
    pages = sorted(p for p in Path(pages_dir).iterdir() if p.suffix.lower() == ".png")
    root = tmp_path / "only-val"
    (root / "images" / "val").mkdir(parents=True)
    (root / "images" / "val" / pages[0].name).write_bytes(pages[0].read_bytes())
    with pytest.raises(ValueError, match="no train split"):
        make_stretched(root, tmp_path / "out", size=64)

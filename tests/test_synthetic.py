"""Synthetic pages: a real signature pasted on a blank region, labelled, val untouched."""

from __future__ import annotations

import numpy as np
import yaml
from fixture_data import make_dataset
from PIL import Image
from synthetic import make_synthetic

from inkloop.convert.yolo import from_yolo, read_labels
from inkloop.evaluation.evaluator import load_dataset


def test_synthetic_pages_add_one_labelled_signature(tmp_path, pages_dir):
    pages = sorted(p for p in pages_dir.iterdir() if p.suffix != ".txt")
    stems = [p.stem for p in pages]
    data = make_dataset(tmp_path / "data", pages_dir, {"train": stems[:3], "val": stems[3:]})
    info = make_synthetic(str(data), tmp_path / "synth", pages=4, seed=1)
    assert info["synthetic_pages"] == 4 and info["crops"] >= 3

    made = sorted((tmp_path / "synth" / "images" / "train").glob("*.jpg"))
    assert len(made) == 4
    train = {p.stem: p for p in (data / "images" / "train").iterdir()}
    for f in made:
        host_stem = f.stem.split("-", 2)[2]
        host = np.asarray(Image.open(train[host_stem]).convert("L"), dtype=np.int16)
        new = np.asarray(Image.open(f).convert("L"), dtype=np.int16)
        assert new.shape == host.shape
        host_boxes = read_labels((data / "labels" / "train" / f"{host_stem}.txt").read_text())
        boxes = read_labels((tmp_path / "synth" / "labels" / "train" / f"{f.stem}.txt").read_text())
        assert len(boxes) == len(host_boxes) + 1  # the page's own signatures, plus the pasted one
        h, w = new.shape
        x0, y0, x1, y1 = (round(v) for v in from_yolo(boxes[-1][1], w, h))
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        # the pasted ink is inside its box: there the page got darker, by more than JPEG noise
        assert (host[y0:y1, x0:x1] - new[y0:y1, x0:x1]).mean() > 3

    cfg = yaml.safe_load((tmp_path / "synth" / "data.yaml").read_text())
    assert len(cfg["train"]) == 2 and cfg["val"] == [str((data / "images" / "val").resolve())]
    # the training set is the real train pages plus the synthetic ones; val is the real val only
    both = load_dataset(str(tmp_path / "synth" / "data.yaml"), "train")
    assert len(both) == 3 + 4
    assert len(load_dataset(str(tmp_path / "synth" / "data.yaml"), "val")) == len(pages) - 3

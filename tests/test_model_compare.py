"""The input-size / preprocessing comparison measures what ``inkloop evaluate`` measures, per config."""

from __future__ import annotations

import shutil

import pytest
from model_compare import compare, input_shape, markdown

from inkloop.evaluation.evaluator import evaluate
from inkloop.models.resolve import resolve_model


def test_input_shape_matches_the_pipeline():
    assert input_shape(416, "letterbox") == (416, 352)  # a letter page: 352×416, as the detector says
    assert input_shape(640, "letterbox") == (640, 512)
    assert input_shape(416, "stretch") == (416, 416)


@pytest.mark.slow
def test_compare_on_fixture_pages(tmp_path, pages_dir):
    for kind in ("images", "labels"):
        (tmp_path / kind / "val").mkdir(parents=True)
    for p in pages_dir.iterdir():
        shutil.copy(p, tmp_path / ("labels" if p.suffix == ".txt" else "images") / "val" / p.name)
    served = resolve_model(None).card.input_size  # the bundled card's own size (480 for @7)
    result = compare(None, str(tmp_path), sizes=(320, served), repeats=2)
    rows = {(r["preprocessing"], r["input_size"]): r for r in result["rows"]}
    assert set(rows) == {("letterbox", 320), ("letterbox", served), ("stretch", 320), ("stretch", served)}
    trained = [k for k, r in rows.items() if r["trained_size"]]
    assert trained == [("letterbox", served)]  # the bundled card's own configuration
    own = evaluate(None, str(tmp_path), "val", plot=False)  # the card's config, evaluated directly
    assert rows[("letterbox", served)]["mAP50"] == round(own.map50, 4)
    assert rows[("letterbox", served)]["recall"] == round(own.recall, 4)
    assert all(r["ms_per_page"] > 0 and r["ratio_to_yolov8s_640"] > 0 for r in rows.values())
    assert result["yolov8s_640_ms_per_page"] > 0
    table = markdown(result).splitlines()
    assert len(table) == 2 + 4 and f"**{served}** (served)" in table[3]

"""The routing measurement runs end to end on the fixture pages and counts errors consistently."""

from __future__ import annotations

import shutil

from routing_eval import measure

from inkloop.evaluation.routing_errors import page_has_error


def test_page_has_error():
    assert not page_has_error([(0, 0, 10, 10)], [(0, 0, 10, 10)])
    assert page_has_error([], [(0, 0, 10, 10)])  # missed
    assert page_has_error([(0, 0, 10, 10), (50, 50, 60, 60)], [(0, 0, 10, 10)])  # false box
    assert not page_has_error([], [])


def test_measure_on_fixture_pages(tmp_path, pages_dir):
    for split in ("val",):
        (tmp_path / "images" / split).mkdir(parents=True)
        (tmp_path / "labels" / split).mkdir(parents=True)
        for p in pages_dir.iterdir():
            dst = "labels" if p.suffix == ".txt" else "images"
            shutil.copy2(p, tmp_path / dst / split / p.name)
    out = measure(None, str(tmp_path), "val", budget=0.5)
    assert out["pages"] == 4 and out["reviewed_pages"] == 2
    assert 0 <= out["errors_caught_by_routing"] <= out["pages_with_errors"] <= 4
    if out["pages_with_errors"]:
        assert abs(out["random_share_of_error_pages"] - 0.5) < 0.05  # random catches `budget` of them

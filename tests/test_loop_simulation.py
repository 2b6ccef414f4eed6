"""``inkloop loop simulate`` replays the loop for real (training, routing, evaluation) on fixture pages.

Tiny settings (128 px, one epoch per model) keep it to a couple of minutes; what is checked is
the loop's bookkeeping and that routing's picks are the pages the real pipeline ranks most
uncertain, not the quality of one-epoch models.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from inkloop.benchmarks.loop_simulation import SimulationConfig, plan, simulate
from inkloop.detection.pipeline import DetectOptions, detect
from inkloop.detection.results import read_results
from inkloop.detection.routing import RoutingConfig, route_results


def make_dataset(root: Path, pages_dir: Path) -> Path:
    """8 training pages (each fixture page twice, different names and bytes) and 4 held-out pages."""
    pages = sorted(p for p in pages_dir.iterdir() if p.suffix != ".txt")
    for split, copies in (("train", 2), ("val", 1)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for c in range(copies):
            for p in pages:
                name = f"{p.stem}-{c}"
                data = p.read_bytes() + (b"\0" * c)  # trailing bytes: another file, the same image
                (root / "images" / split / f"{name}{p.suffix}").write_bytes(data)
                shutil.copy(p.with_suffix(".txt"), root / "labels" / split / f"{name}.txt")
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames:\n  0: signature\n")
    return root


def test_plan_splits_every_page_once():
    seed, arrivals, reviewed = plan(529, 0.2, 3, 0.2, seed=0)
    flat = seed + [i for a in arrivals for i in a]
    assert sorted(flat) == list(range(529)) and len(seed) == 106
    assert [len(a) for a in arrivals] == [141, 141, 141] and reviewed == [29, 29, 29]
    assert plan(529, 0.2, 3, 0.2, seed=0) == (seed, arrivals, reviewed)  # reproducible
    with pytest.raises(ValueError, match="cannot fill"):
        plan(3, 0.5, 3, 0.2, seed=0)


def test_bad_settings_are_refused(tmp_path):
    for bad in ({"budget": 0.0}, {"seed_fraction": 1.0}, {"rounds": 0}, {"strategies": ("oracle",)}):
        with pytest.raises(ValueError):
            SimulationConfig(data="x", workdir=str(tmp_path), **bad)


@pytest.mark.slow
def test_simulation_end_to_end(tmp_path, pages_dir):
    data = make_dataset(tmp_path / "data", pages_dir)
    work = tmp_path / "sim"
    config = SimulationConfig(
        data=str(data / "data.yaml"),
        workdir=str(work),
        budget=0.5,
        rounds=2,
        seed_fraction=0.25,
        imgsz=128,
        seed_epochs=1,
        round_epochs=1,
        batch=4,
        conf=0.01,  # one-epoch models score low; keep some boxes so routing has something to rank
    )
    events: list[tuple[str, str]] = []
    report = simulate(config, lambda stage, info: events.append((stage, info.get("tag", ""))))

    # bookkeeping: 2 seed pages, 2 rounds of 3 arrivals, 2 reviewed per round and strategy
    assert (report.seed_pages, report.arrivals_per_round, report.reviewed_per_round) == (2, [3, 3], [2, 2])
    assert [(s.strategy, s.round) for s in report.steps] == [
        ("seed", 0),
        ("routing", 1),
        ("routing", 2),
        ("random", 1),
        ("random", 2),
    ]
    rows = report.table()
    assert [r["routing_pages"] for r in rows] == [2, 4, 6] == [r["random_pages"] for r in rows]
    for s in report.steps:
        assert 0.0 <= s.map50 <= 1.0 and 0.0 <= s.recall <= 1.0
        assert Path(s.model).is_file()
        assert json.loads(Path(s.model).with_name("card.json").read_text())["input_size"] == 128
    # each strategy's picks come from that round's arrivals and never repeat
    _, arrivals, _ = plan(8, 0.25, 2, 0.5, seed=0)
    train = sorted((data / "images" / "train").iterdir())
    for strategy in ("routing", "random"):
        picked: list[str] = []
        for r in (1, 2):
            step = report.step(strategy, r)
            assert step is not None and len(step.selected) == 2
            allowed = {str(train[i]) for i in arrivals[r - 1]}
            assert set(step.selected) <= allowed
            picked += step.selected
        assert len(set(picked)) == 4
    # each round fine-tunes the strategy's previous model
    rec = json.loads((work / "runs" / "routing-r2" / "recipe.json").read_text())
    assert rec["parent"]["ref"] == str(work / "runs" / "routing-r1" / "weights" / "last.pt")
    assert rec["epochs"] == 1 and rec["imgsz"] == 128 and rec["extra"]["val"] is False

    # routing's round-1 picks are the top-2 pages by uncertainty of the seed model on the arrivals
    arrival_pages = [str(train[i]) for i in arrivals[0]]
    rc = RoutingConfig(
        max_review_fraction=None, max_review_pages=2, review_min_uncertainty=0.0, audit_rate=0.0
    )
    detect(arrival_pages, tmp_path / "check", DetectOptions(model=report.steps[0].model, routing=rc))
    routed = route_results(read_results(tmp_path / "check"), rc)
    expected = {str(Path(r.source)) for r in routed if r.decision == "review"}
    assert {str(Path(p)) for p in report.step("routing", 1).selected} == expected
    assert ("route", "routing-r1") in events and ("train", "random-r2") in events

    # a rerun with the same work folder reuses every finished step: nothing is trained again
    again_events: list[str] = []
    again = simulate(config, lambda stage, info: again_events.append(stage))
    assert again.table() == report.table()
    assert "train" not in again_events and "route" not in again_events
    with pytest.raises(ValueError, match="other settings"):
        simulate(SimulationConfig(**{**config.__dict__, "budget": 0.4}))

    # the CLI prints the table and writes it as Markdown (the finished work folder is reused)
    md = tmp_path / "table.md"
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "inkloop",
            "loop",
            "simulate",
            "--data",
            config.data,
            "--workdir",
            str(work),
            "--budget",
            "0.5",
            "--rounds",
            "2",
            "--seed-fraction",
            "0.25",
            "--imgsz",
            "128",
            "--seed-epochs",
            "1",
            "--round-epochs",
            "1",
            "--batch",
            "4",
            "--conf",
            "0.01",
            "--markdown",
            str(md),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},  # rich wraps headers in a narrow terminal
    )
    assert cli.returncode == 0, cli.stderr
    assert "mAP50 routing" in cli.stdout and "mAP50 random" in cli.stdout
    lines = md.read_text().splitlines()
    assert lines[0].startswith("| round | labelled pages | mAP50 routing") and len(lines) == 2 + 3

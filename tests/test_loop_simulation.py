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

from inkloop.api import DetectOptions, detect
from inkloop.benchmarks.loop_simulation import SimulationConfig, plan, simulate
from inkloop.detection.results import read_results
from inkloop.routing import RoutingConfig, read_routing, route_results


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


def test_a_work_folder_resumes_only_a_report_with_its_own_settings(tmp_path):
    """Both loop benchmarks resume from the report in their work folder, and refuse one written
    with other settings (naming the file) instead of mixing two runs."""
    from inkloop.benchmarks.replay import ReplayError
    from inkloop.benchmarks.workfolder import WorkFolderRun

    run = WorkFolderRun(str(tmp_path / "a" / "work"), None)
    assert run.work.is_dir() and run.work.is_absolute()
    run.progress("stage", {})  # no progress function: events go nowhere
    assert run.report_path == run.work / "simulation.json"
    assert run.previous_report({"rounds": 3}, "a replay") is None
    run.report_path.write_text(json.dumps({"config": {"rounds": 3}, "seconds": 12.5}))
    assert run.previous_report({"rounds": 3}, "a replay")["seconds"] == 12.5
    with pytest.raises(ReplayError, match=r"simulation\.json was written by a replay with other settings"):
        run.previous_report({"rounds": 4}, "a replay", ReplayError)
    # the runs rewrite it through the base too (atomically: no temporary file is left beside it)
    run.save_report({"config": {"rounds": 3}, "seconds": 20.0, "new_domain": "née-numérique"})
    assert run.previous_report({"rounds": 3}, "a replay")["new_domain"] == "née-numérique"
    assert sorted(p.name for p in run.work.iterdir()) == ["simulation.json"]


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
    detect(
        arrival_pages,
        tmp_path / "check",
        DetectOptions(model=report.steps[0].model),
        routing=rc,
        verdict=False,
    )
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


# -- the replay from production ----------------------------------------------------------------------


class _Stop(Exception):
    """Raised from the progress callback: the replay stopped as if the machine went down."""


def _synth(out: Path, pages: int, seed: int) -> Path:
    from inkloop.synth.build import SynthOptions, synthesize

    synthesize(
        SynthOptions(crops=str(FIXTURE_PAGES), out=str(out), pages={"val": pages}, seed=seed, dpis=(100.0,))
    )
    return out


def _scans(dest: Path, names: list[str]) -> Path:
    dest.mkdir(parents=True)
    for p in sorted(FIXTURE_PAGES.iterdir()):
        if any(p.name.startswith(n) for n in names):
            shutil.copy(p, dest / p.name)
    return dest


FIXTURE_PAGES = Path(__file__).parent / "fixtures" / "pages"


def test_replay_starts_from_a_model_folder_with_its_card(tmp_path):
    """An earlier model taken out of git history (model.pt, model.onnx, card.json) starts the replay
    as its card describes it, per-domain thresholds and input size included, not re-exported
    with export defaults."""
    from inkloop.benchmarks.replay import Replay, ReplayConfig
    from inkloop.models.references import bundled_model_path, load_local

    bundled = bundled_model_path().parent
    folder = tmp_path / "earlier"
    folder.mkdir()
    for name in ("model.pt", "model.onnx", "card.json"):
        shutil.copy(bundled / name, folder / name)
    config = ReplayConfig(
        stream=(str(_scans(tmp_path / "scans", ["tobacco800"])),),
        test=(str(_scans(tmp_path / "test-scans", ["xc8up"])),),
        workdir=str(tmp_path / "work"),
        stream_split="val",
        test_split="val",
        start_model=str(folder / "model.pt"),
    )
    start = Replay(config)._start_model()
    expected = load_local(bundled / "model.onnx").card
    assert start.card.thresholds == expected.thresholds
    assert start.card.input_size == expected.input_size
    assert start.card.sha256 == expected.sha256  # the folder's own ONNX, not a fresh export
    assert not (tmp_path / "work" / "start").exists()


@pytest.mark.slow
def test_replay_from_production_end_to_end(tmp_path):
    """A tiny but real replay: synth contracts and fixture scans stream in over 2 rounds; each of
    routing, random and all reviews its pages, fine-tunes production (1 epoch, 128 px), exports,
    and the gate (default policy) decides; a stop after one round resumes where it stopped."""
    from inkloop.benchmarks.replay import PLOT, REPORT, ReplayConfig, replay
    from inkloop.lifecycle.gate import read_decision
    from inkloop.models.resolve import open_registry

    config = ReplayConfig(
        stream=(str(_synth(tmp_path / "stream", 6, 0)), str(_scans(tmp_path / "scans", ["tobacco800"]))),
        test=(str(_synth(tmp_path / "test-digital", 4, 1)), str(_scans(tmp_path / "test-scans", ["xc8up"]))),
        workdir=str(tmp_path / "work"),
        stream_split="val",
        test_split="val",
        base=str(tmp_path / "scans"),  # the old pages production learned from: one joins each round
        base_pages=1,
        budget=0.5,
        rounds=2,
        stream_pages=None,
        epochs=1,
        imgsz=128,
        batch=4,
        parent_weight=0.5,  # each candidate is its fine-tune averaged with the production it started from
    )
    events: list[tuple[str, str, int]] = []

    def stop_after_routing_round_1(stage: str, info: dict) -> None:
        events.append((stage, info.get("strategy", ""), int(info.get("round", 0))))
        if stage == "done" and info["strategy"] == "routing" and info["round"] == 1:
            raise _Stop

    with pytest.raises(_Stop):
        replay(config, stop_after_routing_round_1)
    saved = json.loads((tmp_path / "work" / REPORT).read_text())
    assert [(r["strategy"], r["round"]) for r in saved["rounds"]] == [("start", 0), ("routing", 1)]

    again: list[tuple[str, str, int]] = []
    report = replay(config, lambda stage, info: again.append((stage, info["strategy"], int(info["round"]))))
    # resumed: the finished round was not detected, reviewed or trained again
    assert ("detect", "routing", 1) not in again and ("detect", "routing", 2) in again
    assert ("train", "random", 1) in again and ("train", "all", 2) in again

    work = tmp_path / "work" / "seed-0"
    plan = report.plans["0"]
    assert sum(plan["pages"]) == 8 and plan["reviews"] == [-(-n // 2) for n in plan["pages"]]
    for rnd in (1, 2):
        keys = {
            s: {r.page_key for r in read_results(work / s / f"r{rnd}" / "detect")} for s in config.strategies
        }
        assert keys["routing"] == keys["random"] == keys["all"]  # the same pages for every strategy
        for s in config.strategies:
            row = report.get(0, s, rnd)
            assert row is not None and row.strategy == s and row.pages == len(keys[s])
            want = row.pages if s == "all" else plan["reviews"][rnd - 1]
            assert row.reviewed == len(row.selected) == want  # the budget, exactly
            assert set(row.selected) <= keys[s]
            assert row.errors_caught <= min(row.error_pages, row.reviewed)
            if s == "all":
                assert row.errors_caught == row.error_pages
            # the simulated review went through a pull record file and curation's page records
            pulled = [
                json.loads(x) for x in (work / s / f"r{rnd}" / "reviews.jsonl").read_text().splitlines()
            ]
            assert sorted(p["page_key"] for p in pulled) == row.selected
            assert {p["status"] for p in pulled} == {"submitted"}
            # the gate decided, and production follows its decision
            reg = open_registry(str(work / s / "registry"))
            decision = read_decision(reg, "signature-detector", row.candidate_version)
            assert decision is not None and decision["promoted"] == row.promoted
            before = report.get(0, s, rnd - 1)
            assert before is not None
            expected = row.candidate_version if row.promoted else before.production_version
            assert row.production_version == expected
            assert row.candidate and {"scan", "digital"} <= set(row.candidate["domains"])
            # each round fine-tunes the production of its start, not the refused candidate
            rec = json.loads((work / s / f"r{rnd}" / "train" / "recipe.json").read_text())
            assert rec["parent"]["version"] == before.production_version
            assert rec["epochs"] == 1 and rec["imgsz"] == 128
            soup = reg.show("signature-detector", row.candidate_version).recipe["soup"]
            assert [i["weight"] for i in soup["of"]] == [0.5, 0.5]
            assert soup["of"][0]["sha256"] == rec["parent"]["sha256"]  # blended with its own parent
        # the routing run routed with the verdict's places: every reason is one routing writes
        routed = read_routing(work / "routing" / f"r{rnd}" / "detect")
        assert {r.decision for r in routed.values()} <= {"review", "auto_accept"}
    # the training set of round 2 holds everything reviewed in rounds 1 and 2
    r2 = report.get(0, "random", 2)
    assert r2 is not None
    n_train = len(list((work / "random" / "r2" / "data" / "images" / "train").iterdir()))
    assert n_train == r2.reviewed_total + 1  # and the one old page (--base)

    png = tmp_path / "work" / PLOT
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = report.summary()
    assert set(summary["strategies"]) == {"routing", "random", "all"}
    assert (
        summary["label_efficiency"]["map50"][0]["random_reviewed"]
        == report.get(0, "random", 2).reviewed_total
    )
    md = report.markdown().splitlines()
    assert md[0].startswith("| strategy | round | reviewed") and len(md) == 2 + 3 * 3

    # the CLI on the finished work folder: nothing to redo, the report copied to --out
    out = tmp_path / "report" / "simulation.json"
    args = [sys.executable, "-m", "inkloop", "loop", "simulate", "--workdir", str(tmp_path / "work")]
    for s in config.stream:
        args += ["--stream", s]
    for t in config.test:
        args += ["--test", t]
    args += ["--stream-split", "val", "--budget", "0.5", "--rounds", "2", "--stream-pages", "0"]
    args += ["--base", str(tmp_path / "scans"), "--base-pages", "1"]
    args += ["--epochs", "1", "--imgsz", "128", "--batch", "4", "--parent-weight", "0.5", "--out", str(out)]
    cli = subprocess.run(
        args, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"}
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert (
        json.loads(out.read_text())["rounds"]
        == json.loads((tmp_path / "work" / REPORT).read_text())["rounds"]
    )
    assert out.with_suffix(".png").is_file() and "routing" in cli.stdout
    bad = subprocess.run(
        [*args[:-2], "--out", str(out), "--budget", "0.3"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert bad.returncode == 2 and "other settings" in bad.stdout


def test_replay_settings_are_checked(tmp_path):
    from inkloop.benchmarks.replay import ReplayConfig, ReplayError

    for bad in ({"budget": 0.0}, {"rounds": 0}, {"strategies": ("oracle",)}, {"test": ()}, {"seeds": ()}):
        with pytest.raises(ReplayError):
            ReplayConfig(**{"stream": ("s",), "test": ("t",), "workdir": str(tmp_path), **bad})


def test_plan_rounds_cuts_whole_documents_into_rounds():
    from inkloop.benchmarks.replay import StreamDoc, plan_rounds

    docs = [StreamDoc(Path(f"d{i}.pdf"), [[]] * (1 + i % 3), "digital") for i in range(30)]
    batches, reviews = plan_rounds(docs, 3, 0.2, seed=0, max_pages=40)
    flat = [i for b in batches for i in b]
    assert len(flat) == len(set(flat)) and all(batches)
    pages = [sum(docs[i].n_pages for i in b) for b in batches]
    assert 40 <= sum(pages) <= 42 and max(pages) - min(pages) <= 4
    assert reviews == [-(-(p * 2) // 10) for p in pages]  # ceil(0.2 · pages)
    assert plan_rounds(docs, 3, 0.2, seed=0, max_pages=40) == (batches, reviews)
    assert plan_rounds(docs, 3, 0.2, seed=1, max_pages=40)[0] != batches


def test_replay_logs_one_mlflow_run_per_strategy(tmp_path, mlflow_server, monkeypatch):
    """With tracking on, each strategy gets its own MLflow run: settings, per-round metrics (the
    round as the step) for candidate and production per domain, the report and the plot."""
    from inkloop.benchmarks.replay import ReplayConfig, ReplayReport, Round, plot_report
    from inkloop.cli.loop import _track_replay

    url, _ = mlflow_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "loop-replay-test")
    config = ReplayConfig(
        stream=("s",), test=("t",), workdir=str(tmp_path), rounds=1, strategies=("routing", "random")
    )

    def metrics(total: float, digital: float) -> dict:
        return {
            "map50": total,
            "recall": total,
            "domains": {"digital": {"map50": digital, "recall": digital}},
        }

    def row(strategy: str, rnd: int, cand: float | None, caught: int) -> Round:
        m = None if cand is None else metrics(cand, cand)
        return Round(
            seed=0, strategy=strategy, round=rnd, pages=10 * rnd, reviewed=2 * rnd, reviewed_total=2 * rnd,
            error_pages=4 * rnd, errors_caught=caught, candidate=m,
            production=metrics(0.7, 0.5), promoted=False, gate_reasons=[], production_version="v1",
            candidate_version=None if cand is None else "v2", selected=[],
        )  # fmt: skip

    report = ReplayReport(
        config=config.key(),
        seeds=[0],
        test_pages={"scan": 3, "digital": 3},
        rounds=[row("start", 0, None, 0), row("routing", 1, 0.8, 2), row("random", 1, 0.75, 1)],
    )
    plot_report(report, tmp_path / "simulation.png")
    eff = report.summary()["label_efficiency"]["map50"][0]
    assert eff["routing_reviewed_to_reach"] == 2 and eff["random_final"] == 0.75
    _track_replay(config, report, tmp_path)

    import mlflow

    client = mlflow.MlflowClient(url)
    exp = client.get_experiment_by_name("loop-replay-test")
    runs = client.search_runs([exp.experiment_id])
    by_strategy = {r.data.tags["inkloop.strategy"]: r for r in runs}
    assert set(by_strategy) == {"routing", "random"}
    routing = by_strategy["routing"]
    assert routing.data.metrics["seed0.candidate.digital.map50"] == 0.8
    assert routing.data.metrics["seed0.errors_caught"] == 2
    assert by_strategy["random"].data.metrics["final.candidate_digital_map50"] == 0.75
    arts = {a.path for a in client.list_artifacts(routing.info.run_id)}
    assert {"simulation.json", "simulation.png"} <= arts

"""``inkloop loop simulate``: replay the review loop, routing against random (and every page).

Two replays, the labels standing in for reviewers:

- from production (``--stream`` and ``--test``): the production model meets a stream of new
  documents; each round runs detection, routing, review, retraining and the gate
  (:mod:`inkloop.benchmarks.replay`);
- from scratch (``--data``): a labelled YOLO dataset's training pages arrive in rounds
  (:mod:`inkloop.benchmarks.loop_simulation`).

The table printed at the end is what a team looks at before trusting routing with its reviewers' time.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from inkloop.cli.common import ExitCode, fail

loop_app = typer.Typer(help="The improvement loop, replayed offline.", no_args_is_help=True)


@contextlib.contextmanager
def _run_errors(console: Any, usage: tuple[type[BaseException], ...]) -> Iterator[None]:
    """A replay's errors as exit codes: ``usage`` (bad inputs) → 2, ``RuntimeError`` → 1."""
    try:
        yield
    except usage as exc:
        raise fail(console, "error", exc, ExitCode.USAGE) from None
    except RuntimeError as exc:
        raise fail(console, "error", exc, ExitCode.ERROR) from None


@loop_app.command("simulate")
def simulate_command(
    data: Annotated[
        str | None,
        typer.Option(help="From scratch: a labelled YOLO dataset (data.yaml or folder) with train and val."),
    ] = None,
    stream: Annotated[
        list[str] | None,
        typer.Option(
            help="From production: new labelled documents, repeatable: an `inkloop synth` folder (its PDFs) "
            "or a YOLO dataset of scans (each image a document)."
        ),
    ] = None,
    test: Annotated[
        list[str] | None,
        typer.Option(help="With --stream: the frozen test set, repeatable (YOLO datasets; both domains)."),
    ] = None,
    stream_split: Annotated[
        str, typer.Option(help="With --stream: the split of each source used.")
    ] = "train",
    base: Annotated[
        str | None,
        typer.Option(
            help="With --stream: labelled pages production already learned from (a YOLO dataset); "
            "--base-pages of them join every round's training set, as the curated dataset holds them."
        ),
    ] = None,
    base_split: Annotated[str, typer.Option(help="With --base: its split.")] = "train",
    base_pages: Annotated[int, typer.Option(help="With --base: pages drawn from it per seed.")] = 40,
    test_split: Annotated[str, typer.Option(help="With --stream: the split of each --test source.")] = "val",
    stream_pages: Annotated[
        int, typer.Option(help="With --stream: pages drawn from the stream (whole documents; 0: all).")
    ] = 90,
    strategies: Annotated[
        str, typer.Option(help="With --stream: strategies, comma-separated (routing, random, all).")
    ] = "routing,random,all",
    seeds: Annotated[
        str, typer.Option(help="With --stream: seeds, comma-separated; each shuffles the stream anew.")
    ] = "0",
    epochs: Annotated[int, typer.Option(help="With --stream: fine-tuning epochs per round.")] = 5,
    recipe: Annotated[str, typer.Option(help="With --stream: the training recipe.")] = "finetune-v1",
    parent_weight: Annotated[
        float,
        typer.Option(
            help="With --stream: average each round's fine-tune with the production model it "
            "started from, this share of the parent, as the retrain DAG does (0: off)."
        ),
    ] = 0.5,
    new_domain: Annotated[
        str, typer.Option(help="With --stream: the domain the label efficiency is measured on.")
    ] = "digital",
    out: Annotated[
        Path | None, typer.Option(help="Also copy simulation.json (and the plot beside it) here.")
    ] = None,
    budget: Annotated[float, typer.Option(help="Share of each round's new pages sent to review.")] = 0.2,
    rounds: Annotated[int, typer.Option(help="Review rounds after the seed model.")] = 3,
    seed_fraction: Annotated[
        float, typer.Option(help="Share of the training pages labelled before the loop starts.")
    ] = 0.2,
    start_model: Annotated[
        str | None,
        typer.Option(
            help="With --stream: bundled, registry://NAME@production or a .pt (default bundled; "
            "a model.pt beside its model.onnx and card.json starts with that card's thresholds); "
            "with --data: an architecture yaml (from scratch, the default yolov8n.yaml) "
            "or a .pt to fine-tune on the seed set."
        ),
    ] = None,
    imgsz: Annotated[
        int | None,
        typer.Option(help="Training and model input size (--stream: production's; --data: 320)."),
    ] = None,
    seed_epochs: Annotated[int, typer.Option(help="Epochs for the seed model.")] = 40,
    round_epochs: Annotated[int, typer.Option(help="Fine-tuning epochs per round.")] = 10,
    batch: Annotated[int, typer.Option(help="Training batch size.")] = 16,
    heldout_split: Annotated[
        str, typer.Option(help="Split the models are scored on (never trained on).")
    ] = "val",
    seed: Annotated[int, typer.Option(help="Shuffling, random picks and training seed.")] = 0,
    conf: Annotated[
        float, typer.Option(help="Operating threshold of the simulated models (routing's band centre).")
    ] = 0.25,
    workdir: Annotated[
        Path, typer.Option(help="Work folder; a rerun with the same folder continues where it stopped.")
    ] = Path("loop-sim"),
    markdown: Annotated[Path | None, typer.Option(help="Also write the table as Markdown here.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print simulation.json on stdout.")] = False,
) -> None:
    """Per round, mAP50 of a model improved with routing's review picks vs random picks (and every page)."""
    from inkloop.benchmarks.loop_simulation import SimulationConfig, simulate
    from inkloop.cli.console import make_console
    from inkloop.evaluation.evaluator import DatasetError

    console = make_console(json_out)
    # ultralytics logs every export to stdout; the progress lines and the table are what matter here
    os.environ.setdefault("YOLO_VERBOSE", "false")
    if stream:
        try:
            from inkloop.benchmarks.replay import ReplayConfig

            rconfig = ReplayConfig(
                stream=tuple(stream),
                test=tuple(test or ()),
                workdir=str(workdir),
                start_model=start_model or "bundled",
                strategies=tuple(x.strip() for x in strategies.split(",") if x.strip()),
                budget=budget,
                rounds=rounds,
                stream_pages=stream_pages or None,
                stream_split=stream_split,
                base=base,
                base_split=base_split,
                base_pages=base_pages,
                test_split=test_split,
                new_domain=new_domain,
                recipe=recipe,
                parent_weight=parent_weight,
                epochs=epochs,
                imgsz=imgsz,
                batch=batch,
                seeds=tuple(int(x) for x in seeds.split(",") if x.strip()),
            )
        except ValueError as exc:
            raise fail(console, "usage error", exc, ExitCode.USAGE) from None
        _replay(console, rconfig, workdir, out, markdown, json_out)
        return
    if data is None:
        console.print(
            "[red]usage error:[/red] give --stream and --test (from production) or --data (from scratch)"
        )
        raise typer.Exit(ExitCode.USAGE)
    try:
        config = SimulationConfig(
            data=data,
            workdir=str(workdir),
            budget=budget,
            rounds=rounds,
            seed_fraction=seed_fraction,
            start_model=start_model or "yolov8n.yaml",
            imgsz=imgsz or 320,
            seed_epochs=seed_epochs,
            round_epochs=round_epochs,
            batch=batch,
            heldout_split=heldout_split,
            seed=seed,
            conf=conf,
        )
    except ValueError as exc:
        raise fail(console, "usage error", exc, ExitCode.USAGE) from None

    status = console.status("loading the dataset")

    def progress(stage: str, info: dict[str, Any]) -> None:
        tag = info.get("tag", "")
        if stage == "train":
            status.update(f"{tag}: training on {info['pages']} pages, {info['epochs']} epochs")
        elif stage == "epoch":
            status.update(f"{tag}: epoch {info['epoch']}/{info['epochs']}")
        elif stage == "route":
            status.update(f"{tag}: routing {info['pages']} new pages, {info['review']} to review")
        elif stage in ("export", "evaluate"):
            status.update(f"{tag}: {stage}")
        elif stage == "done":
            console.print(f"{tag}: held-out mAP50 {info['map50']:.3f}")

    with _run_errors(console, (DatasetError, ValueError)), status:
        report = simulate(config, progress)

    if markdown is not None:
        markdown.write_text(report.markdown() + "\n")
    _track(config, report, workdir)
    if json_out:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        raise typer.Exit(ExitCode.OK)
    _print_table(console, report)
    raise typer.Exit(ExitCode.OK)


def _replay(
    console: Any, config: Any, workdir: Path, out: Path | None, markdown: Path | None, json_out: bool
) -> None:
    """Run the replay from production with a progress bar per seed and strategy, then report."""
    import shutil

    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from inkloop.benchmarks.replay import PLOT, REPORT, ReplayError, replay
    from inkloop.models.references import ModelError

    progress = Progress(
        TextColumn("{task.fields[name]:<16}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
        disable=json_out,
    )
    bars: dict[tuple[int, str], Any] = {}
    # a round is detection, review, training (one unit per epoch), export and the gate
    per_round = config.epochs + 4

    def bar(seed: int, strategy: str) -> Any:
        key = (seed, strategy)
        if key not in bars:
            bars[key] = progress.add_task(
                "", total=config.rounds * per_round, name=f"seed {seed} {strategy}", completed=0
            )
        return bars[key]

    def on_event(stage: str, info: dict[str, Any]) -> None:
        strategy, seed, rnd = info.get("strategy"), int(info.get("seed", 0)), int(info.get("round", 0))
        if strategy in (None, "start"):
            return
        task = bar(seed, strategy)
        base = (rnd - 1) * per_round
        step = {"detect": 0, "review": 1, "train": 2, "export": 2 + config.epochs, "gate": 3 + config.epochs}
        if stage in step:
            what = {
                "detect": f"detecting {info.get('pages')} pages",
                "review": f"reviewing {info.get('pages')}",
            }
            progress.update(
                task, completed=base + step[stage], description=f"r{rnd} " + what.get(stage, stage)
            )
        elif stage == "epoch":
            progress.update(
                task,
                completed=base + 2 + int(info["epoch"]),
                description=f"r{rnd} epoch {info['epoch']}/{info['epochs']}",
            )
        elif stage in ("done", "skip"):
            row = info.get("row")
            note = "" if row is None else f"r{rnd} {'promoted' if row.promoted else 'refused'}"
            progress.update(task, completed=rnd * per_round, description=note)

    with _run_errors(console, (ReplayError, ModelError)), progress:
        report = replay(config, on_event)
    if markdown is not None:
        markdown.write_text(report.markdown() + "\n")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(workdir / REPORT, out)
        shutil.copyfile(workdir / PLOT, out.with_suffix(".png"))
    _track_replay(config, report, workdir)
    if json_out:
        typer.echo(json.dumps(report.to_dict(), indent=1))
        raise typer.Exit(ExitCode.OK)
    console.print(report.markdown())
    eff = report.summary().get("label_efficiency") or {}
    for key, rows in eff.items():
        for r in rows:
            reached = r["routing_reviewed_to_reach"]
            console.print(
                f"seed {r['seed']}: random's final {report.config['new_domain']} {key} "
                f"{r['random_final']:.3f} "
                f"after {r['random_reviewed']} reviews; routing "
                + ("never reached it" if reached is None else f"reached it after {reached}")
            )
    console.print(f"{report.seconds / 60:.1f} min; {workdir / REPORT}, plot {workdir / PLOT}")
    raise typer.Exit(ExitCode.OK)


def _track_replay(config: Any, report: Any, workdir: Path) -> None:
    """With a tracking URI, one MLflow run per strategy (its settings, per-round metrics with the
    round's reviewed pages as the step, the summary); nothing otherwise."""
    from dataclasses import asdict

    from inkloop.lifecycle.tracking import start_run

    summary = report.summary()
    for strategy in config.strategies:
        tracker = start_run(
            "simulate",
            run_dir=workdir / f"mlflow-{strategy}",
            run_name=f"loop replay {strategy}",
            tags={"inkloop.strategy": strategy},
        )
        if not tracker.active:
            return
        tracker.log_params({**asdict(config), "strategy": strategy})
        for seed in report.seeds:
            for row in report.series(seed, strategy):
                metrics: dict[str, Any] = {
                    f"seed{seed}.reviewed": row.reviewed_total,
                    f"seed{seed}.errors_caught": row.errors_caught,
                    f"seed{seed}.promoted": int(row.promoted),
                }
                for who in ("candidate", "production"):
                    m = getattr(row, who) or {}
                    for key in ("map50", "recall"):
                        if key in m:
                            metrics[f"seed{seed}.{who}.{key}"] = m[key]
                        for dom, dm in (m.get("domains") or {}).items():
                            if key in dm:
                                metrics[f"seed{seed}.{who}.{dom}.{key}"] = dm[key]
                tracker.log_metrics(metrics, step=row.round)
        final = summary["strategies"].get(strategy, {})
        tracker.log_metrics({f"final.{k}": v["mean"] for k, v in final.items() if v})
        tracker.log_dict(report.to_dict(), "simulation.json")
        tracker.log_artifact(workdir / "simulation.png")
        tracker.end()


def _track(config: Any, report: Any, workdir: Path) -> None:
    """With a tracking URI, one MLflow run with the simulation's settings and report; nothing otherwise."""
    from dataclasses import asdict

    from inkloop.lifecycle.tracking import start_run

    tracker = start_run("simulate", run_dir=workdir, run_name=f"loop simulate {Path(str(config.data)).name}")
    tracker.log_params(asdict(config))
    d = report.to_dict()
    tracker.log_metrics({k: v for k, v in d.items() if isinstance(v, int | float)})
    for i, row in enumerate(d.get("rounds") or []):
        if isinstance(row, dict):
            tracker.log_metrics({k: v for k, v in row.items() if isinstance(v, int | float)}, step=i)
    tracker.log_dict(d, "simulation.json")
    tracker.end()


def _print_table(console: Any, report: Any) -> None:
    from rich.table import Table

    strategies = list(report.config["strategies"])
    t = Table(
        title=(
            f"loop simulation: seed {report.seed_pages} pages, arrivals {report.arrivals_per_round}, "
            f"reviewed {report.reviewed_per_round}, held-out {report.heldout_pages} pages"
        )
    )
    t.add_column("round")
    t.add_column("labelled")
    for s in strategies:
        t.add_column(f"mAP50 {s}")
        t.add_column(f"recall {s}")
    for row in report.table():
        cells = [str(row["round"]), str(row.get(f"{strategies[0]}_pages", ""))]
        for s in strategies:
            cells += [
                f"{row.get(f'{s}_map50', float('nan')):.3f}",
                f"{row.get(f'{s}_recall', float('nan')):.3f}",
            ]
        t.add_row(*cells)
    console.print(t)
    console.print(f"{report.seconds / 60:.1f} min; details in simulation.json")

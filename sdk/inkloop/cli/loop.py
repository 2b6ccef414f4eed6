"""``inkloop loop simulate``: replay the review loop on a labelled dataset, routing against random.

The labels stand in for reviewers (see :mod:`inkloop.benchmarks.loop_simulation`); the table printed at the
end is what a team looks at before trusting routing with its reviewers' time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2

loop_app = typer.Typer(help="The improvement loop, replayed offline.", no_args_is_help=True)


@loop_app.command("simulate")
def simulate_command(
    data: Annotated[
        str, typer.Option(help="A labelled YOLO dataset (data.yaml or folder) with train and val.")
    ],
    budget: Annotated[float, typer.Option(help="Share of each round's new pages sent to review.")] = 0.2,
    rounds: Annotated[int, typer.Option(help="Review rounds after the seed model.")] = 3,
    seed_fraction: Annotated[
        float, typer.Option(help="Share of the training pages labelled before the loop starts.")
    ] = 0.2,
    start_model: Annotated[
        str, typer.Option(help="Architecture yaml (from scratch) or .pt to fine-tune on the seed set.")
    ] = "yolov8n.yaml",
    imgsz: Annotated[int, typer.Option(help="Training and model input size.")] = 320,
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
    """Per round, held-out mAP50 of a model improved with routing's review picks vs random picks."""
    from rich.markup import escape

    from inkloop.benchmarks.loop_simulation import SimulationConfig, simulate
    from inkloop.cli.console import make_console
    from inkloop.evaluation.evaluator import DatasetError

    console = make_console(json_out)
    # ultralytics logs every export to stdout; the progress lines and the table are what matter here
    os.environ.setdefault("YOLO_VERBOSE", "false")
    try:
        config = SimulationConfig(
            data=data,
            workdir=str(workdir),
            budget=budget,
            rounds=rounds,
            seed_fraction=seed_fraction,
            start_model=start_model,
            imgsz=imgsz,
            seed_epochs=seed_epochs,
            round_epochs=round_epochs,
            batch=batch,
            heldout_split=heldout_split,
            seed=seed,
            conf=conf,
        )
    except ValueError as exc:
        console.print(f"[red]usage error:[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_USAGE) from None

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

    try:
        with status:
            report = simulate(config, progress)
    except (DatasetError, ValueError) as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_USAGE) from None
    except RuntimeError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_ERROR) from None

    if markdown is not None:
        markdown.write_text(report.markdown() + "\n")
    _track(config, report, workdir)
    if json_out:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        raise typer.Exit(EXIT_OK)
    _print_table(console, report)
    raise typer.Exit(EXIT_OK)


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

"""``inkloop evaluate``: score a model on a YOLO dataset split, with ultralytics-comparable mAP.

Kept out of :mod:`inkloop.cli` so the evaluator's options and output live beside nothing else;
``inkloop.cli`` only registers :func:`evaluate_command`. Exit codes follow ``inkloop.cli``: 2 for a dataset
path that cannot be used (the message names it), 4 for a model that cannot be loaded.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from inkloop.cli.common import ExitCode, QuietOpt, count_progress, fail_for

if TYPE_CHECKING:  # the evaluator loads when the command runs
    from inkloop.evaluation.evaluator import EvalReport


def evaluate_command(
    data: Annotated[
        str,
        typer.Option(
            help="A YOLO data.yaml, a dataset folder (images/<split>, labels/<split>) or a flat folder."
        ),
    ],
    model: Annotated[
        str | None,
        typer.Option(
            help="Model: 'bundled' (default), a .onnx path, hf://…, registry://name@alias, triton://host:port/m."
        ),
    ] = None,
    split: Annotated[str, typer.Option(help="Dataset split to evaluate.")] = "val",
    conf: Annotated[
        float | None,
        typer.Option(help="Operating score threshold for P/R/F1 (default: the model card's)."),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for report.json, errors.jsonl, pr_curve.png.")
    ] = Path("eval-out"),
    device: Annotated[str, typer.Option(help="Execution provider: cpu, cuda, tensorrt, openvino.")] = "cpu",
    batch_size: Annotated[int, typer.Option(help="Images per inference batch.")] = 4,
    target_recall: Annotated[
        float, typer.Option(help="Also report the best-precision threshold reaching this recall.")
    ] = 0.9,
    group_by: Annotated[
        str | None,
        typer.Option(
            help="Also score groups of images separately: a regular expression over file names, "
            "its first group (or whole match) names the group, e.g. '^[^_]+' for a source prefix."
        ),
    ] = None,
    default_domain: Annotated[
        str | None,
        typer.Option(
            help="Domain of the images whose dataset has no domains.json (e.g. 'scan' for a "
            "collection of scans combined with generated digital pages)."
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print report.json on stdout.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Precision/recall/F1 at the operating threshold, mAP50 and mAP50-95, per-image errors, PR plot.

    When the dataset records domains (``domains.json``: scan, digital), every number is also
    reported per domain, beside the total and any --group-by groups.
    """
    from rich.markup import escape

    from inkloop.cli.console import make_console
    from inkloop.evaluation.evaluator import DatasetError, evaluate
    from inkloop.models.references import ModelError

    # With --json, stdout carries only the JSON document; people's output goes to stderr.
    console = make_console(json_out)
    progress = count_progress(console, quiet=quiet)
    task = progress.add_task("images", total=None)

    def on_start(n: int) -> None:
        # Started only once data and model are loaded, so an error message is not followed by an
        # empty progress bar.
        progress.update(task, total=n)
        progress.start()

    try:
        report = evaluate(
            model,
            data,
            split=split,
            conf=conf,
            out_dir=out,
            device=device,
            batch_size=batch_size,
            target_recall=target_recall,
            on_start=on_start,
            progress=lambda n: progress.advance(task, n),
            group_by=group_by,
            default_domain=default_domain,
        )
    except (DatasetError, ModelError) as exc:
        raise fail_for(console, exc) from None
    except re.error as exc:  # evaluate() compiles --group-by before any work
        console.print(f"[red]usage error:[/red] --group-by {escape(repr(group_by))}: {escape(str(exc))}")
        raise typer.Exit(ExitCode.USAGE) from None
    finally:
        if progress.live.is_started:
            progress.stop()

    d = report.to_dict()
    _track(model, data, split, report, out)
    if json_out:
        typer.echo(json.dumps(d, indent=2, ensure_ascii=False))
    else:
        _print_report(console, d, out)
    raise typer.Exit(ExitCode.OK)


def _track(model: str | None, data: str, split: str, report: EvalReport, out: Path) -> None:
    """With a tracking URI (``MLFLOW_TRACKING_URI`` or an Airflow connection ``mlflow``), one MLflow
    run holding the report, the PR curve and the errors file; nothing otherwise."""
    from inkloop.lifecycle.tracking import log_evaluation, start_run

    tracker = start_run(
        "evaluate",
        run_name=f"evaluate {model}",
        tags={"inkloop.model": model, "inkloop.data": data, "inkloop.split": split},
    )
    log_evaluation(tracker, report, prefix=f"eval.{split}")
    tracker.end()


def _print_report(console: Any, d: dict[str, Any], out: Path) -> None:
    from rich.markup import escape
    from rich.table import Table

    title = escape(f"inkloop evaluate — {d['model_version']} on {d['data']} [{d['split']}]")
    t = Table(title=title, show_header=False)
    b, a = d["best_f1"], d["at_target_recall"]
    own = d.get("domain_thresholds") or {}
    cut = f"conf>{d['operating_threshold']:g}" + "".join(f", {k} >{v:g}" for k, v in sorted(own.items()))
    rows = [
        ("images / gt boxes", f"{d['n_images']} / {d['n_gt']}"),
        ("mAP50", f"{d['map50']:.4f}"),
        ("mAP50-95", f"{d['map50_95']:.4f}"),
        (
            f"P / R / F1 @ {cut}",
            f"{d['precision']:.3f} / {d['recall']:.3f} / {d['f1']:.3f}",
        ),
        ("TP / FP / FN", f"{d['tp']} / {d['fp']} / {d['fn']}"),
        (
            "best F1 threshold",
            f"conf>{b['threshold']:.4g}: P {b['precision']:.3f} R {b['recall']:.3f} F1 {b['f1']:.3f}",
        ),
    ]
    if d["target_recall"] is not None:
        rows.append(
            (
                f"recall ≥ {d['target_recall']:g}",
                f"conf>{a['threshold']:.4g}: P {a['precision']:.3f} R {a['recall']:.3f}"
                if a
                else "not reached",
            )
        )
    rows += [
        ("latency", f"{d['latency_ms_per_image']:.1f} ms/image (inference + NMS)"),
        ("seconds", f"{d['seconds']:.1f}"),
        ("outputs", escape(str(out))),
    ]
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)
    if d.get("domains"):
        _print_groups(console, "by domain", "domain", d["domains"])
    if d["groups"]:
        _print_groups(console, f"by group ({d['group_by']})", "group", d["groups"])


def _print_groups(console: Any, title: str, kind: str, groups: dict[str, dict[str, Any]]) -> None:
    """One row per group (or domain), with every number the total has."""
    from rich.markup import escape
    from rich.table import Table

    g = Table(title=escape(title))
    own = any("operating_threshold" in m for m in groups.values())  # cut at their own threshold
    cols = (kind, "images", "gt boxes", "mAP50", "mAP50-95", *(("conf>",) if own else ()), "P", "R", "F1")
    for col in (*cols, "TP / FP / FN"):
        g.add_column(col)
    for name, m in groups.items():
        cut = (f"{m['operating_threshold']:g}" if "operating_threshold" in m else "",) if own else ()
        g.add_row(
            escape(name),
            str(m["n_images"]),
            str(m["n_gt"]),
            f"{m['map50']:.4f}",
            f"{m['map50_95']:.4f}",
            *cut,
            f"{m['precision']:.3f}",
            f"{m['recall']:.3f}",
            f"{m['f1']:.3f}",
            f"{m['tp']} / {m['fp']} / {m['fn']}",
        )
    console.print(g)

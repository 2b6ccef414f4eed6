"""The ``inkloop`` command line: typer for options and help, rich for progress and tables.

Exit codes (stable, scripts rely on them):

- 0: every input processed;
- 1: unexpected internal error;
- 2: usage error (bad option, missing argument);
- 3: finished, but some inputs were quarantined (see ``quarantine.jsonl``);
- 4: model error (missing, corrupt, unloadable model);
- 5: ``inkloop models promote``: the gate refused the candidate (production unchanged);
- 6: ``inkloop train``: stopped before the end (time limit, cancelled) but resumable.

Storage that cannot be read or written (endpoint unreachable, credentials refused, bucket missing,
access denied) ends with exit 1 and a message naming the URL and the reason.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Annotated, Any

import typer

from inkloop.cli.common import ExitCode, QuietOpt, count_progress, fail
from inkloop.cli.console import make_console as _console

app = typer.Typer(
    name="inkloop",
    help="Find handwritten signatures in documents and keep the detector improving.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def detect(
    inputs: Annotated[
        list[str], typer.Argument(help="Files, folders, globs or storage URLs (s3://, gs://, memory://…).")
    ],
    out: Annotated[
        str,  # never a Path: pathlib turns s3://bucket/key into a local folder "s3:"
        typer.Option(
            "--out",
            "-o",
            help="Output folder or storage URL (s3://…) for results.jsonl, quarantine.jsonl, summary.json.",
        ),
    ],
    model: Annotated[
        str | None,
        typer.Option(
            help="Model: 'bundled' (default), a .onnx path, hf://owner/repo/file.onnx@rev, "
            "registry://name@alias, triton://host:port/model (inferred on a Triton server)."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="Execution provider: cpu, cuda, tensorrt, openvino.")] = "cpu",
    conf: Annotated[
        float | None, typer.Option(help="Score threshold (default: the model card's operating threshold).")
    ] = None,
    iou: Annotated[float | None, typer.Option(help="NMS IoU threshold (default: the model card's).")] = None,
    batch_size: Annotated[int, typer.Option(help="Pages per inference batch.")] = 4,
    dpi: Annotated[
        float, typer.Option(help="Reading resolution for PDF page pixels and annotated outputs.")
    ] = 150.0,
    annotate: Annotated[
        bool, typer.Option("--annotate", help="Write an annotated PNG per page (annotated/).")
    ] = False,
    annotate_pdf: Annotated[
        bool, typer.Option("--annotate-pdf", help="Write a copy of each PDF with the boxes as annotations.")
    ] = False,
    crops: Annotated[
        bool, typer.Option("--crops", help="Write a PNG crop of each detection (crops/).")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Re-process documents already in the results.")
    ] = False,
    max_pages: Annotated[int, typer.Option(help="Quarantine documents with more pages than this.")] = 2000,
    max_pixels: Annotated[
        int, typer.Option(help="Quarantine pages larger than this many pixels.")
    ] = 200_000_000,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the run summary as JSON on stdout.")
    ] = False,
    quiet: QuietOpt = False,
    route: Annotated[
        bool,
        typer.Option(
            "--route/--no-route",
            help="Score each page's uncertainty and write routing.jsonl (review / audit / auto_accept).",
        ),
    ] = False,
    review_budget: Annotated[
        float, typer.Option(help="With --route: most pages sent to review, as a fraction of the run.")
    ] = 0.1,
    tta: Annotated[
        bool,
        typer.Option(
            "--tta/--no-tta", help="With --route: a second, test-time-augmented inference per page."
        ),
    ] = True,
    verdict: Annotated[
        bool,
        typer.Option(
            "--verdict/--no-verdict",
            help="Derive each document's signing verdict into verdicts.jsonl and count them (default: on).",
        ),
    ] = True,
) -> None:
    """Detect signatures in documents; every input ends in results.jsonl or quarantine.jsonl.

    Then, unless --no-verdict, each document's signing verdict (signed, partially_signed,
    unsigned, e_signed, no_signature_expected, needs_review) goes to verdicts.jsonl.
    """

    from inkloop import api
    from inkloop.documents.limits import Limits
    from inkloop.models.references import ModelError
    from inkloop.routing import RoutingConfig

    console = _console(json_out)
    opts = api.DetectOptions(
        model=model,
        device=device,
        conf=conf,
        iou=iou,
        batch_size=batch_size,
        people_dpi=dpi,
        force=force,
        annotate_png=annotate,
        annotate_pdf=annotate_pdf,
        crops=crops,
        limits=Limits(max_pages=max_pages, max_pixels=max_pixels),
    )
    # Shown from the run's start (the model is loaded by then: a model error prints no bar) to its end.
    progress = count_progress(console, "{task.fields[pages]} pages", quiet=quiet)
    task = progress.add_task("documents", total=None, pages=0)
    pages, live = [0], [False]

    def stop_progress() -> None:
        if live[0]:
            live[0] = False
            progress.stop()

    def on_event(event: str, info: dict[str, Any]) -> None:
        if event == "start":
            progress.start()
            live[0] = True
            progress.update(task, total=info["documents"])
        elif event == "document":
            pages[0] += info["pages"]
            progress.update(task, advance=1, pages=pages[0])
        elif event in ("quarantine", "skip"):
            progress.update(task, advance=1)
            if event == "quarantine":
                progress.console.print(f"[yellow]quarantined[/yellow] {info['source']}: {info['reason']}")
        elif event == "end":
            stop_progress()

    try:
        summary = api.detect(
            inputs,
            out,
            opts,
            routing=RoutingConfig(max_review_fraction=review_budget, tta=tta) if route else None,
            verdict=verdict,
            progress=on_event,
        )
    except ModelError as exc:
        raise fail(console, "model error", exc, ExitCode.MODEL) from None
    finally:
        stop_progress()
    if json_out:
        typer.echo(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False))
    else:
        _print_summary(console, summary.to_dict())
    raise typer.Exit(ExitCode.QUARANTINED if summary.quarantined else ExitCode.OK)


def _print_summary(console: Any, s: dict[str, Any]) -> None:
    from rich.table import Table

    t = Table(title="inkloop detect", show_header=False)
    for key in (
        "documents",
        "pages",
        "pages_with_detections",
        "detections",
        "skipped",
        "quarantined",
        "seconds",
        "pages_per_second",
        "model_version",
        "out_dir",
    ):
        t.add_row(key.replace("_", " "), str(s[key]))
    console.print(t)
    if s.get("verdicts") is not None:
        from inkloop.cli.verdict import print_verdict_counts
        from inkloop.storage import join

        print_verdict_counts(console, s["verdicts"], join(s["out_dir"], "verdicts.jsonl"))


@app.command()
def version() -> None:
    """Print inkloop's version and the bundled model's version."""
    import inkloop
    from inkloop.models.resolve import resolve_model

    ref = resolve_model(None)
    typer.echo(f"inkloop {inkloop.__version__}; bundled model {ref.card.model_version}")


from inkloop.cli.review import review_app  # noqa: E402
from inkloop.cli.verdict import verdict_command  # noqa: E402

app.command("verdict")(verdict_command)

app.add_typer(review_app, name="review")

from inkloop.cli.evaluate import evaluate_command  # noqa: E402

app.command("evaluate")(evaluate_command)

from inkloop.cli.bench import bench_command  # noqa: E402

app.command("bench")(bench_command)

from inkloop.cli.curate import curate_app  # noqa: E402

app.add_typer(curate_app, name="curate")

from inkloop.cli.loop import loop_app  # noqa: E402

app.add_typer(loop_app, name="loop")

from inkloop.cli.models import (  # noqa: E402
    export_command,
    models_app,
    promote_command,
    sync_runs_command,
    train_command,
    tune_command,
)
from inkloop.cli.renamed import under_old_name  # noqa: E402

models_app.command("promote")(promote_command)  # beside `models rollback`: what moves an alias
app.add_typer(models_app, name="models")
app.command("train")(train_command)
app.command("export")(export_command)
app.command("tune")(tune_command)
app.command("sync-mlflow-runs")(sync_runs_command)
app.command("promote", hidden=True)(under_old_name(promote_command, "promote"))
app.command("sync-runs", hidden=True)(under_old_name(sync_runs_command, "sync-runs"))

from inkloop.cli.synth import synth_command  # noqa: E402

app.command("synth")(synth_command)

from inkloop.cli.serve import demo_command, serve_command  # noqa: E402

app.command("serve")(serve_command)
app.command("demo")(demo_command)


def main(argv: list[str] | None = None) -> None:
    """Console entry point; maps errors to the documented exit codes (typer maps usage errors to 2)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from inkloop.models.references import ModelError
    from inkloop.storage import StorageError

    try:
        app(args=argv)
    except ModelError as exc:
        print(f"model error: {exc}", file=sys.stderr)
        sys.exit(ExitCode.MODEL)
    except StorageError as exc:
        print(f"storage error: {exc}", file=sys.stderr)
        sys.exit(ExitCode.ERROR)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        print(f"error: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        sys.exit(ExitCode.ERROR)


if __name__ == "__main__":
    main()

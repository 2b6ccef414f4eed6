"""``inkloop synth``: labelled born-digital pages from real signature crops (docs/synth.md).

Kept out of :mod:`inkloop.cli` so its options live beside nothing else; ``inkloop.cli`` only
registers :func:`synth_command`. Exit codes follow ``inkloop.cli``: 2 for an input that cannot be
used (the message names the file or URL and why).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from inkloop.cli.common import ExitCode, QuietOpt, count_progress, fail


def _numbers(text: str, what: str, cast: Any) -> list[Any]:
    try:
        values = [cast(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"{what}: expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise typer.BadParameter(f"{what}: no value given")
    return values


def synth_command(
    crops: Annotated[
        str,
        typer.Option(
            help="Where signature crops come from: a YOLO dataset (folder or data.yaml) with the same "
            "splits, or fiftyone:NAME (the reviewed pages of that curation dataset)."
        ),
    ],
    out: Annotated[
        str, typer.Option("--out", "-o", help="New output folder or storage URL (never overwritten).")
    ],
    templates: Annotated[
        str | None,
        typer.Option(
            help="Folder of the team's blank PDF templates: crops go on the signing places found in them."
        ),
    ] = None,
    template_share: Annotated[
        float, typer.Option(help="With --templates: share of documents made from a template.")
    ] = 0.5,
    pages: Annotated[
        str,
        typer.Option(help="Rendered pages per split: one number for all, or one per split ('600,150')."),
    ] = "200",
    splits: Annotated[
        str, typer.Option(help="Splits to make, comma-separated (train, val, test).")
    ] = "train,val",
    seed: Annotated[int, typer.Option(help="Seed: the same options and seed give the same bytes.")] = 0,
    dpi: Annotated[str, typer.Option(help="Render DPIs, one drawn per document.")] = "100,150,200",
    max_pages: Annotated[int, typer.Option(help="Most pages of a generated document.")] = 2,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Make born-digital documents signed with real crops, and a labelled YOLO dataset of their pages.

    Writes OUT/documents/<split>/*.pdf (as an inbox holds them), OUT/images|labels/<split>/ (YOLO),
    data.yaml, domains.json (digital), manifest.json, provenance.jsonl and summary.json. Crops of a
    split come only from that split of --crops.
    """
    from rich.markup import escape

    from inkloop.cli.console import make_console
    from inkloop.synth import SynthError, SynthOptions, synthesize

    console = make_console(json_out)
    names = [s.strip() for s in splits.split(",") if s.strip()]
    counts = _numbers(pages, "--pages", int)
    if len(counts) == 1:
        counts = counts * len(names)
    if len(counts) != len(names):
        console.print(
            f"[red]error:[/red] --pages has {len(counts)} numbers for {len(names)} splits ({splits})"
        )
        raise typer.Exit(ExitCode.USAGE)
    options = SynthOptions(
        crops=crops,
        out=out,
        pages=dict(zip(names, counts, strict=True)),
        seed=seed,
        dpis=_numbers(dpi, "--dpi", float),
        templates=templates,
        template_share=template_share,
        max_pages=max_pages,
    )
    with count_progress(console, "{task.fields[signatures]} signatures", quiet=quiet) as progress:
        task = progress.add_task("pages", total=None, signatures=0)
        state = {"signatures": 0}

        def on_event(event: str, info: dict[str, Any]) -> None:
            if event == "start":
                progress.update(task, total=info["pages"])
            elif event == "page":
                state["signatures"] += info["signatures"]
                progress.update(task, advance=1, signatures=state["signatures"], description=info["split"])

        try:
            summary = synthesize(options, on_event)
        except SynthError as exc:
            progress.stop()
            raise fail(console, "error", exc, ExitCode.USAGE) from None
    if json_out:
        typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
        return
    from rich.table import Table

    t = Table(title=f"inkloop synth → {escape(out)}")
    for col in ("split", "documents", "pages", "signatures", "negative pages"):
        t.add_column(col)
    for split, c in summary["splits"].items():
        t.add_row(split, *(str(c.get(k, 0)) for k in ("documents", "pages", "signatures", "negative_pages")))
    console.print(t)
    console.print(f"data version {summary['data_version']}; {summary['seconds']} s")

"""``inkloop verdict RESULTS``: re-derive every document's signing verdict from stored results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from inkloop.cli.common import ExitCode


def verdict_label(name: str) -> str:
    """A verdict as people write it: ``e_signed`` → "e-signed" (not "e signed"), ``needs_review`` →
    "needs review"."""
    return name.replace("e_signed", "e-signed").replace("_", " ")


def print_verdict_counts(console: Any, counts: dict[str, int], path: Path) -> None:
    """The documents per signing verdict, as a small table (``inkloop detect`` and ``inkloop verdict``)."""
    from rich.table import Table

    t = Table(title="verdicts", show_header=False)
    for name, n in counts.items():
        t.add_row(verdict_label(name), str(n))
    t.add_row("written to", str(path))
    console.print(t)


def verdict_command(
    results: Annotated[Path, typer.Argument(help="A results folder written by `inkloop detect`.")],
    source_root: Annotated[Path | None, typer.Option(help="Base of relative `source` paths.")] = None,
    threshold: Annotated[
        float | None,
        typer.Option(help="The results' operating threshold (default: the bundled model card's)."),
    ] = None,
    band: Annotated[float, typer.Option(help="Boxes below threshold + band are ambiguous.")] = 0.15,
    json_out: Annotated[bool, typer.Option("--json", help="Counts and verdicts as JSON.")] = False,
) -> None:
    """Re-derive verdicts.jsonl from RESULTS and the source documents, without running the model.

    Exit codes: 0 done (documents that could not be judged are `needs_review`, with the reason);
    2 RESULTS holds no results.jsonl, or a bad option; 1 unexpected error.
    """
    from inkloop.cli.console import make_console
    from inkloop.verdict import VerdictConfig, count_verdicts, derive_verdicts

    console = make_console(json_out)
    if not (results / "results.jsonl").is_file():
        console.print(f"[red]usage:[/red] {results} has no results.jsonl (run `inkloop detect` first)")
        raise typer.Exit(ExitCode.USAGE)
    if (threshold is not None and not (0.0 < threshold < 1.0)) or band < 0:
        console.print("[red]usage:[/red] --threshold must be in (0, 1) and --band ≥ 0")
        raise typer.Exit(ExitCode.USAGE)
    if source_root is not None and not source_root.is_dir():
        console.print(f"[red]usage:[/red] --source-root {source_root} is not a folder")
        raise typer.Exit(ExitCode.USAGE)
    if threshold is None:  # the thresholds the bundled model cut its results at, per page domain
        from inkloop.models.resolve import resolve_model

        config = VerdictConfig.at(resolve_model(None).card.thresholds, band=band)
    else:
        config = VerdictConfig(threshold=threshold, band=band)
    verdicts = derive_verdicts(results, config, source_root=source_root)
    counts = count_verdicts(verdicts)
    path = results / "verdicts.jsonl"
    if json_out:
        doc = {
            "counts": counts,
            "verdicts_path": str(path),
            "documents": [
                {"doc_id": v.doc_id, "source": v.source, "verdict": v.verdict, "reasons": v.reasons}
                for v in verdicts
            ],
        }
        typer.echo(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        for v in verdicts:
            why = f" ({v.reasons[0]})" if v.reasons else ""
            typer.echo(f"{v.verdict:<22} {v.source}{why}")  # one line per document, never wrapped
        print_verdict_counts(console, counts, path)
    raise typer.Exit(ExitCode.OK)

"""``inkloop review push | pull | status``: the Label Studio side of the loop, from the shell.

The API token comes from ``--token`` or, better (it then never shows in ``ps``), the environment:
``INKLOOP_LS_TOKEN`` or ``LABEL_STUDIO_API_KEY``. It is a Personal Access Token (what Label Studio
1.23 gives; ``labeling/token.sh`` prints the local dev server's) or a legacy token where the server
still allows them; :mod:`inkloop.review.auth` tells them apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

review_app = typer.Typer(
    help="Send uncertain pages to Label Studio and bring corrections back.", no_args_is_help=True
)

UrlOpt = Annotated[str, typer.Option("--url", envvar="INKLOOP_LS_URL", help="Label Studio URL.")]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar=["INKLOOP_LS_TOKEN", "LABEL_STUDIO_API_KEY"],
        help="Personal Access Token, or a legacy token where allowed (prefer the env var).",
        show_envvar=True,
    ),
]
ProjectOpt = Annotated[str, typer.Option("--project", help="Project title (created if missing).")]
#: Reading commands never create a project: a missing one is an error naming it.
ExistingProjectOpt = Annotated[str, typer.Option("--project", help="Project title (must exist).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")]


def _client(url: str, token: str | None, project: str, class_names: list[str] | None = None) -> Any:
    from inkloop.review.labelstudio import LabelStudioReview

    if not token:
        typer.echo("error: no API token: pass --token or set INKLOOP_LS_TOKEN", err=True)
        raise typer.Exit(2)
    return LabelStudioReview(url, token, project_title=project, class_names=class_names or ["signature"])


def _emit(summary: dict[str, Any], json_out: bool) -> None:
    if json_out:
        typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        for k, v in summary.items():
            if k != "task_ids":
                typer.echo(f"{k}: {v}", err=False)


@review_app.command("push")
def push(
    results: Annotated[Path, typer.Argument(help="A results folder written by `inkloop detect`.")],
    url: UrlOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    project: ProjectOpt = "inkloop review",
    delivery: Annotated[
        str, typer.Option(help="How page images reach Label Studio: upload, local-files.")
    ] = "upload",
    document_root: Annotated[
        Path | None, typer.Option(help="The server's LOCAL_FILES_DOCUMENT_ROOT (local-files).")
    ] = None,
    images_dir: Annotated[
        Path | None, typer.Option(help="Where page images are rendered (default RESULTS/review-images).")
    ] = None,
    budget: Annotated[
        float, typer.Option(help="Most pages sent to review, as a fraction of the run's pages.")
    ] = 0.1,
    max_pages: Annotated[int | None, typer.Option(help="Most pages sent to review, as a count.")] = None,
    include_audit: Annotated[bool, typer.Option(help="Also send the random audit sample.")] = True,
    dpi: Annotated[float, typer.Option(help="Reading resolution of PDF page images.")] = 150.0,
    json_out: JsonOpt = False,
) -> None:
    """Route a results folder and push the pages that need people to Label Studio (idempotent)."""
    from rich.progress import Progress

    from inkloop.detection.routing import RoutingConfig
    from inkloop.review.labelstudio import ReviewServiceError, push_results

    if delivery not in ("upload", "local-files"):
        raise typer.BadParameter("delivery must be upload or local-files", param_hint="--delivery")
    if not (results / "results.jsonl").exists():
        typer.echo(f"error: {results} has no results.jsonl (run `inkloop detect` first)", err=True)
        raise typer.Exit(2)
    try:
        client = _client(url, token, project)
        with Progress(disable=json_out, transient=True) as prog:
            t = prog.add_task("pushing review tasks", total=None)
            summary = push_results(
                client,
                results,
                RoutingConfig(max_review_fraction=budget, max_review_pages=max_pages),
                include_audit=include_audit,
                delivery=delivery,  # type: ignore[arg-type]
                document_root=document_root,
                images_dir=images_dir,
                dpi=dpi,
                progress=lambda n: prog.advance(t, n),
            )
    except ReviewServiceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if summary["unscored"]:
        typer.echo(f"warning: {results} was detected without routing; run `inkloop detect --route`", err=True)
    _emit(summary, json_out)


@review_app.command("pull")
def pull(
    out: Annotated[Path, typer.Option("--out", help="reviews.jsonl to append the pulled reviews to.")],
    url: UrlOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    project: ExistingProjectOpt = "inkloop review",
    state: Annotated[
        Path | None, typer.Option(help="Cursor file for incremental pulls (default OUT.cursor.json).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Pull reviews finished or changed since the last pull; write them as JSON Lines."""
    from inkloop.review.labelstudio import ReviewServiceError, pull_to_file

    try:
        summary = pull_to_file(_client(url, token, project), out, state)
    except ReviewServiceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    _emit(summary, json_out)


@review_app.command("status")
def status(
    url: UrlOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    project: ExistingProjectOpt = "inkloop review",
    json_out: JsonOpt = False,
) -> None:
    """Counts of review tasks: reviewed, skipped, pending."""
    from inkloop.review.labelstudio import ReviewServiceError

    try:
        summary = _client(url, token, project).status()
    except ReviewServiceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    _emit(summary, json_out)

"""What every command shares: the exit codes scripts rely on, the common options, failing with a message.

Why one module: each command group lived in its own module with its own copy of the exit-code
numbers (``EXIT_USAGE = 2`` six times) and of ``--json``/``--quiet``; a new command had to know
which copy was right. The numbers are part of the command line's contract (Airflow tasks, CI
scripts and shell loops branch on them), so they are one :class:`ExitCode`, and never change.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from enum import IntEnum
from typing import Annotated, Any

import typer


class ExitCode(IntEnum):
    """The process exit status of every ``inkloop`` command (stable: scripts rely on them)."""

    #: Done: every input processed, trained to the end, exported, promoted, listed…
    OK = 0
    #: Unexpected error, storage that cannot be read or written, a training process that failed.
    ERROR = 1
    #: A bad option or argument, or an input that cannot be used (the message names it).
    USAGE = 2
    #: ``inkloop detect``: finished, but some inputs were quarantined (see ``quarantine.jsonl``).
    QUARANTINED = 3
    #: A model that is missing, corrupt (checksum mismatch) or cannot be loaded.
    MODEL = 4
    #: ``promote``: the gate refused the candidate; production is unchanged.
    GATE_REFUSED = 5
    #: ``inkloop train``/``tune``: stopped before the end (time limit, cancelled); resumable.
    INCOMPLETE = 6


JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


def count_progress(console: Any, *fields: str, quiet: bool, transient: bool = False) -> Any:
    """The progress bar of a command that counts what it has done (documents, images, epochs,
    pages): what, the bar, done/total, ``fields`` (rich text columns such as
    ``"{task.fields[pages]} pages"``), time elapsed; on ``console``, hidden with ``quiet``.

    One shape for every counting command, so they read alike; the rich import waits for the call
    (``inkloop --help`` stays fast)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *(TextColumn(f) for f in fields),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
        transient=transient,
    )


def fail(console: Any, kind: str, exc: BaseException, code: ExitCode) -> typer.Exit:
    """Print ``kind: message`` (markup in the message shown as text) and return the exit to raise."""
    from rich.markup import escape

    console.print(f"[red]{kind}:[/red] {escape(str(exc))}")
    return typer.Exit(code)


def fail_for(console: Any, exc: BaseException) -> typer.Exit:
    """The exit for the two SDK errors every command maps alike: a dataset that cannot be used is a
    usage error (:class:`~inkloop.datasets.DatasetError`, 2), a model that cannot be a model error
    (:class:`~inkloop.models.references.ModelError`, 4)."""
    from inkloop.datasets import DatasetError

    if isinstance(exc, DatasetError):
        return fail(console, "dataset error", exc, ExitCode.USAGE)
    return fail(console, "model error", exc, ExitCode.MODEL)


@contextlib.contextmanager
def exits_on(code: ExitCode, *errors: type[BaseException]) -> Iterator[None]:
    """``errors`` raised in the block become ``error: <message>`` on stderr and exit ``code``.

    The plain-text sibling of :func:`fail` for the commands whose errors go to stderr unstyled
    (``review``, ``curate``: their stdout may be ``--json``); each wrote the same two lines after
    every ``except``."""
    try:
        yield
    except errors as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code) from None


def parse_settings(items: Iterable[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` options → ``{KEY: value}`` (values read as YAML), or a usage error.

    The reading itself is :func:`inkloop.lifecycle.training.parse_overrides`, the one the training
    process applies to the same settings.
    """
    from inkloop.lifecycle.training import parse_overrides

    try:
        return parse_overrides(items)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None

"""``inkloop curate ...``: the FiftyOne side of the loop, from the shell.

Every command works on one persistent dataset (``--dataset``, env ``INKLOOP_FO_DATASET``, default
``inkloop``) in FiftyOne's database (``FIFTYONE_DATABASE_DIR``; see :mod:`inkloop.curation.database`).
With ``--json`` stdout carries only the JSON summary: FiftyOne's own log lines are lowered to
warnings and everything else people read goes to stderr.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from inkloop.cli.common import ExitCode, JsonOpt, QuietOpt, count_progress, exits_on
from inkloop.cli.console import make_console as _console
from inkloop.cli.renamed import under_old_name

if TYPE_CHECKING:  # FiftyOne loads with the first command that needs it
    from inkloop.curation.store import CurationStore

curate_app = typer.Typer(
    help="Curate reviewed pages in FiftyOne: evaluate, find issues, freeze the test split, export.",
    no_args_is_help=True,
)

DatasetOpt = Annotated[
    str,
    typer.Option("--dataset", envvar="INKLOOP_FO_DATASET", help="FiftyOne dataset name.", show_envvar=True),
]
#: Where the FiftyOne App serves (``open-app`` and its old name ``app``).
AppPortOpt = Annotated[int, typer.Option(help="App port.")]
AppAddressOpt = Annotated[
    str, typer.Option(help="Address the App binds to (FiftyOne's own default is every interface).")
]
AppRemoteOpt = Annotated[bool, typer.Option("--remote", help="Serve for a browser on another machine.")]


@contextlib.contextmanager
def _session(json_out: bool) -> Iterator[None]:
    """Keep stdout clean for ``--json`` and turn setup errors into exit code 1 with the fix."""
    from inkloop.curation.database import CurationSetupError
    from inkloop.curation.records import CurationError
    from inkloop.storage import StorageError

    redirect = contextlib.redirect_stdout(sys.stderr) if json_out else contextlib.nullcontext()
    with (
        exits_on(ExitCode.ERROR, CurationError, CurationSetupError, FileNotFoundError, StorageError),
        redirect,
    ):
        yield


def _store(dataset: str, create: bool = False) -> CurationStore:
    from inkloop.curation.database import quiet
    from inkloop.curation.store import CurationStore

    store = CurationStore(dataset, create=create)
    quiet()
    return store


@contextlib.contextmanager
def _progress(json_out: bool, quiet: bool, what: str) -> Iterator[_Bar]:
    with count_progress(_console(json_out), quiet=quiet, transient=True) as prog:
        yield _Bar(prog, prog.add_task(what, total=None))


class _Bar:
    """One task of a progress bar: ``bar(n)`` counts ``n`` more done (an SDK ``progress``
    callback); ``bar.total(n)`` says how many there are, once the SDK knows (no caller reads the
    data twice just to size the bar)."""

    def __init__(self, prog: Any, task: Any) -> None:
        self.prog, self.task = prog, task

    def __call__(self, n: int) -> None:
        self.prog.advance(self.task, n)

    def total(self, n: int) -> None:
        self.prog.update(self.task, total=n)


def _emit(summary: dict[str, Any], json_out: bool, title: str) -> None:
    if json_out:
        typer.echo(json.dumps(summary, indent=2, ensure_ascii=False, default=str))
        return
    from rich.table import Table

    table = Table(title=title, show_header=False)
    for k, v in summary.items():
        table.add_row(k, v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str))
    _console(False).print(table)


@curate_app.command("import-results")
def import_results_cmd(
    results: Annotated[
        str, typer.Argument(help="A results folder written by `inkloop detect` (a path or s3://… URL).")
    ],
    reviews: Annotated[
        str | None, typer.Option(help="reviews.jsonl from `inkloop review pull` (ground truth; path or URL).")
    ] = None,
    images_dir: Annotated[
        str | None,
        typer.Option(help="Where page images are rendered (default RESULTS/review-images; path or URL)."),
    ] = None,
    dpi: Annotated[float, typer.Option(help="Reading resolution of PDF page images.")] = 150.0,
    reviewed_only: Annotated[
        bool, typer.Option("--reviewed-only", help="Import only reviewed pages.")
    ] = False,
    dataset: DatasetOpt = "inkloop",
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Upsert pages (predictions, and ground truth from reviews) into the dataset, by page_key.

    Each page's domain (scan or digital) is decided from its source document on the way in.
    Page images stored in a bucket are copied to the local media cache FiftyOne reads
    (`inkloop curate media-cache`).
    """
    from inkloop import storage
    from inkloop.curation.cycle import import_results
    from inkloop.detection.results import RESULTS

    with exits_on(ExitCode.USAGE, FileNotFoundError, storage.StorageError):
        if not storage.log_exists(storage.join(results, RESULTS)):
            raise FileNotFoundError(f"{results} has no {RESULTS} (run `inkloop detect` first)")
        if reviews is not None and not storage.exists(reviews):
            raise FileNotFoundError(f"reviews file not found: {reviews}")
    with _session(json_out):
        store = _store(dataset, create=True)
        with _progress(json_out, quiet, "rendering page images") as bar:
            summary = import_results(
                store,
                results,
                reviews,
                images_dir,
                dpi=dpi,
                reviewed_only=reviewed_only,
                progress=bar,
                on_total=bar.total,
            )
    if summary["unrenderable_sources"]:
        typer.echo(
            f"warning: {len(summary['unrenderable_sources'])} source(s) could not be rendered", err=True
        )
    _emit(summary, json_out, "import")


@curate_app.command("evaluate")
def evaluate_cmd(
    iou: Annotated[float, typer.Option(help="IoU for a prediction to match a ground-truth box.")] = 0.5,
    split: Annotated[str | None, typer.Option(help="Only this split (train, val, test).")] = None,
    eval_key: Annotated[
        str | None, typer.Option(help="Evaluation key (default eval, or eval_<split>).")
    ] = None,
    map_: Annotated[bool, typer.Option("--map/--no-map", help="Also compute COCO-style mAP.")] = True,
    dataset: DatasetOpt = "inkloop",
    json_out: JsonOpt = False,
) -> None:
    """Match predictions to ground truth on reviewed pages; per-page TP/FP/FN, precision, recall."""
    with _session(json_out):
        store = _store(dataset)
        summary = store.evaluate(
            eval_key=eval_key or (f"eval_{split}" if split else "eval"),
            iou=iou,
            compute_mAP=map_,
            split=split,
        )
    _emit(summary, json_out, f"evaluation of {dataset}")


@curate_app.command("find-issues")
def find_issues_cmd(
    dup_threshold: Annotated[
        float, typer.Option(help="Cosine distance of page thumbnails below which pages are duplicates.")
    ] = 0.05,
    loc_threshold: Annotated[
        float, typer.Option(help="Flag boxes with localization mistakenness above.")
    ] = 0.7,
    missing_conf: Annotated[
        float, typer.Option(help="Flag unmatched predictions at this confidence as a possibly missing box.")
    ] = 0.8,
    limit: Annotated[int, typer.Option(help="Rows shown in the table (JSON has all).")] = 20,
    dataset: DatasetOpt = "inkloop",
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Near-duplicate pages and likely label mistakes (stored on the samples for the App)."""
    with _session(json_out):
        store = _store(dataset)
        with _progress(json_out, quiet, "embedding page thumbnails") as advance:
            summary = store.find_issues(dup_threshold, loc_threshold, missing_conf, progress=advance)
    if json_out:
        _emit(summary, True, "")
        return
    from rich.table import Table

    console = _console(False)
    console.print(f"{len(summary['near_duplicate_groups'])} near-duplicate group(s)")
    for group in summary["near_duplicate_groups"][:limit]:
        console.print("  " + ", ".join(group))
    table = Table(title=f"{len(summary['label_mistakes'])} page(s) with likely label mistakes")
    for col in ("page_key", "score", "reasons"):
        table.add_column(col)
    for row in summary["label_mistakes"][:limit]:
        table.add_row(row["page_key"], f"{row['score']:.3f}", ", ".join(row["reasons"]))
    console.print(table)


@curate_app.command("split")
def split_cmd(
    test_fraction: Annotated[
        float | None, typer.Option(help="Test share (first freeze only; default 0.2).")
    ] = None,
    val_fraction: Annotated[
        float | None, typer.Option(help="Val share (first freeze only; default 0.1).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Hash seed (first freeze only; default 0).")] = None,
    dataset: DatasetOpt = "inkloop",
    json_out: JsonOpt = False,
) -> None:
    """Assign train/val/test to reviewed pages without one; test pages stay test forever."""
    with _session(json_out):
        summary = _store(dataset).freeze_test_split(test_fraction, val_fraction, seed)
    _emit(summary, json_out, "split")


@curate_app.command("export")
def export_cmd(
    out: Annotated[
        str,
        typer.Option(
            "--out", "-o", help="Folder holding one sub-folder per dataset version (a path or s3://… URL)."
        ),
    ],
    version: Annotated[
        str | None, typer.Option(help="Version folder name (default sha256-<data hash>); never overwritten.")
    ] = None,
    dataset: DatasetOpt = "inkloop",
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Export reviewed pages as a versioned YOLO dataset with manifest.json (hashes of every file)."""
    with _session(json_out):
        store = _store(dataset)
        with _progress(json_out, quiet, "exporting") as advance:
            summary = store.export_yolo(out, version, progress=advance)
    for w in summary["warnings"]:
        typer.echo(f"warning: {w}", err=True)
    _emit(summary, json_out, "export")


@curate_app.command("media-cache")
def media_cache_cmd(
    clear: Annotated[
        bool, typer.Option("--clear", help="Delete the local copies (the bucket keeps the images).")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Where the local copies of stored page images are (FiftyOne reads local media), and their size.

    The cache is `$INKLOOP_MEDIA_CACHE` (default ~/.cache/inkloop/media). After --clear, export and
    find-issues fetch the images they need again from the samples' media_url.
    """
    from inkloop.curation.media import MediaCache

    cache = MediaCache()
    summary = cache.clear() | {"cleared": True} if clear else cache.usage()
    _emit(summary, json_out, "media cache")


def app_cmd(
    port: AppPortOpt = 5151,
    address: AppAddressOpt = "127.0.0.1",
    remote: AppRemoteOpt = False,
    launch: Annotated[
        bool, typer.Option("--launch", help="Start the App here and wait (Ctrl-C stops it).")
    ] = False,
    dataset: DatasetOpt = "inkloop",
    json_out: JsonOpt = False,
) -> None:
    """How to open the dataset in the FiftyOne App (same database); --launch starts it."""
    from inkloop.curation.database import database_info, import_fiftyone

    with _session(json_out):
        info = database_info()
        fo = import_fiftyone()
        exists = bool(fo.dataset_exists(dataset))
    exe = Path(sys.executable).parent / "fiftyone"
    env = {"FIFTYONE_DO_NOT_TRACK": "true"}
    if info["database_uri"]:
        env["FIFTYONE_DATABASE_URI"] = "<your MongoDB URI>"
    else:
        env["FIFTYONE_DATABASE_DIR"] = info["database_dir"]
    argv = [str(exe) if exe.exists() else "fiftyone", "app", "launch", dataset]
    argv += ["--port", str(port), "--address", address, "--wait", "-1"]
    if remote:
        argv.append("--remote")
    command = " ".join([*(f"{k}={shlex.quote(v)}" for k, v in env.items()), shlex.join(argv)])
    summary = {
        "dataset": dataset,
        "dataset_exists": exists,
        **info,
        "command": command,
        "url": f"http://localhost:{port}/",
        "ssh_tunnel": f"ssh -N -L {port}:127.0.0.1:{port} <this host>" if remote else None,
        "views": {
            "likely label mistakes": "filter label_issue = true, sort by label_issue_score",
            "near-duplicates": "filter near_duplicate = true, or group by dup_group",
            "model errors": "filter eval_fp > 0 or eval_fn > 0 (after `inkloop curate evaluate`)",
            "frozen test set": "tag test",
        },
    }
    if not launch:
        if json_out:
            typer.echo(json.dumps(summary, indent=2))
            return
        console = _console(False)
        if not exists:
            console.print(f"[yellow]no dataset {dataset!r} yet: run `inkloop curate import-results`[/yellow]")
        console.print("Open the dataset in the FiftyOne App (it must use the same database):")
        console.print(f"  {command}", soft_wrap=True, markup=False)
        tunnel = f" through: {summary['ssh_tunnel']}" if remote else ""
        console.print(f"then browse {summary['url']}{tunnel}")
        for what, how in summary["views"].items():
            console.print(f"  {what}: {how}", markup=False)
        return
    if not exists:
        typer.echo(f"error: no dataset {dataset!r}", err=True)
        raise typer.Exit(ExitCode.ERROR)
    import signal

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # a clean exit closes FiftyOne's server and database services

    signal.signal(signal.SIGTERM, _stop)
    session = fo.launch_app(fo.load_dataset(dataset), port=port, address=address, remote=remote, auto=False)
    typer.echo(f"FiftyOne App at http://{address}:{port}/ (Ctrl-C to stop)")
    try:
        session.wait(-1)
    except KeyboardInterrupt:
        pass
    finally:
        session.close()


@curate_app.command("open-app")
def open_app_cmd(
    port: AppPortOpt = 5151,
    address: AppAddressOpt = "127.0.0.1",
    remote: AppRemoteOpt = False,
    print_only: Annotated[
        bool,
        typer.Option("--print", help="Only print how to open it: the command, the URL, useful views."),
    ] = False,
    dataset: DatasetOpt = "inkloop",
    json_out: JsonOpt = False,
) -> None:
    """Open the dataset in the FiftyOne App (same database) and wait; Ctrl-C stops it."""
    app_cmd(
        port=port, address=address, remote=remote, launch=not print_only, dataset=dataset, json_out=json_out
    )


curate_app.command("app", hidden=True)(under_old_name(app_cmd, "curate app"))

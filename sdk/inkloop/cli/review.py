"""``inkloop review push | pull | status``: the Label Studio side of the loop, from the shell.

The API token comes from ``--token`` or, better (it then never shows in ``ps``), the environment:
``INKLOOP_LS_TOKEN`` or ``LABEL_STUDIO_API_KEY``. It is a Personal Access Token (what Label Studio
1.23 gives; ``labeling/token.sh`` prints the local dev server's) or a legacy token where the server
still allows them; :mod:`inkloop.review.auth` tells them apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from inkloop.cli.common import ExitCode, JsonOpt, exits_on

if TYPE_CHECKING:  # the review client loads with the first command that needs it
    from inkloop.review.labelstudio import LabelStudioReview

review_app = typer.Typer(
    help="Send uncertain pages to Label Studio and bring corrections back.", no_args_is_help=True
)


def _secret(*names: str, envvar: str | list[str], help: str) -> Any:
    """An option holding a secret: best given through ``envvar`` (named in ``--help``), since a
    command line is visible to every user of the machine (``ps``)."""
    return typer.Option(*names, envvar=envvar, help=help, show_envvar=True)


UrlOpt = Annotated[str, typer.Option("--url", envvar="INKLOOP_LS_URL", help="Label Studio URL.")]
TokenOpt = Annotated[
    str | None,
    _secret(
        "--token",
        envvar=["INKLOOP_LS_TOKEN", "LABEL_STUDIO_API_KEY"],
        help="Personal Access Token, or a legacy token where allowed (prefer the env var).",
    ),
]
ProjectOpt = Annotated[str, typer.Option("--project", help="Project title (created if missing).")]
#: Reading commands never create a project: a missing one is an error naming it.
ExistingProjectOpt = Annotated[str, typer.Option("--project", help="Project title (must exist).")]


def _client(
    url: str, token: str | None, project: str, class_names: list[str] | None = None
) -> LabelStudioReview:
    from inkloop.review.labelstudio import LabelStudioReview

    if not token:
        typer.echo("error: no API token: pass --token or set INKLOOP_LS_TOKEN", err=True)
        raise typer.Exit(ExitCode.USAGE)
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
    results: Annotated[
        str, typer.Argument(help="A results folder written by `inkloop detect` (a path or storage URL).")
    ],
    url: UrlOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    project: ProjectOpt = "inkloop review",
    delivery: Annotated[
        str,
        typer.Option(
            "--delivery",
            "--pages-via",
            help="How page images reach Label Studio: upload, local-files, or storage (the project's "
            "S3 source storage on the bucket of --images-dir: presigned URLs, no upload).",
        ),
    ] = "upload",
    document_root: Annotated[
        Path | None, typer.Option(help="The server's LOCAL_FILES_DOCUMENT_ROOT (local-files).")
    ] = None,
    images_dir: Annotated[
        str | None,
        typer.Option(
            help="Where page images are rendered, a path or storage URL (default RESULTS/review-images)."
        ),
    ] = None,
    budget: Annotated[
        float, typer.Option(help="Most pages sent to review, as a fraction of the run's pages.")
    ] = 0.1,
    max_pages: Annotated[int | None, typer.Option(help="Most pages sent to review, as a count.")] = None,
    include_audit: Annotated[bool, typer.Option(help="Also send the random audit sample.")] = True,
    dpi: Annotated[float, typer.Option(help="Reading resolution of PDF page images.")] = 150.0,
    storage_endpoint: Annotated[
        str | None,
        typer.Option(
            help="S3 endpoint as Label Studio and the annotators' browsers reach it (--pages-via "
            "storage; default INKLOOP_LS_S3_ENDPOINT, else your own AWS_ENDPOINT_URL)."
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Route a results folder and push the pages that need people to Label Studio (idempotent)."""
    from rich.progress import Progress

    from inkloop.review.labelstudio import ReviewServiceError, push_results, require_results
    from inkloop.routing import RoutingConfig

    if delivery not in ("upload", "local-files", "storage"):
        raise typer.BadParameter("must be upload, local-files or storage", param_hint="--delivery")
    how: Any = delivery
    with exits_on(ExitCode.USAGE, FileNotFoundError, ValueError):
        require_results(results)  # a storage URL stays a string: typer's Path would make it s3:/…
        if delivery == "storage":
            from inkloop.review.cloud_storage import storage_delivery

            how, images_dir = storage_delivery(results, images_dir, endpoint=storage_endpoint)
    with exits_on(ExitCode.ERROR, ReviewServiceError):
        client = _client(url, token, project)
        with Progress(disable=json_out, transient=True) as prog:
            t = prog.add_task("pushing review tasks", total=None)
            summary = push_results(
                client,
                results,
                RoutingConfig(max_review_fraction=budget, max_review_pages=max_pages),
                include_audit=include_audit,
                delivery=how,
                document_root=document_root,
                images_dir=images_dir,
                dpi=dpi,
                progress=lambda n: prog.advance(t, n),
            )
    if summary["unscored"]:
        typer.echo(f"warning: {results} was detected without routing; run `inkloop detect --route`", err=True)
    _emit(summary, json_out)


@review_app.command("pull")
def pull(
    out: Annotated[
        str, typer.Option("--out", help="reviews.jsonl (a path or storage URL) to add the pulled reviews to.")
    ],
    url: UrlOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    project: ExistingProjectOpt = "inkloop review",
    state: Annotated[
        str | None,
        typer.Option(
            help="Cursor file (a path or storage URL) for incremental pulls (default OUT.cursor.json)."
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Pull reviews finished or changed since the last pull; write them as JSON Lines."""
    from inkloop.review.labelstudio import ReviewServiceError, pull_to_file

    # ValueError: a cursor file that is not one
    with exits_on(ExitCode.ERROR, ReviewServiceError, ValueError):
        summary = pull_to_file(_client(url, token, project), out, state)
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

    with exits_on(ExitCode.ERROR, ReviewServiceError):
        summary = _client(url, token, project).status()
    _emit(summary, json_out)


@review_app.command("backend")
def backend(
    model: Annotated[
        str, typer.Option(help="Model reference: registry://NAME@ALIAS, bundled, a path, triton://…")
    ] = "registry://signature-detector@production",
    host: Annotated[
        str, typer.Option(help="Address to listen on (127.0.0.1: this machine only).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 9090,
    user: Annotated[
        str, typer.Option(envvar="INKLOOP_BACKEND_USER", help="Basic-auth user Label Studio sends.")
    ] = "inkloop",
    password: Annotated[
        str | None,
        _secret(
            envvar="INKLOOP_BACKEND_PASSWORD",
            help="Basic-auth password Label Studio sends (set it in the Model settings too).",
        ),
    ] = None,
    webhook_secret: Annotated[
        str | None,
        _secret(
            envvar="INKLOOP_WEBHOOK_SECRET",
            help="Shared secret Label Studio's webhooks send in X-Inkloop-Webhook-Secret.",
        ),
    ] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Accept callers without credentials (a closed network only).")
    ] = False,
    labelstudio_url: Annotated[
        str | None,
        typer.Option(
            envvar="INKLOOP_LS_URL",
            help="Label Studio URL, to read task images through it (/data/…, presign links, s3:// "
            "pages its storages presign).",
        ),
    ] = None,
    token: TokenOpt = None,
    alias_ttl: Annotated[
        float, typer.Option(help="Seconds between checks of the model's registry alias.")
    ] = 10.0,
    device: Annotated[str, typer.Option(help="cpu, cuda, openvino, …")] = "cpu",
    airflow_url: Annotated[
        str | None,
        typer.Option(
            envvar="INKLOOP_AIRFLOW_URL",
            help="Airflow API server: Start training and review events go there "
            "(auth: INKLOOP_AIRFLOW_USER/_PASSWORD or INKLOOP_AIRFLOW_TOKEN).",
        ),
    ] = None,
    project: ExistingProjectOpt = "inkloop review",
    curate_dag: Annotated[
        str, typer.Option(help="DAG that pulls, curates and exports reviews (then retraining).")
    ] = "inkloop_review_curate",
) -> None:
    """Serve the model as a Label Studio ML backend (/health, /setup, /predict, /webhook).

    Connect it in the project's Model settings (or `inkloop review connect`). Predictions follow
    the registry alias without a restart; Start training and new reviews go to Airflow."""
    import logging

    from inkloop.review.airflow_api import AirflowAPI
    from inkloop.review.backend import BackendConfig, TrainingPath, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    airflow = AirflowAPI.from_env(airflow_url)
    config = BackendConfig(
        model=model,
        username=user,
        password=password,
        webhook_secret=webhook_secret,
        allow_anonymous=no_auth,
        labelstudio_url=labelstudio_url,
        labelstudio_token=token,
        alias_ttl=alias_ttl,
        device=device,
        training=TrainingPath(airflow, project=project, curate_dag=curate_dag) if airflow else None,
    )
    with exits_on(ExitCode.USAGE, ValueError):
        config.check()
    serve(config, host=host, port=port)


@review_app.command("connect")
def connect_backend(
    backend_url: Annotated[
        str, typer.Argument(help="The running backend's URL, as Label Studio reaches it.")
    ],
    url: UrlOpt = "http://127.0.0.1:8080",
    token: TokenOpt = None,
    project: ExistingProjectOpt = "inkloop review",
    user: Annotated[str, typer.Option(envvar="INKLOOP_BACKEND_USER")] = "inkloop",
    password: Annotated[str | None, typer.Option(envvar="INKLOOP_BACKEND_PASSWORD")] = None,
    webhook_secret: Annotated[str | None, typer.Option(envvar="INKLOOP_WEBHOOK_SECRET")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Connect a running backend to a project (what the Model settings page does)."""
    from inkloop.review.backend import connect
    from inkloop.review.labelstudio import ReviewServiceError

    with exits_on(ExitCode.ERROR, ReviewServiceError):
        pid = _client(url, token, project).existing_project_id()
        record = connect(
            url, str(token), pid, backend_url, username=user, password=password, webhook_secret=webhook_secret
        )
    _emit(
        {
            "project_id": pid,
            "ml_backend_id": record.get("id"),
            "state": record.get("state"),
            "model_version": record.get("model_version"),
        },
        json_out,
    )

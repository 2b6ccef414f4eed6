"""``inkloop serve`` (a Triton server for a model reference) and ``inkloop demo`` (the browser demo).

Exit codes follow ``inkloop.cli``: 2 for a bad option (an ``--examples`` that is not a folder), 4 for
a model that cannot be resolved or loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from inkloop.cli.common import ExitCode


def serve_command(
    model: Annotated[
        str | None,
        typer.Option(help="Model: 'bundled' (default), a .onnx path, hf://…, registry://name@alias."),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to bind (HTTP, gRPC, metrics).")] = "127.0.0.1",
    http_port: Annotated[int, typer.Option(help="KServe v2 HTTP port.")] = 8000,
    grpc_port: Annotated[int, typer.Option(help="KServe v2 gRPC port.")] = 8001,
    metrics_port: Annotated[int, typer.Option(help="Prometheus metrics port (/metrics).")] = 8002,
    name: Annotated[str | None, typer.Option(help="Model name on the server (default: the card's).")] = None,
    max_batch_size: Annotated[int, typer.Option(help="Largest batch the dynamic batcher forms.")] = 8,
    write_repo: Annotated[
        Path | None,
        typer.Option(
            "--write-repo",
            help="Write a model repository for a stock Triton (onnxruntime backend) here and exit.",
        ),
    ] = None,
) -> None:
    """Serve a model on Triton: '<name>' (tensors → raw output) and '<name>-pages' (page bytes → boxes)."""
    from inkloop.models.resolve import resolve_model

    ref = resolve_model(model)  # a ModelError → exit 4 with its message (inkloop.cli.main)
    if write_repo is not None:
        from inkloop.serving.repository import write_triton_repository

        folder = write_triton_repository(ref, write_repo, max_batch_size)
        typer.echo(f"wrote {folder} (config.pbtxt, 1/model.onnx, card.json)")
        return
    from inkloop.serving.launcher import TritonServer, run_foreground

    server = TritonServer(
        ref,
        host=host,
        http_port=http_port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        name=name,
        max_batch_size=max_batch_size,
        quiet_setup=False,
    )
    raise typer.Exit(run_foreground(server))


def demo_command(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 7860,
    model: Annotated[
        list[str] | None,
        typer.Option(help="Models offered in the picker (repeatable): bundled, registry://…, triton://…"),
    ] = None,
    examples: Annotated[
        Path | None,
        typer.Option(
            help="A folder of sample documents offered as one-click examples "
            "(default: the checkout's tests/fixtures/documents, when inkloop runs from one)."
        ),
    ] = None,
    no_examples: Annotated[bool, typer.Option("--no-examples", help="Offer no sample documents.")] = False,
) -> None:
    """A browser demo (Gradio): drop a PDF, TIFF or image (or click a sample), see the signing verdict
    with its evidence and the boxes, move the score threshold, download the outputs."""
    from inkloop.serving.demo import checkout_examples, example_files, launch

    folder = None if no_examples else (examples or checkout_examples())
    try:
        example_files(folder)
    except ValueError as exc:
        typer.echo(f"usage: --examples {exc}", err=True)
        raise typer.Exit(ExitCode.USAGE) from None
    launch(host, port, model, folder)

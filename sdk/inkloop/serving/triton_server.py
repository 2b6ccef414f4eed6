"""The Triton server process behind ``inkloop serve`` (runs in the Triton venv, numpy < 2).

Started by :mod:`inkloop.serving.launcher` with ``python -m inkloop.serving.triton_server``;
imports only what that venv has (numpy, onnxruntime, OpenCV, pymupdf, Pillow, PyTriton) and
inkloop's own preprocessing, decoding and document opening, so the server answers exactly what the
in-process pipeline computes. Two models, with dynamic batching:

- ``<name>``: the network itself, float32 ``images`` ``[3, H, W]`` in → raw head output out;
- ``<name>-pages``: one page's bytes (PNG, JPEG, TIFF, one-page PDF) in → ``boxes`` ``[N, 4]`` in
  page pixels (PDF points for a PDF), ``scores`` ``[N]``, ``labels`` ``[N]`` and ``page_size``.

Both carry the model card (base64 JSON) in their config's ``parameters`` (``inkloop-card``), with the
ONNX file's metadata (``inkloop-onnx-metadata``): a ``triton://`` client needs nothing else.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from inkloop.detection.triton_backend import CARD_PARAMETER, METADATA_PARAMETER, encode_parameter

PAGES_SUFFIX = "-pages"
EXIT_MODEL = 4

log = logging.getLogger("inkloop.serving")


def _session(onnx: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(onnx), opts, providers=["CPUExecutionProvider"])


def _dims(shape: list[Any]) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) else -1 for d in shape)


def _patch_parameters(extra: dict[str, dict[str, str]]) -> None:
    """PyTriton 0.7.0 writes only its own backend parameters; add ours per model name."""
    from pytriton.models.model import Model

    original = Model._get_triton_model_config
    if getattr(original, "_inkloop", False):
        return

    def config(self: Any) -> Any:
        cfg = original(self)
        cfg.backend_parameters.update(extra.get(self.model_name, {}))
        return cfg

    config._inkloop = True  # type: ignore[attr-defined]
    Model._get_triton_model_config = config  # type: ignore[method-assign]


class Served:
    """The loaded model and the two infer functions."""

    def __init__(self, onnx: Path, card: dict[str, Any]) -> None:
        from inkloop.models.references import ModelCard

        self.card = ModelCard.from_dict(card)
        self.session = _session(onnx)
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self.input_name, self.output_name = inp.name, out.name
        self.input_shape, self.output_shape = _dims(inp.shape), _dims(out.shape)
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.stride: int | None = None
        if self.card.preprocessing == "letterbox" and self.input_shape[2] == -1:
            self.stride = int(self.metadata.get("stride", 32))
        self.lock = threading.Lock()

    def infer_tensors(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        images = inputs[self.input_name].astype(np.float32, copy=False)
        return {self.output_name: self.session.run(None, {self.input_name: images})[0]}

    def infer_pages(self, requests: list[Any]) -> list[dict[str, np.ndarray]]:
        return [self._page(bytes(np.asarray(r["page"]).reshape(-1)[0])) for r in requests]

    def _page(self, data: bytes) -> dict[str, np.ndarray]:
        from inkloop.detection.nms import decode
        from inkloop.detection.preprocess import prepare
        from inkloop.documents.opening import open_document

        card = self.card
        with tempfile.TemporaryDirectory(prefix="inkloop-page-") as tmp:
            path = Path(tmp) / "page"
            path.write_bytes(data)
            with self.lock:  # pymupdf is not thread-safe
                doc = open_document(path)
                try:
                    if doc.document.page_count != 1:
                        raise ValueError(f"one page per request, got {doc.document.page_count}")
                    view = next(doc.model_views(card.input_size, card.preprocessing))
                finally:
                    doc.close()
        tensor, transform = prepare(view.image, card.input_size, card.preprocessing, self.stride)
        raw = self.session.run(None, {self.input_name: tensor[None]})[0][0]
        # cut where `inkloop detect` cuts the page: at its domain's operating threshold
        boxes, scores, classes = decode(raw, card.thresholds.of(view.page.domain), card.iou_threshold, 300)
        src = transform.to_source(boxes) if len(boxes) else np.zeros((0, 4))
        page = [view.to_page(tuple(float(v) for v in b)) for b in src]
        names = card.class_names
        return {
            "boxes": np.asarray(page, np.float32).reshape(1, -1, 4),
            "scores": np.asarray(scores, np.float32).reshape(1, -1),
            "labels": np.asarray([names[int(c)].encode() for c in classes], dtype=object).reshape(1, -1),
            "page_size": np.asarray([[view.page.width, view.page.height]], np.float32),
        }


def serve(args: argparse.Namespace) -> int:
    card = json.loads(Path(args.card).read_text())
    try:
        served = Served(Path(args.onnx), card)
    except Exception as exc:  # onnxruntime raises several unrelated types
        print(
            f"inkloop serve: cannot load model {args.onnx}: {exc.__class__.__name__}: {exc}", file=sys.stderr
        )
        return EXIT_MODEL

    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    name = args.name
    params = {
        CARD_PARAMETER: encode_parameter(card),
        METADATA_PARAMETER: encode_parameter(served.metadata),
    }
    _patch_parameters({name: params, name + PAGES_SUFFIX: params})
    addresses = {f"{kind}_address": args.host for kind in ("http", "grpc", "metrics")}
    ports = {"http_port": args.http_port, "grpc_port": args.grpc_port, "metrics_port": args.metrics_port}
    # exit_timeout_secs: in-flight requests get this long on SIGTERM; idle keep-alive connections
    # (every client holds some) would otherwise hold the stop for Triton's default 30 s
    config = TritonConfig(
        **addresses, **ports, allow_metrics=True, allow_cpu_metrics=True, exit_timeout_secs=args.exit_timeout
    )
    batcher = DynamicBatcher(max_queue_delay_microseconds=args.queue_delay_us)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with Triton(config=config) as triton:
        triton.bind(
            model_name=name,
            infer_func=batch(served.infer_tensors),
            inputs=[Tensor(name=served.input_name, dtype=np.float32, shape=served.input_shape[1:])],
            outputs=[Tensor(name=served.output_name, dtype=np.float32, shape=served.output_shape[1:])],
            config=ModelConfig(max_batch_size=args.max_batch_size, batcher=batcher),
            strict=True,
        )
        triton.bind(
            model_name=name + PAGES_SUFFIX,
            infer_func=served.infer_pages,
            inputs=[Tensor(name="page", dtype=bytes, shape=(1,))],
            outputs=[
                Tensor(name="boxes", dtype=np.float32, shape=(-1, 4)),
                Tensor(name="scores", dtype=np.float32, shape=(-1,)),
                Tensor(name="labels", dtype=bytes, shape=(-1,)),
                Tensor(name="page_size", dtype=np.float32, shape=(2,)),
            ],
            config=ModelConfig(max_batch_size=args.max_batch_size, batcher=batcher),
            strict=False,
        )
        triton.run()
        print(
            f"inkloop serve: {name} and {name}{PAGES_SUFFIX} on http://{args.host}:{args.http_port} "
            f"(gRPC {args.grpc_port}, metrics {args.metrics_port})",
            flush=True,
        )
        stop.wait()
        print("inkloop serve: stopping", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m inkloop.serving.triton_server")
    p.add_argument("--onnx", required=True)
    p.add_argument("--card", required=True, help="the model card, a JSON file")
    p.add_argument("--name", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument("--max-batch-size", type=int, default=8)
    p.add_argument("--queue-delay-us", type=int, default=2000)
    p.add_argument("--exit-timeout", type=int, default=5, help="seconds for in-flight requests on stop")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    return serve(args)


if __name__ == "__main__":
    sys.exit(main())

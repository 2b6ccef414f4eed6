"""OpenVINO Runtime behind the small part of onnxruntime's session interface the detector uses.

``--device openvino`` prefers onnxruntime's OpenVINO execution provider (the
``onnxruntime-openvino`` build). Without it, but with the ``openvino`` package installed
(``pip install "inkloop[openvino]"``), the same ONNX file is compiled by OpenVINO Runtime itself;
this adapter lets :class:`inkloop.detection.detector.Detector` (and so the pipeline, the evaluator and the
benchmark) use it unchanged. Each calling thread gets its own infer request, so the pipeline's
inference workers can run at once, as they do with onnxruntime.

Precision: OpenVINO's CPU plugin runs a float model in bfloat16 by default on CPUs with native
bf16 (AVX-512 BF16, AMX: recent Xeon and EPYC), which moved ``signature-detector@3``'s boxes by up
to 2.6 input pixels and its raw outputs by 7.6 against onnxruntime on such a machine (2026-12-03,
AMD EPYC with ``avx512_bf16``), where on a CPU without bf16 they agree to 0.0001 px. A model is
measured and gated in fp32, so the session asks for fp32 unless told otherwise
(``precision="bf16"`` trades that parity for speed where the CPU has it).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from inkloop import privacy
from inkloop.detection.sessions import Arg, Meta, SessionLike

#: What :meth:`OpenVINOSession.get_providers` reports (the pipeline infers page by page on CPUs).
PROVIDER = "OpenVINORuntime:CPU"

#: The inference precision asked of OpenVINO: the one the model's card was measured in.
DEFAULT_PRECISION = "f32"


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


class OpenVINOSession(SessionLike):
    """``run``, ``get_inputs``, ``get_outputs``, ``get_providers``, ``get_modelmeta`` over OpenVINO."""

    provider = PROVIDER

    def __init__(
        self,
        path: str | Path,
        threads: int | None = None,
        device: str = "CPU",
        precision: str = DEFAULT_PRECISION,
    ) -> None:
        ov = privacy.import_openvino()  # its usage-data event off
        core = ov.Core()
        model = core.read_model(str(path))
        if threads:
            # ``threads`` per call, as onnxruntime's intra-op threads: one stream per group of
            # ``threads`` cores, so calls from several threads (the pipeline's inference workers)
            # run side by side instead of queueing for a single stream.
            streams = max(1, (os.cpu_count() or 1) // int(threads))
            config: dict[str, Any] = {"NUM_STREAMS": streams, "INFERENCE_NUM_THREADS": int(threads) * streams}
        else:
            config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        config["INFERENCE_PRECISION_HINT"] = precision
        self._compiled = core.compile_model(model, device, config)
        self._local = threading.local()
        self._inputs = [Arg(p.get_any_name(), _dims(p.get_partial_shape())) for p in model.inputs]
        self._outputs = [Arg(p.get_any_name(), _dims(p.get_partial_shape())) for p in model.outputs]
        self._meta = Meta(_onnx_metadata(path))

    @property
    def precision(self) -> str:
        """The precision OpenVINO compiled the model for (``f32``, ``bf16``, …), as it reports it."""
        return str(self._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name())

    def run(self, output_names: Any, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        result = request.infer({self._inputs[0].name: next(iter(feed.values()))})
        # copy: the request reuses its output buffer on the next call from this thread
        return [np.array(result[self._compiled.output(i)]) for i in range(len(self._outputs))]


def _dims(shape: Any) -> list[Any]:
    """Static dimensions as ints, dynamic ones as names (as onnxruntime reports them)."""
    return [d.get_length() if d.is_static else f"d{i}" for i, d in enumerate(shape)]


def _onnx_metadata(path: str | Path) -> dict[str, str]:
    """The ONNX file's metadata (ultralytics writes stride, names, imgsz there)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return dict(sess.get_modelmeta().custom_metadata_map)

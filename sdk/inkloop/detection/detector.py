"""Run a YOLOv8-style ONNX detector with onnxruntime: batched, provider-selectable, card-driven.

The detector knows nothing about documents: it maps RGB arrays to boxes in those arrays' pixels.
Documents, DPI and PDF points are the pipeline's business (:mod:`inkloop.detection.pipeline`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from inkloop.detection.nms import decode as decode_head
from inkloop.detection.preprocess import Transform, prepare
from inkloop.models.references import ModelCard, ModelError, ModelRef, Thresholds, is_triton_ref
from inkloop.models.resolve import resolve_model
from inkloop.types import Detection

#: Short names accepted for ``--device`` and the ONNX Runtime providers they mean.
PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}


def select_providers(device: str | Sequence[str] | None) -> list[str]:
    """Map ``cpu``/``cuda``/``tensorrt``/``openvino`` (or full provider names) to available providers.

    CPU is always appended as the fallback ONNX Runtime uses for unsupported nodes. Asking for a
    provider this onnxruntime build lacks is an error, not a silent fallback: a GPU worker that
    quietly runs on its CPU is a production incident.
    """
    import onnxruntime as ort

    wanted = [device] if isinstance(device, str) else list(device or ["cpu"])
    available = set(ort.get_available_providers())
    out: list[str] = []
    for name in wanted:
        prov = PROVIDERS.get(name.lower(), name)
        if prov not in available:
            hint = (
                " (or pip install openvino to run on OpenVINO Runtime)" if prov.startswith("OpenVINO") else ""
            )
            raise ModelError(
                f"execution provider {name!r} is not available in this onnxruntime build "
                f"(available: {', '.join(sorted(available))}){hint}"
            )
        out.append(prov)
    if "CPUExecutionProvider" not in out:
        out.append("CPUExecutionProvider")
    return out


def _openvino_runtime(device: str | Sequence[str] | None) -> bool:
    """``openvino`` asked for, onnxruntime lacking its OpenVINO provider, OpenVINO Runtime installed:
    then the model runs on OpenVINO Runtime directly (:mod:`inkloop.detection.openvino_backend`)."""
    import onnxruntime as ort

    from inkloop.detection.openvino_backend import available

    return (
        isinstance(device, str)
        and device.lower() == "openvino"
        and "OpenVINOExecutionProvider" not in ort.get_available_providers()
        and available()
    )


@dataclass(frozen=True)
class Prepared:
    """A page image ready for the model: its tensor and the way back to its pixels."""

    tensor: np.ndarray
    transform: Transform


class Detector:
    """An ONNX detector configured from its model card."""

    #: Pad letterboxed inputs to a multiple of this instead of the full square (set for models
    #: with dynamic height/width; ``None`` for subclasses that bypass ``__init__``).
    stride: int | None = None
    #: The card's per-domain operating thresholds, when no ``conf`` was given (:attr:`thresholds`).
    _thresholds: Thresholds | None = None

    def __init__(
        self,
        model: ModelRef | str | None = None,
        device: str | Sequence[str] | None = "cpu",
        conf: float | None = None,
        iou: float | None = None,
        threads: int | None = None,
        max_det: int = 300,
    ) -> None:
        import onnxruntime as ort

        remote = None
        if is_triton_ref(model):  # a served model: the card comes from the server
            from inkloop.detection.triton_backend import triton_model

            remote, self.model = triton_model(str(model))
        else:
            self.model = model if isinstance(model, ModelRef) else resolve_model(model)
        self.card: ModelCard = self.model.card
        self.conf = self.card.conf_threshold if conf is None else conf
        self._thresholds = self.card.thresholds if conf is None else None
        self.iou = self.card.iou_threshold if iou is None else iou
        self.max_det = max_det
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
        try:
            if remote is not None:
                self.session = remote
            elif _openvino_runtime(device):
                from inkloop.detection.openvino_backend import OpenVINOSession

                self.session = OpenVINOSession(self.model.path, threads)
            else:
                self.session = ort.InferenceSession(
                    str(self.model.path), opts, providers=select_providers(device)
                )
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"{self.model.path}: onnxruntime cannot load it ({exc})") from exc
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        batch_dim = inp.shape[0]
        self.dynamic_batch = not isinstance(batch_dim, int)
        # Letterbox models exported with dynamic height/width take "minimum rectangle" inputs
        # (padded to a multiple of the stride, as ultralytics' predict feeds them): a letter page
        # is 352×416 instead of 416×416, 15 % less work, and the same tensor ultralytics builds.
        shape = inp.shape
        if self.card.preprocessing == "letterbox" and len(shape) == 4 and not isinstance(shape[2], int):
            try:
                self.stride = int(self.session.get_modelmeta().custom_metadata_map.get("stride", 32))
            except (TypeError, ValueError):
                self.stride = 32
        out_shape = self.session.get_outputs()[0].shape
        if isinstance(out_shape[1], int) and out_shape[1] - 4 != len(self.card.class_names):
            raise ModelError(
                f"{self.model.path}: model predicts {out_shape[1] - 4} classes but its card names "
                f"{len(self.card.class_names)} ({self.card.class_names})"
            )

    @property
    def thresholds(self) -> Thresholds:
        """Where each page is cut: the card's per-domain thresholds, or ``conf`` for every page
        when it was given. :meth:`detect` knows no domain and decodes at ``conf``; the pipeline,
        which knows each page's domain, decodes down to ``thresholds.floor`` and cuts each page
        at its own domain's threshold."""
        return self._thresholds if self._thresholds is not None else Thresholds(self.conf)

    @property
    def input_size(self) -> int:
        return self.card.input_size

    @property
    def model_version(self) -> str:
        return self.card.model_version

    def prepare(self, image: np.ndarray) -> Prepared:
        """CPU-side preprocessing, separate so a pipeline can run it beside inference."""
        tensor, transform = prepare(image, self.card.input_size, self.card.preprocessing, self.stride)
        return Prepared(tensor, transform)

    def run(self, batch: Sequence[Prepared]) -> list[list[Detection]]:
        """Inference and decoding for already-prepared images."""
        if not batch:
            return []
        raw: list[np.ndarray] = [np.empty(0)] * len(batch)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, p in enumerate(batch):  # rectangular inputs: one batch per shape
            groups.setdefault(p.tensor.shape, []).append(i)
        for idx in groups.values():
            if self.dynamic_batch:
                out = self.session.run(None, {self.input_name: np.stack([batch[i].tensor for i in idx])})[0]
                for k, i in enumerate(idx):
                    raw[i] = out[k]
            else:
                for i in idx:
                    raw[i] = self.session.run(None, {self.input_name: batch[i].tensor[None]})[0][0]
        return [self.decode(raw[i], p.transform) for i, p in enumerate(batch)]

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Boxes for each RGB (or grayscale) uint8 image, in that image's pixels."""
        return self.run([self.prepare(im) for im in images])

    def decode(self, pred: np.ndarray, transform: Transform) -> list[Detection]:
        """One image's raw head output → detections in source pixels (public so a pipeline can run
        the forward pass elsewhere, e.g. in worker threads, and decode in its own thread)."""
        boxes, scores, classes = decode_head(pred, self.conf, self.iou, self.max_det)
        if not len(boxes):
            return []
        src = transform.to_source(boxes)
        names = self.card.class_names
        return [
            Detection(
                label=names[int(c)], score=float(s), xyxy=(float(b[0]), float(b[1]), float(b[2]), float(b[3]))
            )
            for b, s, c in zip(src, scores, classes, strict=True)
        ]

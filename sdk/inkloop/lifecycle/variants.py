"""Deployment variants of an exported model (INT8 ONNX, OpenVINO IR, TensorRT) and their parity.

A variant is only worth offering if it gives the same answers as the model it was made from.
Every variant is therefore checked against its reference (the fp32 ONNX file; the fp32 ONNX file
itself against the ``.pt`` it was exported from) on real pages, with *our* preprocessing, decoding
and NMS, so the only difference measured is the backend's:

- boxes at the operating threshold: matched one-to-one by IoU; the mean IoU of the matched pairs
  and the share of pages where both find the same number of boxes;
- mAP50 on the test split, with the project's evaluator (:mod:`inkloop.evaluation.evaluator`).

The result goes on the model card as ``card.extra["variants"][name]``; a variant outside the
tolerance (default: ``|ΔmAP50| ≤ 0.01`` and mean box IoU ``≥ 0.9``) is recorded with
``offered: false`` and the reason, never silently shipped. A format that cannot be built on this
machine (OpenVINO without the ``openvino`` package, TensorRT without a GPU and ``tensorrt``) is
recorded as ``skipped`` with the reason; that is not an error.

INT8 uses onnxruntime static quantization (QDQ, per-channel weights) calibrated on training pages
prepared exactly as :func:`inkloop.detection.preprocess.prepare` prepares them at inference. The detection
head's decoding (anchor grid, distance-to-box, stride scaling, the final concat of pixel boxes
with 0–1 scores) is kept in float: one int8 scale cannot represent both a 640-pixel coordinate and
a 0.25 score, and those nodes cost nothing anyway.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from inkloop import privacy
from inkloop.detection.detector import Detector, Prepared
from inkloop.documents.hashing import sha256_file
from inkloop.geometry import box_iou, match_boxes
from inkloop.models.references import ModelCard, ModelRef
from inkloop.types import Detection

if TYPE_CHECKING:  # the evaluator loads when parity is measured
    from inkloop.evaluation.evaluator import YoloDataset

logger = logging.getLogger(__name__)

FORMATS = ("int8", "openvino", "tensorrt")
INT8_FILE = "model.int8.onnx"

Runner = Callable[[np.ndarray], np.ndarray]
"""A backend's forward pass: a float32 NCHW batch → the raw head output ``(B, 4 + classes, anchors)``."""


@dataclass(frozen=True)
class ParityTolerance:
    """When a variant is close enough to its reference to be offered."""

    max_abs_delta_map50: float = 0.01
    min_box_iou: float = 0.9
    #: Share of pages with the same number of boxes at the operating threshold; None records it
    #: without gating (a box hovering at the threshold flips the count on tiny page sets).
    min_count_agreement: float | None = None
    #: Boxes overlapping at least this much are "the same box" when pairing reference and variant.
    match_iou: float = 0.5

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------- backends


class RunnerDetector(Detector):
    """A :class:`Detector` whose forward pass is another backend (torch, OpenVINO, TensorRT).

    Preprocessing, decoding and NMS are inherited, so a parity check compares backends and
    nothing else; being a ``Detector`` it also goes through :func:`inkloop.evaluation.evaluator.evaluate`.
    ``Detector.__init__`` is deliberately not called: it would open an ONNX session.
    """

    def __init__(
        self, runner: Runner, card: ModelCard, ref: str, conf: float, iou: float, max_det: int = 300
    ) -> None:
        self.model = ModelRef(path=Path(ref), card=card, ref=ref)
        self.card = card
        self.conf = conf
        self.iou = iou
        self.max_det = max_det
        self.dynamic_batch = True
        self._runner = runner

    def run(self, batch: Sequence[Prepared]) -> list[list[Detection]]:
        if not batch:
            return []
        raw = self._runner(np.stack([p.tensor for p in batch]))
        return [self.decode(raw[i], p.transform) for i, p in enumerate(batch)]


def torch_runner(pt: str | Path) -> Runner:
    """The ``.pt`` model in eval mode on the CPU (not fused: the checkpoint as trained)."""
    import torch

    from inkloop.lifecycle.training import offline_env

    offline_env()
    from ultralytics import YOLO

    model = YOLO(str(pt)).model.float().eval()

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = model(torch.from_numpy(batch))
        out = out[0] if isinstance(out, list | tuple) else out
        return out.numpy()

    return run


def ultralytics_runner(path: str | Path, device: str = "cpu", batch_size: int | None = None) -> Runner:
    """Any format ultralytics' ``AutoBackend`` loads (OpenVINO IR, TensorRT engine), raw output.

    ``batch_size=1`` feeds images one by one, for engines built with a static batch.
    """
    import torch

    from inkloop.lifecycle.training import offline_env

    offline_env()
    from ultralytics.nn.autobackend import AutoBackend

    with privacy.quiet_openvino():  # an IR: AutoBackend imports openvino
        backend = AutoBackend(str(path), device=torch.device(device), fuse=False, verbose=False)

    def forward(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = backend(torch.from_numpy(batch).to(backend.device))
        out = out[0] if isinstance(out, list | tuple) else out
        return out.float().cpu().numpy()

    def run(batch: np.ndarray) -> np.ndarray:
        if batch_size == 1 and len(batch) > 1:
            return np.concatenate([forward(batch[i : i + 1]) for i in range(len(batch))])
        return forward(batch)

    return run


def onnx_detector(path: Path, card: ModelCard, conf: float, ref: str | None = None) -> Detector:
    """The production detector on an ONNX file, with an explicit card (the file's own is not read).

    Parity compares formats on identical tensors: the ``.pt`` and OpenVINO/TensorRT runners take
    the full letterbox square, so the ONNX side does too (no stride padding), else a parity gap
    would measure the padding, not the format.
    """
    det = Detector(ModelRef(path=path, card=card, ref=ref or str(path)), conf=conf, iou=card.iou_threshold)
    det.stride = None
    return det


# ---------------------------------------------------------------------------------- comparisons


def _matched_ious(a: np.ndarray, b: np.ndarray, match_iou: float) -> list[float]:
    """The IoU of each one-to-one pair (highest IoU first), each ≥ ``match_iou``."""
    iou = box_iou(a, b)
    pairs, _, _ = match_boxes(iou, match_iou)
    return [float(iou[i, j]) for i, j in pairs]


def compare_predictions(
    ref: Sequence[Any], var: Sequence[Any], threshold: float, match_iou: float
) -> dict[str, Any]:
    """Box agreement at the operating threshold between two runs over the same pages.

    ``ref``/``var`` are :class:`inkloop.evaluation.evaluator.ImagePredictions` lists in the same page order.
    Boxes are paired within the same class only.
    """
    ious: list[float] = []
    same_count = 0
    n_ref = n_var = 0
    for r, v in zip(ref, var, strict=True):
        keep_r = np.asarray(r.scores) >= threshold
        keep_v = np.asarray(v.scores) >= threshold
        n_ref += int(keep_r.sum())
        n_var += int(keep_v.sum())
        same_count += int(keep_r.sum() == keep_v.sum())
        for c in np.union1d(r.classes[keep_r], v.classes[keep_v]):
            ious += _matched_ious(
                r.boxes[keep_r][r.classes[keep_r] == c], v.boxes[keep_v][v.classes[keep_v] == c], match_iou
            )
    pages = len(ref)
    unmatched = (n_ref - len(ious)) + (n_var - len(ious))
    return {
        "pages": pages,
        "threshold": threshold,
        "ref_boxes": n_ref,
        "boxes": n_var,
        "matched": len(ious),
        "unmatched": unmatched,
        # No box on either side is perfect agreement, not a missing number.
        "mean_iou": round(float(np.mean(ious)), 6) if ious else (1.0 if unmatched == 0 else 0.0),
        "min_iou": round(float(np.min(ious)), 6) if ious else None,
        "count_agreement": round(same_count / pages, 6) if pages else None,
    }


@dataclass
class _Scored:
    """One backend's predictions over the parity pages, and its metrics if they have labels."""

    preds: list[Any]
    metrics: dict[str, Any] | None
    latency_ms: float


def _score(det: Detector, dataset: YoloDataset, labelled: bool, split: str, data: str) -> _Scored:
    from inkloop.evaluation.evaluator import compute_metrics, predict_dataset

    preds, latency = predict_dataset(det, dataset)
    kept = copy.deepcopy(preds)  # compute_metrics reorders boxes in place
    metrics = None
    if labelled:
        report, _ = compute_metrics(
            preds,
            det.card.class_names,
            det.card.thresholds,
            model_version=det.card.model_version,
            model_ref=det.model.ref,
            data=data,
            split=split,
            eval_conf=det.conf,
            nms_iou=det.iou,
        )
        metrics = summarize_report(report.to_dict())
    return _Scored(kept, metrics, round(latency, 3))


def summarize_report(report: dict[str, Any]) -> dict[str, Any]:
    """The few numbers of an evaluation report that cards and gate decisions keep."""
    keys = (
        "map50",
        "map50_95",
        "precision",
        "recall",
        "f1",
        "operating_threshold",
        "domain_thresholds",
        "n_images",
        "n_gt",
        "split",
        "latency_ms_per_image",
        "domains",  # per-domain numbers, when the data records domains (cards and gate compare them)
    )
    return {k: report[k] for k in keys if report.get(k) not in (None, {})}


def parity_record(
    ref: _Scored, var: _Scored, tolerance: ParityTolerance, threshold: float
) -> tuple[dict[str, Any], bool, list[str]]:
    """Compare two scored runs; returns the parity dict, whether it is within tolerance, and why not."""
    parity = compare_predictions(ref.preds, var.preds, threshold, tolerance.match_iou)
    reasons: list[str] = []
    if ref.metrics is not None and var.metrics is not None:
        delta = var.metrics["map50"] - ref.metrics["map50"]
        parity.update(
            map50_ref=round(ref.metrics["map50"], 6),
            map50=round(var.metrics["map50"], 6),
            delta_map50=round(delta, 6),
        )
        if abs(delta) > tolerance.max_abs_delta_map50:
            reasons.append(f"|ΔmAP50| {abs(delta):.4f} > {tolerance.max_abs_delta_map50}")
    else:
        parity.update(map50_ref=None, map50=None, delta_map50=None)
        reasons_note = "no labelled test split: mAP50 parity not measured"
        parity["note"] = reasons_note
    if parity["mean_iou"] < tolerance.min_box_iou:
        reasons.append(f"mean box IoU {parity['mean_iou']:.4f} < {tolerance.min_box_iou}")
    if (
        tolerance.min_count_agreement is not None
        and (parity["count_agreement"] or 0) < tolerance.min_count_agreement
    ):
        reasons.append(f"count agreement {parity['count_agreement']} < {tolerance.min_count_agreement}")
    parity["latency_ms_ref"] = ref.latency_ms
    parity["latency_ms"] = var.latency_ms
    return parity, not reasons, reasons


# ------------------------------------------------------------------------------------ INT8 export


def head_decode_nodes(model: Any) -> list[str]:
    """Names of the nodes that turn the head's last convolutions into boxes and scores.

    Walks back from every graph output and stops at convolutions that have a bias (the learned
    layers); everything met on the way is decoding: sigmoid, DFL softmax and its fixed-weight
    (bias-free) convolution, anchor grid, strides, concats. Name-independent, so it also works
    after onnxruntime's pre-processing renamed nodes.
    """
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    learned = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
    seen: set[str] = set()
    out: list[str] = []
    stack = [producer[o.name] for o in graph.output if o.name in producer]
    while stack:
        node = stack.pop()
        key = node.name or node.output[0]
        if key in seen:
            continue
        seen.add(key)
        if node.op_type in learned and (len(node.input) > 2 and node.input[2]):
            continue
        if node.name:
            out.append(node.name)
        stack.extend(producer[i] for i in node.input if i in producer)
    return sorted(out)


class _PageReader:
    """Calibration batches: pages prepared exactly as the detector prepares them at inference."""

    def __init__(self, images: Sequence[Path], input_name: str, card: ModelCard) -> None:
        self._images = list(images)
        self._input = input_name
        self._card = card
        self._i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        from inkloop.detection.preprocess import prepare
        from inkloop.evaluation.evaluator import load_rgb

        if self._i >= len(self._images):
            return None
        tensor, _ = prepare(load_rgb(self._images[self._i]), self._card.input_size, self._card.preprocessing)
        self._i += 1
        return {self._input: tensor[None]}

    def rewind(self) -> None:
        self._i = 0


def quantize_int8(
    onnx_path: Path,
    out_path: Path,
    card: ModelCard,
    calibration_images: Sequence[Path],
    *,
    per_channel: bool = True,
    exclude_head: bool = True,
    method: str = "minmax",
    activations: str = "uint8",
    reduce_range: bool = True,
    float_prefixes: Sequence[str] = (),
) -> dict[str, Any]:
    """Static INT8 quantization (QDQ, int8 per-channel weights); returns the settings used.

    Defaults measured on this project's 2-core AVX2 (no VNNI) machines, yolov8n at 416, 81 val
    pages: uint8 activations with 7-bit weights (``reduce_range``) ran 56 ms/page against 134 ms
    fp32, ΔmAP50 +0.010, mean box IoU 0.968; int8 activations (S8S8) kept ΔmAP50 +0.003 but ran
    *slower* than fp32 (180 ms) on AVX2; uint8 without ``reduce_range`` saturates on AVX2 (mAP50
    fell to 0.03). On VNNI CPUs S8S8 is the fast path: pass ``activations="int8"``.
    ``float_prefixes`` keeps layers in float by node-name prefix (ultralytics names them
    ``/model.<layer>/``): mixed precision for a model whose few sensitive layers cost the tolerance
    (README "Variants on val" has the settings measured on the bundled model).
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration_images:
        raise ValueError("INT8 calibration needs at least one page")
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    with tempfile.TemporaryDirectory(prefix="inkloop-int8-") as tmp:
        src = Path(tmp) / "pre.onnx"
        # Shape inference + graph cleanup, as onnxruntime recommends before quantizing. Symbolic
        # shape inference is skipped: it gives up on the dynamic anchor grid of a dynamic-shape
        # export (and then drops a temporary file in the working directory); ONNX's own shape
        # inference is enough for a convolutional network.
        try:
            quant_pre_process(str(onnx_path), str(src), skip_symbolic_shape=True)
            preprocessed = True
        except Exception as exc:
            logger.info("quantization pre-processing failed (%s); quantizing the file as is", exc)
            shutil.copy2(onnx_path, src)
            preprocessed = False
        model = onnx.load(str(src))
        excluded = head_decode_nodes(model) if exclude_head else []
        if float_prefixes:  # layers kept in float by name (ultralytics: /model.<layer>/...)
            prefixes = tuple(float_prefixes)
            excluded = sorted({*excluded, *(n.name for n in model.graph.node if n.name.startswith(prefixes))})
        input_name = model.graph.input[0].name
        reader = _PageReader(calibration_images, input_name, card)

        class _Reader(CalibrationDataReader):  # the ABC wants a subclass
            def get_next(self) -> dict[str, np.ndarray] | None:
                return reader.get_next()

        quantize_static(
            str(src),
            str(out_path),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8,
            weight_type=QuantType.QInt8,
            reduce_range=reduce_range,
            nodes_to_exclude=excluded,
            calibrate_method=methods[method],
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    return {
        "method": "onnxruntime.quantize_static",
        "format": "QDQ",
        "activations": activations,
        "weights": "int8",
        "per_channel": per_channel,
        "reduce_range": reduce_range,
        "calibration": method,
        "calibration_images": len(calibration_images),
        "head_excluded": exclude_head,
        "float_layers": list(float_prefixes),
        "excluded_nodes": len(excluded),
        "preprocessed": preprocessed,
    }


# ------------------------------------------------------------------------------- other formats


def openvino_available() -> tuple[bool, str]:
    if importlib.util.find_spec("openvino") is None:
        return False, "the openvino package is not installed (pip install openvino) on this machine"
    return True, ""


def openvino_cpu_precision() -> str:
    """The precision OpenVINO's CPU plugin runs a float model at here, unasked (``f32``, ``bf16``).

    ultralytics serves an OpenVINO IR with the plugin's default, which is bf16 on CPUs with native
    bf16 (AVX-512 BF16, AMX) and f32 elsewhere: the variant's measured parity holds for machines of
    the kind it was measured on, so the record says which kind that was.
    """
    ov = privacy.import_openvino()
    return str(ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name())


def tensorrt_available() -> tuple[bool, str]:
    if importlib.util.find_spec("tensorrt") is None:
        return False, "the tensorrt package is not installed; TensorRT engines are built on GPU workers"
    try:
        import torch

        if not torch.cuda.is_available():
            return False, "no CUDA GPU on this machine; TensorRT engines are built on GPU workers"
    except Exception as exc:  # a broken CUDA setup is a skip with its reason, not a crash
        return False, f"CUDA is not usable here ({exc})"
    return True, ""


def _ultralytics_export(pt: Path, fmt: str, imgsz: int, **kwargs: Any) -> Path:
    from inkloop.lifecycle.training import offline_env

    offline_env()
    from ultralytics import YOLO

    with privacy.quiet_openvino():
        return Path(YOLO(str(pt)).export(format=fmt, imgsz=imgsz, **kwargs))


# ------------------------------------------------------------------------------------ orchestration


def _file_info(path: Path) -> dict[str, Any]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return {
            "file": path.name,
            "size_bytes": sum(p.stat().st_size for p in files),
            "files": {p.relative_to(path).as_posix(): sha256_file(p) for p in files},
        }
    return {"file": path.name, "size_bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _pick(paths: Sequence[Path], n: int) -> list[Path]:
    """``n`` pages spread evenly over the list (deterministic: same data, same calibration)."""
    if len(paths) <= n:
        return list(paths)
    idx = np.linspace(0, len(paths) - 1, n).round().astype(int)
    return [paths[i] for i in sorted(set(idx.tolist()))]


def calibration_pages(data: str | Path, n: int = 64, splits: Iterable[str] = ("train", "val")) -> list[Path]:
    """Calibration pages from the training data (never the test split the gate scores on)."""
    from inkloop.evaluation.evaluator import DatasetError, load_dataset

    images: list[Path] = []
    for split in splits:
        try:
            images += [s.image for s in load_dataset(data, split).samples]
        except DatasetError:
            continue
        if len(images) >= n:
            break
    return _pick(images, n)


def build_variants(
    out_dir: str | Path,
    card: ModelCard,
    data: str | Path | None,
    *,
    formats: Iterable[str] = FORMATS,
    split: str = "test",
    tolerance: ParityTolerance | None = None,
    calibration_images: int = 64,
    int8_options: dict[str, Any] | None = None,
    calibration_splits: Iterable[str] = ("train", "val"),
) -> dict[str, dict[str, Any]]:
    """Check ``out_dir/model.onnx`` against ``out_dir/model.pt``, build the asked formats beside
    them, check each against the fp32 ONNX; return ``card.extra["variants"]``-shaped records.

    ``data``: the YOLO dataset; its ``split`` (default ``test``) is where parity and mAP50 are
    measured, its train/val pages calibrate INT8. Without a labelled split, boxes are compared on
    calibration pages and mAP parity is recorded as not measured. ``int8_options`` go to
    :func:`quantize_int8` (``per_channel``, ``exclude_head``, ``method``, ``activations``,
    ``reduce_range``). ``calibration_splits``: where INT8 calibration pages come from (pass
    ``("train",)`` when ``split`` is val, so the variant is not calibrated on the pages it is
    scored on).
    """
    from inkloop.evaluation.evaluator import EVAL_CONF, DatasetError, load_dataset

    out = Path(out_dir)
    tol = tolerance or ParityTolerance()
    wanted = list(dict.fromkeys(formats))
    unknown = [f for f in wanted if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown export format(s) {unknown}; choose from {', '.join(FORMATS)}")
    calib = calibration_pages(data, calibration_images, calibration_splits) if data is not None else []
    labelled = True
    if data is not None:
        try:
            dataset = load_dataset(data, split)
        except DatasetError:
            dataset, labelled = None, False
    else:
        dataset, labelled = None, False
    if dataset is None and not calib:
        # Nothing to measure on: the fp32 file is usable, but unchecked (the gate will refuse it
        # until it is exported again with data), and no variant is built blind.
        why = "no pages given (pass a dataset): parity not checked"
        return {
            "onnx": {
                "format": "onnx",
                "precision": "fp32",
                **_file_info(out / "model.onnx"),
                "status": "ok",
                "reference": None,
                "offered": True,
                "note": why,
            },
            **{name: {"status": "skipped", "offered": False, "reason": why} for name in wanted},
        }
    if dataset is None:
        from inkloop.evaluation.evaluator import Sample, YoloDataset

        empty = (np.zeros((0, 4)), np.zeros(0, np.int64))
        dataset = YoloDataset(Path(str(data)), "calibration", [Sample(p, None, *empty) for p in calib])
    threshold = card.conf_threshold
    records: dict[str, dict[str, Any]] = {}

    def score(det: Detector) -> _Scored:
        return _score(det, dataset, labelled, split, str(data))

    def finish(name: str, base: dict[str, Any], ref: _Scored, var: _Scored, reference: str) -> None:
        parity, ok, reasons = parity_record(ref, var, tol, threshold)
        base.update(
            status="ok",
            reference=reference,
            parity=parity,
            tolerance=tol.to_dict(),
            offered=ok,
            metrics=var.metrics,
        )
        if not ok:
            base["reason"] = "outside parity tolerance: " + "; ".join(reasons)
        records[name] = base

    # fp32 ONNX against the checkpoint it came from.
    t0 = time.perf_counter()
    fp32 = score(onnx_detector(out / "model.onnx", card, EVAL_CONF))
    pt = out / "model.pt"
    if pt.is_file():
        ref_pt = score(RunnerDetector(torch_runner(pt), card, str(pt), EVAL_CONF, card.iou_threshold))
        finish(
            "onnx",
            {"format": "onnx", "precision": "fp32", **_file_info(out / "model.onnx")},
            ref_pt,
            fp32,
            "pt",
        )
    else:
        records["onnx"] = {
            "format": "onnx",
            "precision": "fp32",
            **_file_info(out / "model.onnx"),
            "status": "ok",
            "reference": None,
            "offered": True,
            "metrics": fp32.metrics,
            "note": "no model.pt beside the ONNX file: parity with the checkpoint not checked",
        }
    records["onnx"]["seconds"] = round(time.perf_counter() - t0, 3)

    for name in wanted:
        t0 = time.perf_counter()
        try:
            if name == "int8":
                if not calib:
                    records[name] = {
                        "status": "skipped",
                        "offered": False,
                        "reason": "no calibration pages (pass a dataset with train/val images)",
                    }
                    continue
                target = out / INT8_FILE
                settings = quantize_int8(out / "model.onnx", target, card, calib, **dict(int8_options or {}))
                var = score(onnx_detector(target, card, EVAL_CONF))
                base = {"format": "onnx", "precision": "int8", **_file_info(target), "quantization": settings}
                finish(name, base, fp32, var, "onnx")
            else:  # formats ultralytics exports from model.pt: OpenVINO IR, TensorRT engine
                ok, why = openvino_available() if name == "openvino" else tensorrt_available()
                if not ok or not pt.is_file():
                    records[name] = {
                        "status": "skipped",
                        "offered": False,
                        "reason": why or "no model.pt to export from",
                    }
                    continue
                if name == "openvino":
                    # Left where ultralytics puts it (beside model.pt, as model_openvino_model/):
                    # AutoBackend recognises the format by that folder name.
                    target = _ultralytics_export(pt, "openvino", card.input_size, dynamic=False)
                    runner = ultralytics_runner(target, batch_size=1)
                    base = {
                        "format": "openvino",
                        "precision": "fp32",
                        "cpu_inference_precision": openvino_cpu_precision(),
                    }
                else:
                    # fp16 engine, static batch 1 (built and checked on the GPU worker itself).
                    target = _ultralytics_export(
                        pt, "engine", card.input_size, device=0, quantize="fp16", dynamic=False
                    )
                    runner = ultralytics_runner(target, device="cuda:0", batch_size=1)
                    base = {"format": "engine", "precision": "fp16"}
                var = score(RunnerDetector(runner, card, str(target), EVAL_CONF, card.iou_threshold))
                finish(name, {**base, **_file_info(target)}, fp32, var, "onnx")
        except Exception as exc:  # one failed format must not sink the others or the fp32 model
            logger.warning("variant %s failed: %s", name, exc, exc_info=True)
            records[name] = {
                "status": "failed",
                "offered": False,
                "reason": f"{exc.__class__.__name__}: {exc}",
            }
        finally:
            if name in records:
                records[name]["seconds"] = round(time.perf_counter() - t0, 3)
    return records


def variant_card(card: ModelCard, name: str, record: dict[str, Any]) -> ModelCard:
    """The card of an ONNX variant file: the parent card, its own checksum, and what it is."""
    out = ModelCard.from_dict(copy.deepcopy(card.to_dict()))
    out.sha256 = record["sha256"]
    out.extra.pop("files", None)
    out.extra.pop("variants", None)
    out.extra["variant"] = {
        "name": name,
        "of": card.model_version,
        **{k: v for k, v in record.items() if k != "metrics"},
    }
    if record.get("metrics"):
        out.metrics = dict(record["metrics"])
    return out

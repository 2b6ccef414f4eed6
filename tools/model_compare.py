"""Choose input size and preprocessing by measurement: accuracy on val against CPU latency.

``python tools/model_compare.py --model M --data DATASET [--sizes 320 416 512 640]`` evaluates
the same weights at several input sizes, letterboxed and stretched, on the val split (inkloop's
evaluator: mAP50, mAP50-95, P/R at the card's operating threshold) and times each configuration
with bare ``InferenceSession.run`` on the tensor a US-letter page gets (letterbox: padded to the
stride, 416 → 416×320; stretch: the full square), interleaved with yolov8s at 640 (the reference
model's architecture and size) so machine noise hits all alike. The table goes on the model card
(``metrics["comparison"]``) and in the README.

Only one set of weights is compared at several sizes here: the model's own input size (the card's
``input_size``, the size it is served at and the one the loop fine-tunes at; always a row, marked
``trained_size`` in the JSON and "served" in the table) is the reference, the others show what
serving it at another size would cost or buy.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from inkloop.models.references import ModelRef
from inkloop.models.resolve import resolve_model

LETTER = (2550, 3300)  # a US-letter page scanned at 300 dpi (width, height)


def input_shape(size: int, mode: str, stride: int = 32, page: tuple[int, int] = LETTER) -> tuple[int, int]:
    """(height, width) of the model input for a page: what :mod:`inkloop.detection.preprocess` produces."""
    if mode == "stretch":
        return size, size
    w, h = page
    r = min(size / h, size / w)
    nw, nh = round(w * r), round(h * r)
    return nh + (size - nh) % stride, nw + (size - nw) % stride


def timing_options() -> Any:
    """Session options for timing several sessions in turn: no spinning thread pools.

    onnxruntime's intra-op threads spin for a while after a run, waiting for more work; timed
    round-robin, the previous session's spinning threads steal the cores of the next run (we saw a
    352×416 run take 38 ms right after a yolov8s run and 21 ms otherwise).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def time_shapes(
    sessions: dict[str, tuple[Any, tuple[int, int]]], repeats: int = 20, warmup: int = 3
) -> dict[str, float]:
    """Median ms per image of each (session, input shape), timed round-robin."""
    feeds = {
        k: (s, {s.get_inputs()[0].name: np.random.default_rng(0).random((1, 3, *hw), dtype=np.float32)})
        for k, (s, hw) in sessions.items()
    }
    times: dict[str, list[float]] = {k: [] for k in feeds}
    for i in range(warmup + repeats):
        for k, (s, feed) in feeds.items():
            t = time.perf_counter()
            s.run(None, feed)
            if i >= warmup:
                times[k].append(time.perf_counter() - t)
    return {k: round(statistics.median(v) * 1000, 2) for k, v in times.items()}


def reference_onnx(out_dir: Path, cfg: str = "yolov8s.yaml", imgsz: int = 640) -> Path:
    """An (untrained: same cost as trained) ``cfg`` exported to ONNX at ``imgsz``."""
    from inkloop.lifecycle.training import offline_env

    offline_env()
    from ultralytics import YOLO

    produced = Path(YOLO(cfg).export(format="onnx", imgsz=imgsz, dynamic=False, simplify=True, device="cpu"))
    target = out_dir / f"{Path(cfg).stem}-{imgsz}.onnx"
    produced.replace(target)
    return target


def compare(
    model: str | None,
    data: str,
    sizes: tuple[int, ...] = (320, 416, 512, 640),
    modes: tuple[str, ...] = ("letterbox", "stretch"),
    repeats: int = 20,
) -> dict[str, Any]:
    import onnxruntime as ort

    from inkloop.detection.detector import Detector
    from inkloop.evaluation.evaluator import evaluate

    base = resolve_model(model)
    # the served size is always a row: the others are read against it
    sizes = tuple(sorted({*sizes, base.card.input_size}))
    rows: list[dict[str, Any]] = []
    for mode in modes:
        for size in sizes:
            ref = ModelRef(base.path, replace(base.card, input_size=size, preprocessing=mode), base.ref)  # type: ignore[arg-type]
            det = Detector(ref, conf=0.001)
            rep = evaluate(det, data, "val", conf=base.card.conf_threshold, plot=False)
            rows.append(
                {
                    "preprocessing": mode,
                    "input_size": size,
                    "trained_size": size == base.card.input_size and mode == base.card.preprocessing,
                    "input_hw": list(input_shape(size, mode, det.stride or 32)),
                    "mAP50": round(rep.map50, 4),
                    "mAP50-95": round(rep.map50_95, 4),
                    "precision": round(rep.precision, 4),
                    "recall": round(rep.recall, 4),
                }
            )
    opts = timing_options()
    with tempfile.TemporaryDirectory() as tmp:
        ref_path = reference_onnx(Path(tmp))
        sess = ort.InferenceSession(str(base.path), opts, providers=["CPUExecutionProvider"])
        ref_sess = ort.InferenceSession(str(ref_path), opts, providers=["CPUExecutionProvider"])
        shapes = {f"{r['preprocessing']}-{r['input_size']}": (sess, tuple(r["input_hw"])) for r in rows}
        ms = time_shapes({**shapes, "yolov8s-640": (ref_sess, (640, 640))}, repeats=repeats)
    for r in rows:
        r["ms_per_page"] = ms[f"{r['preprocessing']}-{r['input_size']}"]
        r["ratio_to_yolov8s_640"] = round(r["ms_per_page"] / ms["yolov8s-640"], 3)
    return {
        "model_version": base.card.model_version,
        "data": str(data),
        "split": "val",
        "operating_threshold": base.card.conf_threshold,
        "yolov8s_640_ms_per_page": ms["yolov8s-640"],
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| preprocessing | input | tensor (letter page) | mAP50 | mAP50-95 | recall | precision "
        "| ms/page | vs yolov8s@640 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        size = f"**{r['input_size']}** (served)" if r["trained_size"] else str(r["input_size"])
        h, w = r["input_hw"]
        lines.append(
            f"| {r['preprocessing']} | {size} | {w}×{h} | {r['mAP50']:.3f} | {r['mAP50-95']:.3f} | "
            f"{r['recall']:.3f} | {r['precision']:.3f} | {r['ms_per_page']:.1f} "
            f"| {r['ratio_to_yolov8s_640']:.2f}× |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model reference (default: the bundled model)")
    p.add_argument("--data", required=True, help="YOLO dataset with a val split")
    p.add_argument("--sizes", type=int, nargs="+", default=[320, 416, 512, 640])
    p.add_argument("--modes", nargs="+", default=["letterbox", "stretch"])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--markdown", action="store_true", help="print the Markdown table, not JSON")
    a = p.parse_args(argv)
    os.environ["YOLO_VERBOSE"] = "false"  # stdout carries the result only (ultralytics logs to stdout)
    result = compare(a.model, a.data, tuple(a.sizes), tuple(a.modes), a.repeats)
    print(markdown(result) if a.markdown else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

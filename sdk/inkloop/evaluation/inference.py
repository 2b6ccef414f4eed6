"""Running a detector over a dataset split: the predictions the metrics score, and the latency."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from inkloop.datasets import DatasetError
from inkloop.evaluation.loading import YoloDataset, load_rgb
from inkloop.evaluation.report import ImagePredictions

if TYPE_CHECKING:  # onnxruntime loads with the detector, not with the evaluator's modules
    from inkloop.detection.detector import Detector


def predict_dataset(
    detector: Detector,
    dataset: YoloDataset,
    batch_size: int = 4,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[ImagePredictions], float]:
    """Run the detector over every image; returns predictions and mean ms per image of
    :meth:`Detector.run` (inference + decoding, without image loading and preprocessing)."""
    names = list(detector.card.class_names)
    index = {n: i for i, n in enumerate(names)}
    out: list[ImagePredictions] = []
    run_seconds = 0.0
    samples = dataset.samples
    for start in range(0, len(samples), max(1, batch_size)):
        chunk = samples[start : start + batch_size]
        prepared = [detector.prepare(load_rgb(s.image)) for s in chunk]
        t0 = time.perf_counter()
        dets = detector.run(prepared)
        run_seconds += time.perf_counter() - t0
        for s, ds in zip(chunk, dets, strict=True):
            out.append(
                ImagePredictions(
                    path=str(s.image),
                    gt_boxes=s.boxes,
                    gt_classes=s.classes,
                    boxes=np.array([d.xyxy for d in ds], dtype=np.float64).reshape(-1, 4),
                    scores=np.array([d.score for d in ds], dtype=np.float64),
                    classes=np.array([index[d.label] for d in ds], dtype=np.int64),
                    domain=s.domain,
                )
            )
        if progress is not None:
            progress(len(chunk))
    return out, (1000.0 * run_seconds / len(samples) if samples else 0.0)


def check_classes(dataset: YoloDataset, n_classes: int, model_version: str) -> None:
    """Refuse labels with class ids the model does not have.

    ultralytics would silently drop such images as corrupt, and a plain mean over classes would
    count them as classes with AP 0: either way the mAP would mean something else. A dataset
    labelled for another model is a mistake worth stopping for.
    """
    for s in dataset.samples:
        bad = s.classes[(s.classes < 0) | (s.classes >= n_classes)]
        if bad.size:
            raise DatasetError(
                f"{s.label}: class id {int(bad[0])} but {model_version} has {n_classes} class(es)"
            )

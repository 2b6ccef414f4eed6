"""Routing's second view of a page (test-time augmentation): the model image under a mild change,
prepared for the detector beside the plain view so both are inferred in the same batch."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from inkloop.detection.detector import Prepared
from inkloop.detection.preprocess import PAD_VALUE, Transform, as_rgb, letterbox, prepare, stretch
from inkloop.routing.config import RoutingConfig

if TYPE_CHECKING:
    from inkloop.detection.detector import Detector
    from inkloop.models.references import Preprocessing


def apply_gamma(image: np.ndarray, gamma: float) -> np.ndarray:
    """``255·(x/255)^gamma`` on a uint8 image; 0 and 255 are fixed points."""
    lut = np.round(((np.arange(256, dtype=np.float64) / 255.0) ** gamma) * 255.0).astype(np.uint8)
    return lut[image]


def shrink_prepare(
    image: np.ndarray, size: int, mode: Preprocessing, scale: float
) -> tuple[np.ndarray, Transform]:
    """Like :func:`~inkloop.detection.preprocess.prepare`, but the page fills only ``scale`` of the input,
    centred."""
    inner = max(1, round(size * scale))
    rgb = as_rgb(image)
    resized, t = letterbox(rgb, inner) if mode == "letterbox" else stretch(rgb, inner)
    left = (size - inner) // 2
    top = (size - inner) // 2
    canvas = cv2.copyMakeBorder(
        resized,
        top,
        size - inner - top,
        left,
        size - inner - left,
        cv2.BORDER_CONSTANT,
        value=(PAD_VALUE,) * 3,
    )
    chw = np.ascontiguousarray(canvas.transpose(2, 0, 1), dtype=np.float32)
    chw *= 1.0 / 255.0
    return chw, Transform(t.gain_x, t.gain_y, t.pad_x + left, t.pad_y + top, t.src_width, t.src_height)


def tta_tensor(
    image: np.ndarray, size: int, mode: Preprocessing, config: RoutingConfig
) -> tuple[np.ndarray, Transform]:
    """The second view of a model image, as a model input and the way back to the image's pixels."""
    if config.tta_transform == "gamma":
        return prepare(apply_gamma(image, config.tta_gamma), size, mode)
    return shrink_prepare(image, size, mode, config.tta_scale)


def prepare_tta(detector: Detector, image: np.ndarray, config: RoutingConfig) -> Prepared:
    """:func:`tta_tensor` for ``detector``; runs in the pipeline's producer thread beside inference."""
    tensor, transform = tta_tensor(image, detector.input_size, detector.card.preprocessing, config)
    return Prepared(tensor, transform)

"""Page image → model input tensor, and the exact inverse for boxes.

Two modes, chosen by the model card: ``letterbox`` keeps the aspect ratio and pads with grey 114
(what ultralytics' predict does), ``stretch`` resizes to a square ignoring aspect ratio (what the
reference model was trained on). The resize uses OpenCV's bilinear filter, like ultralytics, so
the same page gives the same tensor — and the same boxes — in both.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from inkloop.models.references import Preprocessing

PAD_VALUE = 114


@dataclass(frozen=True, slots=True)
class Transform:
    """How model-input pixels map back to the source image: ``src = (dst - pad) / gain``."""

    gain_x: float
    gain_y: float
    pad_x: float
    pad_y: float
    src_width: int
    src_height: int

    def to_source(self, boxes: np.ndarray) -> np.ndarray:
        """Map ``(N, 4)`` xyxy boxes from model input back to source pixels, clipped to the image."""
        out = boxes.astype(np.float64, copy=True)
        out[:, [0, 2]] = (out[:, [0, 2]] - self.pad_x) / self.gain_x
        out[:, [1, 3]] = (out[:, [1, 3]] - self.pad_y) / self.gain_y
        np.clip(out[:, [0, 2]], 0, self.src_width, out=out[:, [0, 2]])
        np.clip(out[:, [1, 3]], 0, self.src_height, out=out[:, [1, 3]])
        return out


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Accept grayscale, RGB or RGBA uint8 arrays; return contiguous RGB."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_RGBA2RGB)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f"unsupported image shape {image.shape}")


def letterbox(image: np.ndarray, size: int, stride: int | None = None) -> tuple[np.ndarray, Transform]:
    """Fit in ``size``×``size`` keeping the aspect ratio, pad with grey.

    With ``stride``, pad only up to the next multiple of it (ultralytics' "minimum rectangle",
    what its predict does for models with dynamic input sizes): a letter page at 416 becomes
    352×416 instead of 416×416, 15 % less work for the same boxes.
    """
    h, w = image.shape[:2]
    r = min(size / h, size / w)
    new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
    if (new_w, new_h) != (w, h):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    dw, dh = size - new_w, size - new_h
    if stride:
        dw, dh = dw % stride, dh % stride
    dw, dh = dw / 2, dh / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    out = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    return out, Transform(new_w / w, new_h / h, left, top, w, h)


def stretch(image: np.ndarray, size: int) -> tuple[np.ndarray, Transform]:
    h, w = image.shape[:2]
    if (w, h) != (size, size):
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    return image, Transform(size / w, size / h, 0.0, 0.0, w, h)


def prepare(
    image: np.ndarray, size: int, mode: Preprocessing, stride: int | None = None
) -> tuple[np.ndarray, Transform]:
    """RGB uint8 HxWxC → float32 CHW in [0, 1] at ``size``×``size``, plus its inverse transform.

    ``stride`` (letterbox only, for models with dynamic input sizes): pad to a multiple of it
    instead of the full square, see :func:`letterbox`.
    """
    rgb = as_rgb(image)
    resized, t = letterbox(rgb, size, stride) if mode == "letterbox" else stretch(rgb, size)
    chw = np.ascontiguousarray(resized.transpose(2, 0, 1), dtype=np.float32)
    chw *= 1.0 / 255.0
    return chw, t

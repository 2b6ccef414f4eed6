"""Outputs for people: annotated page images, annotated copies of PDFs, signature crops.

Drawn from the reading-resolution rendering, never from the small one the model saw, with the
same page-pixel boxes the results file holds.
"""

from __future__ import annotations

import os
import re

import cv2
import numpy as np

from inkloop import storage
from inkloop.convert.pdf import pixels_to_points
from inkloop.types import Detection, PageResult

COLOR = (220, 20, 60)  # crimson, visible on black-and-white scans


def safe_stem(source: str) -> str:
    """A file-name stem from a source path or URL, readable and safe on every filesystem."""
    name = storage.file_name(source)
    name = (name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name) or "document"
    return re.sub(r"[^\w.\-]+", "_", name, flags=re.UNICODE)[:80]


def draw_boxes(image: np.ndarray, detections: list[Detection], scale: float = 1.0) -> np.ndarray:
    """A copy of ``image`` with each box and its label/score drawn."""
    out = np.ascontiguousarray(image.copy())
    thick = max(2, round(max(out.shape[:2]) / 600))
    for d in detections:
        x0, y0, x1, y1 = (round(v * scale) for v in d.xyxy)
        cv2.rectangle(out, (x0, y0), (x1, y1), COLOR, thick)
        label = f"{d.label} {d.score:.2f}"
        fs = max(0.5, thick / 3)
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, fs, 1)
        ty = max(th + 4, y0 - 4)
        tx = max(0, min(x0, out.shape[1] - tw - 4))  # keep the label on the page
        cv2.rectangle(out, (tx, ty - th - 4), (tx + tw + 4, ty + 2), COLOR, -1)
        cv2.putText(
            out, label, (tx + 2, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, fs, (255, 255, 255), 1, cv2.LINE_AA
        )
    return out


def write_png(image: np.ndarray, url: str) -> str:
    """Encode and store a PNG at ``url`` (a local path or a storage URL)."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"cannot encode PNG for {url}")
    # encoded here, written by the storage layer: imwrite cannot write non-ASCII paths everywhere
    return storage.write_bytes(url, buf.tobytes())


def crop(image: np.ndarray, d: Detection, margin: float = 0.05) -> np.ndarray:
    """The box plus a small margin, clipped to the page."""
    h, w = image.shape[:2]
    mx, my = d.width * margin, d.height * margin
    x0, y0 = max(0, int(d.xyxy[0] - mx)), max(0, int(d.xyxy[1] - my))
    x1, y1 = min(w, int(np.ceil(d.xyxy[2] + mx))), min(h, int(np.ceil(d.xyxy[3] + my)))
    return image[y0:y1, x0:x1]


def annotate_pdf(src: str | os.PathLike[str], results: list[PageResult], dst: str) -> str:
    """A copy of the PDF (``src``, local) with each detection drawn as a rectangle annotation on its
    page, stored at ``dst`` (a local path or a storage URL).

    Annotations (not content edits) keep the original page untouched and let a reader toggle them.
    """
    import pymupdf

    with pymupdf.open(os.fspath(src)) as doc:
        for r in results:
            if not r.detections or r.page.dpi is None:
                continue
            page = doc[r.page.index]
            origin = page.rect.tl
            for d in r.detections:
                x0, y0, x1, y1 = pixels_to_points(d.xyxy, r.page.dpi)
                rect = pymupdf.Rect(x0 + origin.x, y0 + origin.y, x1 + origin.x, y1 + origin.y)
                annot = page.add_rect_annot(rect * page.derotation_matrix if page.rotation else rect)
                annot.set_colors(stroke=(COLOR[0] / 255, COLOR[1] / 255, COLOR[2] / 255))
                annot.set_border(width=1.5)
                annot.set_info(title="inkloop", content=f"{d.label} {d.score:.3f} ({r.model_version})")
                annot.update()
        data = doc.tobytes(garbage=1, deflate=True)
    return storage.write_bytes(dst, data)

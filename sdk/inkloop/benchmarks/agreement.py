"""Detection agreement between inkloop's pipeline and the alternative a user would write without it
(pymupdf at 150 dpi, then ``ultralytics.YOLO(model.onnx).predict``), page by page, in page pixels."""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

Boxes = list[tuple[tuple[float, float, float, float], float]]


PageBoxes = dict[tuple[str, int], Boxes]


def pipeline_boxes(out_dir: Path) -> PageBoxes:
    from inkloop.detection.results import read_results

    out: PageBoxes = {}
    for r in read_results(out_dir):
        out[(Path(r.source or "").name, r.page.index)] = [(tuple(d.xyxy), d.score) for d in r.detections]
    return out


class Alternative:
    """The obvious alternative: pymupdf at 150 dpi (or the image file) + ultralytics' predict."""

    def __init__(self, model_path: Path, imgsz: int, conf: float, iou: float, dpi: float = 150.0) -> None:
        from inkloop.lifecycle.training import offline_env

        os.environ.setdefault("YOLO_VERBOSE", "false")  # a benchmark's output is its table
        offline_env()
        from ultralytics import YOLO

        self.yolo = YOLO(str(model_path), task="detect")
        self.kw = dict(imgsz=imgsz, conf=conf, iou=iou, device="cpu", verbose=False)
        self.dpi = round(dpi)  # pymupdf wants an integer dpi

    def _predict(self, src: Any) -> Boxes:
        res = self.yolo.predict(src, **self.kw)[0]
        xyxy = res.boxes.xyxy.cpu().numpy().tolist()
        conf = res.boxes.conf.cpu().numpy().tolist()
        return [(tuple(float(v) for v in b), float(s)) for b, s in zip(xyxy, conf, strict=True)]

    def run(self, files: Sequence[Path]) -> PageBoxes:
        import pymupdf

        out: PageBoxes = {}
        for f in files:
            if f.suffix.lower() != ".pdf":
                out[(f.name, 0)] = self._predict(str(f))
                continue
            with pymupdf.open(f) as doc:
                for i, page in enumerate(doc):
                    pix = page.get_pixmap(dpi=self.dpi)
                    img = np.frombuffer(pix.samples, np.uint8).reshape(pix.height, pix.width, pix.n)
                    out[(f.name, i)] = self._predict(np.ascontiguousarray(img[:, :, ::-1]))  # RGB → BGR
        return out


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def compare(
    ours: PageBoxes, theirs: PageBoxes, tolerance_px: float, conf: float, margin: float = 0.05
) -> dict[str, Any]:
    """Page-by-page agreement: same number of boxes, each paired box within ``tolerance_px``.

    Boxes are paired greedily by IoU (≥ 0.5), highest score first. A disagreement whose unpaired
    boxes all score within ``margin`` of the threshold is counted as a threshold flip: the two
    renderings differ slightly, and a box at 0.26 in one can be 0.24 in the other.
    """
    keys = sorted(set(ours) | set(theirs))
    agree = flips = 0
    devs: list[float] = []
    score_diffs: list[float] = []
    mismatches: list[dict[str, Any]] = []
    n_ours = n_theirs = 0
    for key in keys:
        a = sorted(ours.get(key, []), key=lambda x: -x[1])
        b = sorted(theirs.get(key, []), key=lambda x: -x[1])
        n_ours += len(a)
        n_theirs += len(b)
        used: set[int] = set()
        unpaired_a: list[float] = []
        page_dev, page_iou = 0.0, 1.0
        for box, score in a:
            best, best_j = 0.0, -1
            for j, (box2, _s2) in enumerate(b):
                if j not in used and (v := _iou(box, box2)) > best:
                    best, best_j = v, j
            if best_j < 0 or best < 0.5:
                unpaired_a.append(score)
                continue
            used.add(best_j)
            page_iou = min(page_iou, best)
            dev = max(abs(x - y) for x, y in zip(box, b[best_j][0], strict=True))
            devs.append(dev)
            score_diffs.append(abs(score - b[best_j][1]))
            page_dev = max(page_dev, dev)
        unpaired_b = [s for j, (_bx, s) in enumerate(b) if j not in used]
        if not unpaired_a and not unpaired_b and page_dev <= tolerance_px:
            agree += 1
            continue
        flip = page_dev <= tolerance_px and all(abs(s - conf) <= margin for s in unpaired_a + unpaired_b)
        flips += flip
        mismatches.append(
            {
                "file": key[0],
                "page": key[1],
                "pipeline_boxes": len(a),
                "alternative_boxes": len(b),
                "max_deviation_px": round(page_dev, 2),
                "min_paired_iou": round(page_iou, 3),
                "unpaired_scores": [round(s, 3) for s in unpaired_a + unpaired_b],
                "threshold_flip": flip,
            }
        )
    return {
        "pages": len(keys),
        "pages_agree": agree,
        "agreement": round(agree / len(keys), 4) if keys else None,
        "threshold_flips": flips,
        "boxes_pipeline": n_ours,
        "boxes_alternative": n_theirs,
        "boxes_paired": len(devs),
        "median_deviation_px": round(statistics.median(devs), 2) if devs else None,
        "max_deviation_px": round(max(devs), 2) if devs else None,
        "max_score_diff": round(max(score_diffs), 4) if score_diffs else None,
        "tolerance_px": tolerance_px,
        "mismatches": mismatches[:25],
    }

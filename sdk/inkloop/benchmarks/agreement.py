"""Detection agreement between inkloop's pipeline and the alternative a user would write without it
(pymupdf at 150 dpi, then ``ultralytics.YOLO(model.onnx).predict``), page by page, in page pixels."""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inkloop.geometry import box_iou, match_boxes

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
        iou = box_iou([box for box, _ in a], [box for box, _ in b], eps=0.0)
        pairs, lone_a, lone_b = match_boxes(iou, 0.5, order="rows")
        unpaired_a = [a[i][1] for i in lone_a]
        page_dev, page_iou = 0.0, 1.0
        for i, j in pairs:
            (box, score), (box2, score2) = a[i], b[j]
            page_iou = min(page_iou, float(iou[i, j]))
            dev = max(abs(x - y) for x, y in zip(box, box2, strict=True))
            devs.append(dev)
            score_diffs.append(abs(score - score2))
            page_dev = max(page_dev, dev)
        unpaired_b = [b[j][1] for j in lone_b]
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

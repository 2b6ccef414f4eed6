"""Measure the verdict's date-line rule on a labelled split: which kept boxes it makes ambiguous.

``python tools/date_lines.py RESULTS`` takes a results folder of ``inkloop detect`` over a split's
images (a YOLO folder: ``images/<split>/`` beside ``labels/<split>/``), reads the printed lines
around every kept box with the verdict's own crop and OCR (``inkloop.verdict.dates``), and counts
the boxes on a date line among the right ones (IoU ≥ 0.5 with a labelled signature) and the
others. The table in docs/verdict.md ("Ink on a date line") came from::

    inkloop detect ../shared/datasets/signatures-real/images/val --out /tmp/valdet --no-verdict
    python tools/date_lines.py /tmp/valdet

A good rule flags many wrong boxes and no right one. It needs the ``verdict`` extra (RapidOCR).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

import inkloop
from inkloop.convert.yolo import from_yolo, read_labels
from inkloop.geometry import box_iou
from inkloop.verdict.dates import date_labels_around, on_date_line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", type=Path, help="`inkloop detect` results over a YOLO split's images")
    args = ap.parse_args()
    rows = []
    started = time.process_time()
    for r in inkloop.read_results(args.results):
        src = Path(r.source)
        img = np.asarray(Image.open(src).convert("RGB"))
        h, w = img.shape[:2]
        labels = src.parent.parent.parent / "labels" / src.parent.name / f"{src.stem}.txt"
        truth = [from_yolo(b, w, h) for _, b in read_labels(labels.read_text())] if labels.exists() else []
        for d in r.detections:
            found = date_labels_around(img, d.xyxy)
            right = bool(truth) and float(box_iou(np.array([d.xyxy]), np.array(truth)).max()) >= 0.5
            dated = any(on_date_line(d.xyxy, b) for b in found)
            rows.append((src.name, round(d.score, 3), right, dated))
    right = [x for x in rows if x[2]]
    wrong = [x for x in rows if not x[2]]
    for name, score, ok, dated in rows:
        if dated:
            print(f"on a date line: {name} score {score} ({'RIGHT' if ok else 'not a signature'})")
    print(
        f"{len(rows)} boxes: {len(right)} right, {len(wrong)} not signatures; on a date line: "
        f"{sum(x[3] for x in right)} right, {sum(x[3] for x in wrong)} not signatures "
        f"({(time.process_time() - started) / max(1, len(rows)):.2f} s of CPU a box)"
    )


if __name__ == "__main__":
    main()

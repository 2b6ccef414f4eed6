"""A model soup: the weight average of fine-tunes that share one pretrained start.

Fine-tunes of the same pretrained weights often sit in one basin of the loss, where their
average scores as well as the best of them or better (Wortsman et al., 2022, "Model soups"),
at no cost at inference: the soup is one network of the same size. Whether it helps here is a
measurement, so the script scores every ingredient and the soup with ultralytics' ``val`` on the
same split and sizes.

The average itself is the SDK's (:func:`inkloop.lifecycle.soup.average_checkpoints`, which the
retrain lifecycle blends a fine-tune with its parent by); this tool scores the ingredients beside it.

``python tools/soup.py A.pt B.pt [C.pt …] --out soup.pt [--val DATA] [--imgsz 416 512]``
writes the uniform average (``--weights`` for another mix) and prints one JSON line per model and
size: mAP50, mAP50-95, precision and recall from ``val`` (conf 0.001, NMS IoU 0.7, ``rect=False``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from inkloop.lifecycle.soup import average_checkpoints
from inkloop.models.references import ModelError


def validate(model: Path, data: str, imgsz: int) -> dict[str, float]:
    """ultralytics ``val`` of one checkpoint at one input size (its plots and files in a temp folder).

    ``data`` is a dataset folder or a data yaml; its relative ``path`` is taken from the yaml's own
    folder (ultralytics would take it from the working directory).
    """
    import tempfile

    from ultralytics import YOLO

    from inkloop.lifecycle.training import resolve_data_yaml

    with tempfile.TemporaryDirectory() as tmp:
        r = YOLO(str(model)).val(
            data=str(resolve_data_yaml(data, Path(tmp))), imgsz=imgsz, batch=8, conf=0.001, iou=0.7,
            rect=False, plots=False, verbose=False, project=tmp, name="val", device="cpu",
        )  # fmt: skip
    return {
        "map50": round(float(r.box.map50), 4),
        "map50_95": round(float(r.box.map), 4),
        "precision": round(float(r.box.mp), 4),
        "recall": round(float(r.box.mr), 4),
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "checkpoints", nargs="+", type=Path, help="ultralytics .pt files with one pretrained start"
    )
    ap.add_argument("--out", type=Path, required=True, help="where to write the soup's .pt")
    ap.add_argument(
        "--weights", type=float, nargs="+", help="one per checkpoint, summing to 1 (default: equal)"
    )
    ap.add_argument(
        "--val",
        metavar="DATA",
        help="a dataset folder or data yaml: score every ingredient and the soup on its val split",
    )
    ap.add_argument(
        "--imgsz", type=int, nargs="+", default=[416], help="input sizes to score at (default 416)"
    )
    args = ap.parse_args(argv)
    try:
        soup = average_checkpoints(args.checkpoints, args.out, args.weights)
    except (ModelError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"soup": str(soup), "of": [str(p) for p in args.checkpoints]}))
    if args.val:
        for model in [*args.checkpoints, soup]:
            for size in args.imgsz:
                print(
                    json.dumps({"model": str(model), "imgsz": size, **validate(model, args.val, size)}),
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

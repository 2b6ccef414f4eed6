"""A model soup: the weight average of fine-tunes that share one pretrained start.

Fine-tunes of the same pretrained weights often sit in one basin of the loss, where their
average scores as well as the best of them or better (Wortsman et al., 2022, "Model soups"),
at no cost at inference: the soup is one network of the same size. Whether it helps here is a
measurement, so the script scores every ingredient and the soup with ultralytics' ``val`` on the
same split and sizes.

``python tools/soup.py A.pt B.pt [C.pt …] --out soup.pt [--val DATA] [--imgsz 416 512]``
writes the uniform average (``--weights`` for another mix) and prints one JSON line per model and
size: mAP50, mAP50-95, precision and recall from ``val`` (conf 0.001, NMS IoU 0.7, ``rect=False``).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _network(path: Path) -> tuple[dict[str, Any], Any]:
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    net = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else None
    if net is None:
        raise ValueError(f"{path}: not an ultralytics checkpoint (no 'ema' or 'model' network in it)")
    return ckpt, net.float()


def average_checkpoints(paths: Sequence[Path], out: Path, weights: Sequence[float] | None = None) -> Path:
    """Write the weighted average of the checkpoints' networks as an ultralytics checkpoint.

    Floating-point tensors (weights, biases, BatchNorm statistics) are averaged; integer ones (the
    BatchNorm batch counter) are taken from the first. Networks must have the same layers and
    shapes: a YOLOv8n and a YOLO11n do not average.
    """
    import torch

    if len(paths) < 2:
        raise ValueError("a soup needs at least two checkpoints")
    weights = list(weights) if weights is not None else [1.0 / len(paths)] * len(paths)
    if len(weights) != len(paths) or abs(sum(weights) - 1.0) > 1e-6 or min(weights) < 0:
        raise ValueError(
            f"weights must be one non-negative number per checkpoint summing to 1, got {weights}"
        )
    loaded = [_network(Path(p)) for p in paths]
    first_ckpt, first = loaded[0]
    states = [net.state_dict() for _, net in loaded]
    for path, state in zip(paths[1:], states[1:], strict=True):
        shapes = {k: tuple(v.shape) for k, v in state.items()}
        if shapes != {k: tuple(v.shape) for k, v in states[0].items()}:
            raise ValueError(
                f"{path}: its layers or shapes differ from {paths[0]}'s; only one architecture averages"
            )
    soup = copy.deepcopy(first)
    mixed = {
        k: sum(w * s[k] for w, s in zip(weights, states, strict=True)) if v.is_floating_point() else v
        for k, v in states[0].items()
    }
    soup.load_state_dict(mixed)
    ckpt = {
        **first_ckpt,
        "model": soup.half(),
        "ema": None,
        "optimizer": None,
        "soup": [str(p) for p in paths],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, out)
    return out


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
    except (ValueError, OSError) as exc:
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

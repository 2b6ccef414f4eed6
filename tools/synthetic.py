"""Synthetic training pages: real signature crops pasted onto blank regions of real pages.

With 529 real pages the bundled model is data-bound (more epochs of the same data did not help,
see the README). More *positions, scales and backgrounds* for the signatures it has seen are the
cheapest new data: each synthetic page is a real training page with one more real signature
(cut from another training page) pasted where the page is blank, jittered in scale, rotation,
ink darkness and blur, blended as ink on paper (the darker pixel wins). Only the train split is
used, for crops and hosts alike, so val stays untouched.

``python tools/synthetic.py --data DATASET --out DIR [--pages 529] [--seed 0]`` writes
``DIR/images/train``, ``DIR/labels/train`` and a ``DIR/data.yaml`` whose train split is the real
train pages plus the synthetic ones and whose val split is the real val split.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from derived_dataset import finish, parser

from inkloop.convert.yolo import format_line, to_yolo
from inkloop.synth.crops import Crop, signature_crops

#: A region counts as blank when at most this share of its pixels is ink (darker than INK_LEVEL).
BLANK_INK_SHARE = 0.004
INK_LEVEL = 200


def jitter(crop: np.ndarray, rng: np.random.Generator, scale: float) -> np.ndarray:
    """Scale, rotate (±3°), darken or lighten the ink, and sometimes blur a crop."""
    h, w = crop.shape
    nw, nh = max(8, round(w * scale)), max(8, round(h * scale))
    out = cv2.resize(crop, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    angle = float(rng.uniform(-3, 3))
    m = cv2.getRotationMatrix2D((nw / 2, nh / 2), angle, 1.0)
    out = cv2.warpAffine(out, m, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=255)
    # ink darkness: map [0, 255] so that white stays white and ink moves (a lighter or darker pen)
    gamma = float(rng.uniform(0.6, 1.6))
    out = (255.0 * (out / 255.0) ** gamma).astype(np.uint8)
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (3, 3), 0)
    return out


def find_blank(
    ink: np.ndarray,
    size: tuple[int, int],
    taken: list[tuple[float, float, float, float]],
    rng: np.random.Generator,
) -> tuple[int, int] | None:
    """Top-left corner of a blank ``size`` (w, h) region not touching ``taken`` boxes, or None."""
    h, w = ink.shape
    bw, bh = size
    if bw >= w or bh >= h:
        return None
    integral = cv2.integral(ink.astype(np.uint8))
    for _ in range(60):
        x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
        total = integral[y + bh, x + bw] - integral[y, x + bw] - integral[y + bh, x] + integral[y, x]
        if total > BLANK_INK_SHARE * bw * bh:
            continue
        if any(x < tx1 and x + bw > tx0 and y < ty1 and y + bh > ty0 for tx0, ty0, tx1, ty1 in taken):
            continue
        return x, y
    return None


def synthesize_page(
    host: np.ndarray, boxes: np.ndarray, crops: list[Crop], rng: np.random.Generator, host_path: str
) -> tuple[np.ndarray, list[tuple[float, float, float, float]]] | None:
    """``host`` (RGB) with one more signature; its boxes (old + new), or None if nothing fits."""
    gray = cv2.cvtColor(host, cv2.COLOR_RGB2GRAY)
    w = gray.shape[1]
    candidates = [c for c in crops if c.source != host_path] or crops
    crop = candidates[int(rng.integers(len(candidates)))].image
    # a signature is 10–35 % of the page width, whatever page it was cut from
    target_w = float(rng.uniform(0.10, 0.35)) * w
    piece = jitter(crop, rng, target_w / crop.shape[1])
    ph, pw = piece.shape
    taken = [tuple(map(float, b)) for b in boxes]
    spot = find_blank(gray < INK_LEVEL, (pw, ph), taken, rng)  # type: ignore[arg-type]
    if spot is None:
        return None
    ys, xs = np.nonzero(piece < INK_LEVEL)
    if not len(xs):  # jitter lightened the ink away: nothing to label
        return None
    x, y = spot
    out = host.copy()
    region = out[y : y + ph, x : x + pw]
    np.minimum(region, piece[:, :, None], out=region)  # ink on paper: the darker pixel wins
    new = (float(x + xs.min()), float(y + ys.min()), float(x + xs.max() + 1), float(y + ys.max() + 1))
    return out, [*taken, new]


def make_synthetic(data: str, out: str | Path, pages: int | None = None, seed: int = 0) -> dict[str, object]:
    """Write ``pages`` synthetic pages (default: as many as there are train pages) and a data.yaml."""
    from inkloop.evaluation.evaluator import load_dataset, load_rgb

    train = load_dataset(data, "train")
    val = load_dataset(data, "val")
    crops = signature_crops(train.samples, restore_aspect=False)  # hosts are stored stretched too
    if not crops:
        raise ValueError(f"{data}: no labelled signatures in the train split to paste")
    out = Path(out)
    (out / "images" / "train").mkdir(parents=True, exist_ok=True)
    (out / "labels" / "train").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    want = len(train) if pages is None else pages
    written = attempts = 0
    while written < want and attempts < want * 3:
        s = train.samples[int(rng.integers(len(train)))]
        attempts += 1
        host = load_rgb(s.image)
        made = synthesize_page(host, s.boxes, crops, rng, str(s.image))
        if made is None:
            continue
        image, boxes = made
        name = f"synth-{written:05d}-{s.image.stem}"
        cv2.imwrite(
            str(out / "images" / "train" / f"{name}.jpg"),
            cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, 90],
        )
        h, w = image.shape[:2]
        lines = [format_line(0, to_yolo(b, w, h)) for b in boxes]
        (out / "labels" / "train" / f"{name}.txt").write_text("\n".join(lines) + "\n")
        written += 1
    train_dirs = sorted({str(s.image.parent.resolve()) for s in train.samples})
    val_dirs = sorted({str(s.image.parent.resolve()) for s in val.samples})
    cfg = {
        "path": str(out.resolve()),
        "train": [*train_dirs, str((out / "images" / "train").resolve())],
        "val": val_dirs,
        "names": {0: "signature"},
    }
    info = {
        "synthetic_pages": written,
        "attempts": attempts,
        "crops": len(crops),
        "seed": seed,
        "source": str(data),
    }
    return finish(out, cfg, "synthetic.json", info)


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__, "YOLO dataset with train and val splits")
    p.add_argument("--pages", type=int, default=None, help="synthetic pages (default: one per train page)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    print(json.dumps(make_synthetic(a.data, a.out, a.pages, a.seed), indent=2))


if __name__ == "__main__":
    main()

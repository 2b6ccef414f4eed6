"""A copy of a YOLO dataset with every page stretched to a square: for training a stretch model.

The reference signature model was trained on pages stretched to 640×640 (no letterbox), while
ultralytics' training letterboxes. Comparing the two preprocessing modes fairly needs a model
*trained* on stretched pages, not only letterbox weights run on stretched input. ultralytics
letterboxes a square image without padding, so training on pre-stretched squares is stretch
training. YOLO labels are normalized to the image, so stretching leaves them unchanged: they
are copied byte for byte.

``python tools/stretched.py --data DATASET --out DIR [--size 640]`` writes ``DIR/images/<split>``,
``DIR/labels/<split>`` and ``DIR/data.yaml`` for every split the dataset has; the model trained on
it is evaluated with ``preprocessing="stretch"`` on the original pages.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
from derived_dataset import finish, parser

SPLITS = ("train", "val", "test")


def make_stretched(data: str | Path, out: str | Path, size: int = 640) -> dict[str, object]:
    """Write the stretched copy; returns page counts per split."""
    from inkloop.evaluation.evaluator import DatasetError, load_dataset, load_rgb

    if size < 32:
        raise ValueError(f"size must be at least 32 px, got {size}")
    out = Path(out)
    counts: dict[str, int] = {}
    names: list[str] | None = None
    for split in SPLITS:
        try:
            ds = load_dataset(data, split)
        except DatasetError:
            continue  # a dataset without this split
        stems = [s.image.stem for s in ds.samples]
        if len(set(stems)) != len(stems):
            raise ValueError(f"{data} [{split}]: two images share a file stem; their copies would collide")
        names = names or ds.names
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        for s in ds.samples:
            # load_rgb applies EXIF orientation, as ultralytics does before using the labels
            square = cv2.resize(load_rgb(s.image), (size, size), interpolation=cv2.INTER_AREA)
            cv2.imwrite(
                str(out / "images" / split / f"{s.image.stem}.png"), cv2.cvtColor(square, cv2.COLOR_RGB2BGR)
            )
            label = out / "labels" / split / f"{s.image.stem}.txt"
            if s.label is not None:  # load_dataset sets it only for an existing file
                shutil.copyfile(s.label, label)
            else:
                label.write_text("")  # a page without signatures stays a negative
        counts[split] = len(ds.samples)
    if "train" not in counts:
        raise ValueError(f"{data}: no train split to stretch")
    cfg = {
        "path": str(out.resolve()),
        **{k: f"images/{k}" for k in counts},
        "names": dict(enumerate(names or ["signature"])),
    }
    return finish(out, cfg, "stretched.json", {"size": size, "pages": counts, "source": str(data)})


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__, "YOLO dataset (folder or data.yaml)")
    p.add_argument(
        "--size", type=int, default=640, help="side of the square pages (default 640, as the reference)"
    )
    a = p.parse_args(argv)
    print(json.dumps(make_stretched(a.data, a.out, a.size), indent=2))


if __name__ == "__main__":
    main()

"""YOLO datasets assembled from the committed fixture pages, for tests that train, ship or copy."""

from __future__ import annotations

import shutil
from pathlib import Path

SPLITS = {
    "train": ["tobacco800_31", "xc8up_image_23_jpg.rf.39b931c2ad1076588ae38f5726a5e127"],
    "val": ["tobacco800_31"],
    "test": ["tobacco800_188", "xc8up_idr55d00_jpg.rf.fb4c4b9a8a564d9b15fa5af0ed6cfd73"],
}


def make_dataset(root: Path, pages_dir: Path, splits: dict[str, list[str]] = SPLITS) -> Path:
    """A YOLO dataset (images/<split>, labels/<split>, data.yaml naming the splits) from fixtures."""
    for split, stems in splits.items():
        for stem in stems:
            image = next(p for p in pages_dir.iterdir() if p.stem == stem and p.suffix != ".txt")
            for kind, src in (("images", image), ("labels", pages_dir / f"{stem}.txt")):
                (root / kind / split).mkdir(parents=True, exist_ok=True)
                shutil.copy(src, root / kind / split / src.name)
    lines = ["path: ."] + [f"{split}: images/{split}" for split in splits] + ["names:", "  0: signature"]
    (root / "data.yaml").write_text("\n".join(lines) + "\n")
    return root

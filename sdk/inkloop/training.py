"""Training recipes: reproducible ultralytics runs, offline, resumable, with the data version recorded.

Why a module and not a notebook: the bundled model and every retrained candidate must be
re-creatable from the repository alone (recipe + data hash + seed). ultralytics is imported only
here, inside functions, so ``import inkloop`` stays light.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a training run's outcome, recorded on the model card."""

    name: str
    model: str = "yolov8n.yaml"  # an architecture yaml (from scratch) or a .pt to fine-tune
    imgsz: int = 416
    epochs: int = 60
    batch: int = 16
    seed: int = 0
    patience: int = 100
    workers: int = 0
    cache: str = "ram"
    extra: dict[str, Any] = field(default_factory=dict)

    def train_args(self) -> dict[str, Any]:
        args = {
            "imgsz": self.imgsz,
            "epochs": self.epochs,
            "batch": self.batch,
            "seed": self.seed,
            "deterministic": True,
            "patience": self.patience,
            "workers": self.workers,
            "cache": self.cache,
            "device": "cpu",
            "plots": True,
            "save_period": 1,
        }
        args.update(self.extra)
        return args


#: Named recipes. ``bundled-v1`` produced the model shipped in ``inkloop/assets``.
RECIPES: dict[str, Recipe] = {
    "bundled-v1": Recipe(
        name="bundled-v1",
        model="yolov8n.yaml",
        imgsz=416,
        epochs=60,
        batch=16,
        # Documents are upright and never mirrored vertically; scans vary in contrast and scale.
        extra={
            "fliplr": 0.0,
            "flipud": 0.0,
            "degrees": 2.0,
            "scale": 0.5,
            "mosaic": 1.0,
            "close_mosaic": 8,
            "hsv_h": 0.0,
            "hsv_s": 0.2,
            "hsv_v": 0.4,
        },
    ),
    # Tiny settings for tests and loop simulations: minutes, not hours.
    "tiny": Recipe(
        name="tiny",
        model="yolov8n.yaml",
        imgsz=160,
        epochs=2,
        batch=8,
        cache="",
        extra={"plots": False, "val": True},
    ),
}


def offline_env(config_dir: str | os.PathLike[str] | None = None) -> None:
    """Make ultralytics behave offline: no hub, no auto-installs, a writable config dir."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_VERBOSE", "true")
    if config_dir is not None:
        os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))
    else:
        os.environ.setdefault("YOLO_CONFIG_DIR", str(Path.home() / ".cache" / "inkloop" / "ultralytics"))
    Path(os.environ["YOLO_CONFIG_DIR"]).mkdir(parents=True, exist_ok=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def dataset_files(root: Path) -> list[Path]:
    """Images and YOLO label files under a dataset root, sorted (label caches excluded)."""
    files = [
        p
        for p in root.rglob("*")
        if p.is_file() and (p.suffix.lower() in IMAGE_SUFFIXES or p.suffix == ".txt")
    ]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def dataset_manifest(root: str | os.PathLike[str]) -> dict[str, Any]:
    """Hash every image and label file; the manifest's own hash is the data version."""
    base = Path(root)
    entries = {p.relative_to(base).as_posix(): _sha256(p) for p in dataset_files(base)}
    digest = hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()
    return {"data_version": f"sha256:{digest}", "files": entries}


def resolve_data_yaml(data: str | os.PathLike[str], workdir: Path) -> Path:
    """Write a data.yaml with an absolute ``path`` so ultralytics never guesses the dataset root.

    Accepts a dataset folder (with ``images/train`` and ``images/val``) or a data yaml.
    """
    import yaml

    src = Path(data)
    if src.is_dir():
        yml = src / "data.yaml"
        cfg: dict[str, Any] = yaml.safe_load(yml.read_text()) if yml.exists() else {}
        root = src
    elif src.is_file():
        cfg = yaml.safe_load(src.read_text())
        root = (src.parent / cfg.get("path", ".")).resolve()
    else:
        raise FileNotFoundError(f"dataset not found: {src}")
    cfg.setdefault("train", "images/train")
    cfg.setdefault("val", "images/val")
    cfg.setdefault("names", {0: "signature"})
    cfg["path"] = str(Path(root).resolve())
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "data.yaml"
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


def train(
    data: str | os.PathLike[str],
    recipe: Recipe | str = "bundled-v1",
    project: str | os.PathLike[str] = "runs/train",
    name: str | None = None,
    resume: bool = False,
    overrides: dict[str, Any] | None = None,
) -> Path:
    """Run (or resume) a recipe; returns the run directory holding ``weights/{best,last}.pt``.

    Resuming continues from ``weights/last.pt`` with the optimizer state and epoch counter, so a
    multi-hour CPU run survives a stopped machine as long as the run directory survives.
    """
    offline_env()
    from ultralytics import YOLO

    r = RECIPES[recipe] if isinstance(recipe, str) else recipe
    if overrides:
        known = {k: v for k, v in overrides.items() if k in Recipe.__dataclass_fields__}
        extra = {**r.extra, **{k: v for k, v in overrides.items() if k not in known}}
        r = replace(r, **known, extra=extra)
    run_dir = Path(project).resolve() / (name or r.name)
    last = run_dir / "weights" / "last.pt"
    if resume and last.exists():
        YOLO(str(last)).train(resume=True)
        return run_dir
    data_yaml = resolve_data_yaml(data, run_dir.parent / f"{run_dir.name}-data")
    (run_dir.parent).mkdir(parents=True, exist_ok=True)
    model = YOLO(r.model)
    model.train(
        data=str(data_yaml),
        project=str(run_dir.parent),
        name=run_dir.name,
        exist_ok=True,
        **r.train_args(),
    )
    (run_dir / "recipe.json").write_text(json.dumps(asdict(r), indent=2))
    return run_dir


def _main(argv: Iterable[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser(description="Train an inkloop recipe with ultralytics, offline.")
    p.add_argument("--data", required=True)
    p.add_argument("--recipe", default="bundled-v1", choices=sorted(RECIPES))
    p.add_argument("--project", default="runs/train")
    p.add_argument("--name")
    p.add_argument("--resume", action="store_true")
    a = p.parse_args(list(argv) if argv is not None else None)
    print(train(a.data, a.recipe, a.project, a.name, a.resume))


if __name__ == "__main__":
    _main()

"""Training recipes: reproducible ultralytics runs, offline, resumable, with the data version recorded.

Why a module and not a notebook: the bundled model and every retrained candidate must be
re-creatable from the repository alone (recipe + data hash + seed). ultralytics is imported only
here, inside functions, so ``import inkloop`` stays light.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import posixpath
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inkloop import storage
from inkloop.datasets import DATA_YAML, DatasetError, dataset_manifest, parse_data_yaml, read_data_yaml
from inkloop.documents.hashing import sha256_file
from inkloop.storage import folders as storage_folders

if TYPE_CHECKING:
    from inkloop.evaluation.loading import Sample

log = logging.getLogger("inkloop.lifecycle.training")  # by name: also when run as __main__


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


#: Documents are upright and never mirrored; scans vary in contrast, brightness and scale.
DOCUMENT_AUGMENTATION: dict[str, Any] = {
    "fliplr": 0.0,
    "flipud": 0.0,
    "degrees": 2.0,
    "scale": 0.5,
    "mosaic": 1.0,
    "hsv_h": 0.0,
    "hsv_s": 0.2,
    "hsv_v": 0.4,
}

#: Named recipes. ``bundled-v1`` produced the model shipped in ``inkloop/assets``. Each names only
#: what differs from :class:`Recipe`'s defaults (yolov8n from scratch, 416 px, 60 epochs, batch 16).
RECIPES: dict[str, Recipe] = {
    "bundled-v1": Recipe(
        name="bundled-v1",
        extra={**DOCUMENT_AUGMENTATION, "close_mosaic": 8},
    ),
    # Stage 2 of the bundled model: 60 epochs from scratch leave yolov8n under-trained (val mAP50
    # still rising at the end). Continue from stage 1's last weights (``--model
    # <bundled-v1 run>/weights/last.pt``) with a fresh cosine schedule at a tenth of stage 1's
    # peak learning rate, mosaic until the last 5 epochs; the same document-safe augmentations.
    "bundled-v2": Recipe(
        name="bundled-v2",
        model="",
        epochs=30,
        extra={
            "optimizer": "SGD",
            "lr0": 0.002,
            "lrf": 0.05,
            "cos_lr": True,
            "warmup_epochs": 1.0,
            **DOCUMENT_AUGMENTATION,
            "close_mosaic": 5,
        },
    ),
    # Retraining a production model on curated data (old + new pages): start from its weights
    # (``model`` is filled in with the parent's ``model.pt``), a learning rate low enough that the
    # model refines what it knows instead of forgetting it, the same document-safe augmentations
    # as ``bundled-v1``, and only ``last.pt``/``best.pt`` kept (not one checkpoint per epoch).
    "finetune-v1": Recipe(
        name="finetune-v1",
        model="",
        epochs=20,
        patience=10,
        extra={
            "optimizer": "AdamW",
            "lr0": 0.0005,
            "lrf": 0.1,
            "warmup_epochs": 1.0,
            **DOCUMENT_AUGMENTATION,
            "close_mosaic": 5,
            "save_period": -1,
        },
    ),
    # The second-generation bundled model: yolov8n started from ultralytics' COCO weights (named
    # as a user with internet would; ``--model PATH`` where downloads fail), fine-tuned on every
    # real page cleared for training. ultralytics' ``auto`` optimizer (AdamW at this length), a
    # cosine schedule, the document-safe augmentations, mosaic off for the last 5 epochs.
    "coco-v2": Recipe(
        name="coco-v2",
        model="yolov8n.pt",
        epochs=35,
        patience=15,
        extra={**DOCUMENT_AUGMENTATION, "cos_lr": True, "close_mosaic": 5, "save_period": -1},
    ),
    # Tiny settings for tests and loop simulations: minutes, not hours.
    "tiny": Recipe(
        name="tiny",
        imgsz=160,
        epochs=2,
        batch=8,
        cache="",
        extra={"plots": False, "val": True},
    ),
}
# Stage 2 with synthetic pages (``python tools/synthetic.py --data signatures-real --out synth
# --seed 0``: one real signature pasted on a blank region of each real train page): stage 2's
# recipe itself under its own name, so the two runs differ only in the data (``--data
# synth/data.yaml``: real train + synthetic, real val).
RECIPES["bundled-v3-synth"] = replace(
    RECIPES["bundled-v2"], name="bundled-v3-synth", extra=dict(RECIPES["bundled-v2"].extra)
)

# The third-generation bundled model (``signature-detector@2`` → ``@3``), stage 2 of ``coco-v2``:
# its weights (``--model``: ``@2``'s ``model.pt``) fine-tuned with the retraining recipe's optimizer
# and rate on larger pages, 576 px for 10 epochs, mosaic off for the last 5. Served at 416, the
# input size and cost of ``@2``: what the larger training pages taught (small signatures, tighter
# boxes) carries over to the smaller input (measured in docs/model-card.md).
RECIPES["coco-v3"] = replace(
    RECIPES["finetune-v1"], name="coco-v3", imgsz=576, epochs=10, extra=dict(RECIPES["finetune-v1"].extra)
)

# The born-digital fine-tune behind ``signature-detector@4`` (``--model``: ``@3``'s ``model.pt``;
# data: docs/training-records/coco-v5, the real scans twice beside ``inkloop synth`` pages): the
# retraining recipe for 8 epochs at 416 px, mosaic off for the last 3. ``@4`` is the half-and-half
# weight average of this run and ``@3`` (``tools/soup.py``; the card's ``recipe.soup``).
RECIPES["coco-v5"] = replace(
    RECIPES["finetune-v1"],
    name="coco-v5",
    epochs=8,
    extra={**RECIPES["finetune-v1"].extra, "close_mosaic": 3},
)

# The second born-digital fine-tune behind ``signature-detector@6`` (``coco-v6a``: ``@3``'s weights
# on docs/training-records/coco-v6/data-v6a.yaml, new ``inkloop synth`` pages): ``coco-v5``'s
# recipe with another seed, so that the two fine-tunes averaged into ``@6`` differ in data order
# and augmentation as well as in their generated pages.
RECIPES["coco-v6"] = replace(RECIPES["coco-v5"], name="coco-v6", seed=1, extra=dict(RECIPES["coco-v5"].extra))

# The fine-tune behind ``signature-detector@7`` (``coco-v7a``: ``@6``'s weights on
# docs/training-records/coco-v7/data-v7a.yaml, the real scans twice beside ``inkloop synth``
# pages): ``coco-v3``'s larger training pages (576 px, the stage that gave ``@3`` its scans) for 6
# epochs, mosaic off for the last 3. Served at 480 as 0.3 of a weight average with ``@6``.
RECIPES["coco-v7"] = replace(
    RECIPES["coco-v3"],
    name="coco-v7",
    epochs=6,
    seed=3,
    extra={**RECIPES["coco-v3"].extra, "close_mosaic": 3},
)


def offline_env(config_dir: str | os.PathLike[str] | None = None) -> None:
    """Make ultralytics behave offline: no hub, no auto-installs, a writable config dir."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_VERBOSE", "true")
    # ultralytics imports mlflow (its MLflow callback) when installed: no telemetry from it, ever.
    from inkloop.models.mlflow_registry import offline_mlflow_env

    offline_mlflow_env()
    if config_dir is not None:
        os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))
    else:
        os.environ.setdefault("YOLO_CONFIG_DIR", str(Path.home() / ".cache" / "inkloop" / "ultralytics"))
    Path(os.environ["YOLO_CONFIG_DIR"]).mkdir(parents=True, exist_ok=True)


SCRATCH_ENV = "INKLOOP_SCRATCH"


def scratch_dir() -> Path:
    """Local room for stored training data and runs: ``$INKLOOP_SCRATCH``, else
    ``<temp>/inkloop-scratch``. ultralytics reads and writes local files only, so a dataset or a
    run folder given as a storage URL is worked on here and stays where the URL says."""
    env = os.environ.get(SCRATCH_ENV, "").strip()
    return Path(env).expanduser() if env else Path(tempfile.gettempdir()) / "inkloop-scratch"


def url_scratch(kind: str, url: str, default_name: str) -> tuple[Path, str]:
    """``(<scratch>/<kind>/<hash of url>-<name>, name)``, ``name`` the URL's last part (else
    ``default_name``): the same local folder for the same URL, another one for another URL whose
    last part is the same (``s3://a/v1`` and ``s3://b/v1``)."""
    name = url.rstrip("/").rsplit("/", 1)[-1] or default_name
    return scratch_dir() / kind / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}-{name}", name


def run_scratch(run_url: str) -> Path:
    """The local working folder of a run kept at a storage URL: the same for the same URL (and
    scratch folder), so the local data.yaml a checkpoint records is where a resume looks for it."""
    folder, name = url_scratch("runs", run_url, "run")
    return folder / name


def _url_folder(url: str) -> str:
    """``s3://b/a/./x/..`` → ``s3://b/a`` (a data.yaml's ``path`` joined to its folder)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{posixpath.normpath(rest)}"


def local_training_data(
    data: str | os.PathLike[str], workdir: Path, options: dict[str, Any] | None = None
) -> str:
    """``data`` as a local dataset folder or data.yaml: itself when local; a stored one copied
    into ``workdir/source`` (a new copy each time, so the run sees what the URL holds now).

    A stored dataset is its folder (``images/…``, ``labels/…``, ``data.yaml``, ``domains.json``),
    or a data.yaml whose ``path`` (default: its own folder) is copied, with every split relative
    to it: a split elsewhere (another URL, an absolute path, ``..``) cannot be copied with it and
    raises :class:`~inkloop.datasets.DatasetError` naming the URL.
    """
    import yaml

    src = os.fspath(data)
    if not storage.is_url(src):
        return src
    local = workdir / "source"
    shutil.rmtree(local, ignore_errors=True)
    if not src.endswith((".yaml", ".yml")):
        storage_folders.download_folder(src, local / "dataset", options)
        return str(local / "dataset")
    cfg = parse_data_yaml(storage.read_text(src, options), src)
    root_spec = str(cfg.get("path") or ".")
    if os.path.isabs(root_spec):
        raise DatasetError(f"{src}: path {root_spec!r} is a local folder of another machine; use a URL")
    root = (
        root_spec
        if storage.is_url(root_spec)
        else _url_folder(storage.join(src.rsplit("/", 1)[0], root_spec))
    )
    for split in ("train", "val", "test"):
        entries = cfg.get(split) or []
        for entry in [entries] if isinstance(entries, str) else entries:
            e = str(entry)
            if storage.is_url(e) or os.path.isabs(e) or posixpath.normpath(e).startswith(".."):
                raise DatasetError(
                    f"{src}: split {split!r} reads {e!r}, outside the dataset {root} that is copied "
                    "for training; put every split under it"
                )
    storage_folders.download_folder(root, local / "dataset", options)
    cfg["path"] = str((local / "dataset").resolve())
    out = local / "data.yaml"
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(out)


def local_dataset(data: str | os.PathLike[str], options: dict[str, Any] | None = None) -> str:
    """``data`` where local tools read it (the evaluator, the export's parity checks, the gate):
    itself when local; a stored dataset (a version folder or a data.yaml) copied into
    ``$INKLOOP_SCRATCH/datasets/<hash of the URL>-<name>/`` first (a fresh copy each time, see
    :func:`local_training_data`)."""
    s = os.fspath(data)
    if not storage.is_url(s):
        return s
    folder, _ = url_scratch("datasets", s, "data")
    return local_training_data(s, folder, options)


def resolve_data_yaml(data: str | os.PathLike[str], workdir: Path) -> Path:
    """Write a data.yaml with an absolute ``path`` so ultralytics never guesses the dataset root.

    Accepts a dataset folder (with ``images/train`` and ``images/val``) or a data yaml.
    """
    import yaml

    src = Path(data)
    if src.is_dir() and not (src / DATA_YAML).is_file():
        cfg: dict[str, Any] = {}
        root = src
    elif src.exists():  # the evaluator's rule (inkloop.datasets), so both read the same root
        cfg, root = read_data_yaml(src / DATA_YAML if src.is_dir() else src)
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


class DataLeakError(ValueError):
    """The frozen test split shares images with the data a model would be trained or tuned on."""


def _load_split(data_yaml: Path, split: str) -> list[Sample]:
    """One split's samples, resolved the way the evaluator resolves them; ``[]`` for a split that
    reads nothing (no entry, a missing or empty folder: :class:`DatasetError`), which can neither
    leak nor be trained on."""
    from inkloop.evaluation.loading import load_dataset

    try:
        return load_dataset(data_yaml, split).samples
    except DatasetError:
        return []


def samples_version(samples: Iterable[Sample], image_hashes: dict[Path, str] | None = None) -> str:
    """:func:`split_version` of a split already loaded (``load_dataset(...).samples``), so a caller
    holding the samples does not load the split again; ``image_hashes``: images already hashed."""
    known = image_hashes or {}
    pairs = sorted(
        f"{known.get(s.image) or sha256_file(s.image)}:{sha256_file(s.label) if s.label is not None else '-'}"
        + (f":{s.domain}" if s.domain is not None else "")
        for s in samples
    )
    return "sha256:" + hashlib.sha256("\n".join(pairs).encode()).hexdigest()


def split_version(data: str | os.PathLike[str], split: str = "test") -> str:
    """Content hash of one split (every image and its label), independent of paths and names.

    Why content only: the gate compares models on the *frozen* test split; recording this hash
    with every decision shows whether two decisions were made on the same test set, even if the
    dataset was copied or renamed in between. An image's recorded domain is part of its content
    (the gate compares domains), so adding digital pages, or re-assigning a page's domain, makes
    a new version; a split without domains hashes exactly as before domains existed.
    """
    from inkloop.evaluation.loading import load_dataset

    return samples_version(load_dataset(Path(data), split).samples)


def check_test_split_frozen(data_yaml: str | os.PathLike[str], test_split: str = "test") -> dict[str, Any]:
    """Refuse a dataset whose test images also appear (byte for byte) in train or val.

    Returns ``{"test": <split_version>, "test_images": n}``, or ``{}`` without a test split.
    Exact-content comparison catches the usual accidents (a page exported twice, a re-split that
    moved files); near-duplicates (re-scans) need curation upstream (FiftyOne).
    """
    path = Path(data_yaml)
    cfg, _ = read_data_yaml(path)
    if not cfg.get(test_split):
        return {}
    splits = {k: _load_split(path, k) for k in (test_split, "train", "val") if cfg.get(k)}
    return _check_frozen(path, test_split, splits)


def _check_frozen(path: Path, test_split: str, splits: dict[str, list[Sample]]) -> dict[str, Any]:
    """:func:`check_test_split_frozen` on splits already loaded (each test image hashed once)."""
    if test_split not in splits:
        return {}
    test = splits[test_split]
    if not test:  # a declared but still empty test split: nothing can leak yet
        return {test_split: None, f"{test_split}_images": 0}
    test_paths = {s.image.resolve() for s in test}
    hashes = {s.image: sha256_file(s.image) for s in test}
    test_hashes = set(hashes.values())
    leaks = [
        f"{split}: {s.image}"
        for split in ("train", "val")
        for s in splits.get(split, [])
        if s.image.resolve() in test_paths or sha256_file(s.image) in test_hashes
    ]
    if leaks:
        shown = "; ".join(leaks[:5]) + (f"; and {len(leaks) - 5} more" if len(leaks) > 5 else "")
        raise DataLeakError(
            f"{path}: {len(leaks)} training/validation image(s) are also in the frozen {test_split!r} "
            f"split ({shown}); remove them from train/val so the gate's test stays unseen"
        )
    return {test_split: samples_version(test, hashes), f"{test_split}_images": len(test)}


def _external_roots(root: Path, splits: dict[str, list[Sample]]) -> list[str]:
    """Dataset roots outside ``root`` that a data.yaml's splits read images from (a list of
    folders from several datasets, as ultralytics accepts), so the data version can cover them."""
    from inkloop.evaluation.domains import dataset_root_of

    base = root.resolve()
    found = {
        str(dataset_root_of(image) or image.parent)
        for samples in splits.values()
        for image in (s.image.resolve() for s in samples)
        if not image.is_relative_to(base)
    }
    return sorted(found)


def prepare_training_data(
    data: str | os.PathLike[str], workdir: Path, test_split: str = "test"
) -> tuple[Path, dict[str, Any]]:
    """Write the data.yaml a training run may see: train and val only, never the test split.

    The source's test split is checked to be disjoint from train/val (:class:`DataLeakError`)
    and described (content hash, size) in the returned info, then dropped from the written yaml,
    so no ultralytics code path (validation, plots, auto-splitting) can read it. A dataset folder
    without data.yaml but with ``images/test`` gets that folder as its test split. ``data`` given
    as a storage URL (``s3://…``: an export version folder or a data.yaml) is first copied into
    ``workdir`` (:func:`local_training_data`); the info's ``source`` keeps the URL.
    """
    import yaml

    local = local_training_data(data, workdir)
    out = resolve_data_yaml(local, workdir)
    cfg: dict[str, Any] = yaml.safe_load(out.read_text())
    root = Path(cfg["path"])
    if test_split not in cfg and Path(local).is_dir() and (root / "images" / test_split).is_dir():
        cfg[test_split] = f"images/{test_split}"
        out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    # Each split loaded once (images opened, labels parsed) for the leak check, the test split's
    # version, the external roots and the val fallback.
    splits = {k: _load_split(out, k) for k in (test_split, "train", "val") if cfg.get(k)}
    info: dict[str, Any] = {
        "source": str(data),
        "root": str(root),
        "frozen": _check_frozen(out, test_split, splits),
    }
    external = _external_roots(root, splits)
    if external:
        info["external_roots"] = external
    if test_split in cfg:
        del cfg[test_split]
        out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    if not splits.get("val") and splits.get("train"):
        # A small curated set can end with an empty val split (whole duplicate groups are kept in
        # one split). ultralytics refuses to train without val; validating on train keeps training
        # going and is recorded, while the frozen test split stays untouched for the gate.
        cfg["val"] = cfg["train"]
        out.write_text(yaml.safe_dump(cfg, sort_keys=False))
        info["val_fallback"] = "val split empty: validating on train"
        log.warning("%s: val split is empty; validating on train (the test split stays frozen)", data)
    return out, info


#: Hub names of ultralytics' COCO-pretrained starting weights, as a user with internet writes them.
PRETRAINED_NAMES = ("yolov8n.pt", "yolov8s.pt", "yolo11n.pt", "yolo11s.pt")


class StartWeightsError(FileNotFoundError):
    """The recipe's starting weights cannot be found locally and cannot be downloaded here."""


def initial_weights(model: str, search: Iterable[str | os.PathLike[str]] = ()) -> tuple[str, dict[str, Any]]:
    """The file a run starts from and its record for the card (name, file, SHA-256).

    ``model`` is an architecture yaml (from scratch: no weights), a path, or a hub name such as
    ``yolov8n.pt``. A hub name is looked up first in ``search`` folders and ``$INKLOOP_PRETRAINED``
    (as ``yolov8n.pt`` or ``yolov8n-coco.pt``), so an offline machine uses a local copy of the same
    weights; with nothing local, ultralytics downloads it, unless ``YOLO_OFFLINE`` is set, which is
    then a clear error here instead of a failed download deep inside ultralytics.
    """
    if model.endswith((".yaml", ".yml")):
        return model, {"name": model, "pretrained": False}
    path = Path(model).expanduser()
    if not path.is_file() and Path(model).name == model:
        folders = [*search, *filter(None, os.environ.get("INKLOOP_PRETRAINED", "").split(os.pathsep))]
        stem = Path(model).stem
        found = [Path(d) / n for d in folders for n in (model, f"{stem}-coco.pt") if (Path(d) / n).is_file()]
        if found:
            path = found[0]
        elif os.environ.get("YOLO_OFFLINE", "").lower() in ("1", "true", "yes"):
            raise StartWeightsError(
                f"starting weights {model!r}: not found in {folders or 'any folder'} and downloads are "
                "off (YOLO_OFFLINE); pass --model PATH or set INKLOOP_PRETRAINED to a folder holding it"
            )
        else:
            return model, {"name": model, "pretrained": True, "file": None, "sha256": None}
    if not path.is_file():
        raise StartWeightsError(f"starting weights {model!r}: no such file")
    name = model if Path(model).name == model else path.name
    record = {"name": name, "pretrained": True, "file": path.name, "sha256": sha256_file(path)}
    return str(path), record


def write_run_record(run_dir: Path, r: Recipe, data_info: dict[str, Any], metadata: dict[str, Any]) -> None:
    """``recipe.json`` (the recipe's fields at top level, plus data version, seed and lineage) and
    ``data_manifest.json`` (every file's hash), written *before* training so an interrupted run
    still says what it was; a resumed run keeps the original record."""
    record_path = run_dir / "recipe.json"
    if record_path.exists():
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    manifest = dataset_manifest(data_info["root"], data_info.get("external_roots", ()))
    (run_dir / "data_manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    versions: dict[str, str] = {}
    for dist in ("ultralytics", "torch", "inkloop"):
        try:  # package metadata, not an import: the parent of a training run stays torch-free
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    record = {
        **asdict(r),
        "data_version": manifest["data_version"],
        "data": {k: v for k, v in data_info.items() if k != "root"},
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "software": versions,
        **metadata,
    }
    storage.write_local_atomic(str(record_path), json.dumps(record, indent=2, default=str).encode())


def recipe_from_record(record: dict[str, Any]) -> Recipe:
    """The :class:`Recipe` inside a ``recipe.json`` (which also carries data and lineage keys)."""
    names = {f.name for f in fields(Recipe)}
    return Recipe(**{k: v for k, v in record.items() if k in names})


def train(
    data: str | os.PathLike[str],
    recipe: Recipe | str = "bundled-v1",
    project: str | os.PathLike[str] = "runs/train",
    name: str | None = None,
    resume: bool = False,
    overrides: dict[str, Any] | None = None,
    *,
    metadata: dict[str, Any] | None = None,
    on_model: Callable[[Any], None] | None = None,
    threads: int | None = None,
) -> Path | str:
    """Run (or resume) a recipe; returns the run directory holding ``weights/{best,last}.pt``.

    ``project`` may be a storage URL (``s3://…/runs``): the run is then trained in a local
    folder (:func:`run_scratch`) and its whole folder (weights, ``results.csv``, ``recipe.json``,
    ``data_manifest.json``, plots) is uploaded to ``<project>/<name>`` when training ends, however
    it ends; the URL is returned. Resuming such a run on another machine downloads the folder
    first. ``data`` may be a storage URL too (:func:`local_training_data`).

    Resuming continues from ``weights/last.pt`` with the optimizer state and epoch counter, so a
    multi-hour CPU run survives a stopped machine as long as the run directory survives.
    ``recipe.json`` (recipe, seed, data version, ``metadata`` such as the parent model) is written
    before the first epoch; a ``test`` split in the data is checked and withheld from training
    (:func:`prepare_training_data`). ``on_model`` sees the ``YOLO`` object before it trains
    (to add callbacks). ``threads``: torch threads for CPU training (:func:`training_threads`).
    """
    offline_env()
    if not os.environ.get("MLFLOW_RUN_ID"):
        _mute_ultralytics_mlflow()
    cpu_threads = training_threads(threads)
    r = RECIPES[recipe] if isinstance(recipe, str) else recipe
    if overrides:
        known = {k: v for k, v in overrides.items() if k in Recipe.__dataclass_fields__}
        extra = {**r.extra, **{k: v for k, v in overrides.items() if k not in known}}
        r = replace(r, **known, extra=extra)
    if storage.is_url(project):
        run_url = storage.join(os.fspath(project), name or r.name)
        run_dir = run_scratch(run_url)
        if resume:
            fetch_run(run_url, run_dir)
        try:
            _train_in(run_dir, data, r, resume, metadata, on_model, cpu_threads)
        finally:
            upload_run(run_dir, run_url)
        return run_url
    run_dir = Path(project).resolve() / (name or r.name)
    _train_in(run_dir, data, r, resume, metadata, on_model, cpu_threads)
    return run_dir


def fetch_run(run_url: str, run_dir: Path, options: dict[str, Any] | None = None) -> bool:
    """Bring a stored run folder down to ``run_dir`` to resume it; returns whether there was one
    (a URL holding no run downloads nothing: a new run). The stored run is the one that counts:
    its files replace this machine's copies (another machine may have trained it further)."""
    if not storage.find(run_url, options):
        return False
    storage_folders.download_folder(run_url, run_dir, options)
    return True


def upload_run(run_dir: Path, run_url: str, options: dict[str, Any] | None = None) -> list[str]:
    """Put a run folder's files at ``run_url`` (``recipe.json`` last, so a stored run with a record
    has all its files); returns the relative paths written. Nothing there yet: nothing written."""
    if not run_dir.is_dir():
        return []
    written = storage_folders.upload_folder(run_dir, run_url, options, last=("recipe.json",))
    log.info("run %s stored at %s (%d files)", run_dir, run_url, len(written))
    return written


def _train_in(
    run_dir: Path,
    data: str | os.PathLike[str],
    r: Recipe,
    resume: bool,
    metadata: dict[str, Any] | None,
    on_model: Callable[[Any], None] | None,
    cpu_threads: int,
) -> None:
    """:func:`train` in a local run folder."""
    from ultralytics import YOLO

    last = run_dir / "weights" / "last.pt"
    if resume and last.exists():
        if data:  # a fresh machine: recreate the data.yaml the checkpoint points to
            prepare_training_data(data, run_dir.parent / f"{run_dir.name}-data")
        resumed = YOLO(str(last))
        _use_cpu_threads(resumed, cpu_threads)
        if on_model is not None:
            on_model(resumed)
        resumed.train(resume=True)
        return
    if not r.model:
        raise ValueError(f"recipe {r.name!r} names no starting model; pass overrides={{'model': ...}}")
    start, init_record = initial_weights(r.model)
    data_yaml, data_info = prepare_training_data(data, run_dir.parent / f"{run_dir.name}-data")
    (run_dir.parent).mkdir(parents=True, exist_ok=True)
    write_run_record(run_dir, r, data_info, {"init_weights": init_record, **(metadata or {})})
    model = YOLO(start)
    _use_cpu_threads(model, cpu_threads)
    if on_model is not None:
        on_model(model)
    model.train(
        data=str(data_yaml),
        project=str(run_dir.parent),
        name=run_dir.name,
        exist_ok=True,
        **r.train_args(),
    )


THREADS_ENV = "INKLOOP_TRAIN_THREADS"


def training_threads(threads: int | None = None) -> int:
    """How many torch threads a CPU training uses: ``threads``, else ``$INKLOOP_TRAIN_THREADS``,
    else every CPU this process may run on.

    Why inkloop sets it: ultralytics gives CPU training one core fewer than the machine has (at
    most 8), to leave room for other work; on a 2-core worker that is one thread, and a training
    run took 1.7x as long per batch as with both (9.5 vs 5.5 s per batch of 16 at 576 px,
    docs/lifecycle.md). A training job is the worker's main work, so it gets the whole machine
    unless told otherwise (``INKLOOP_TRAIN_THREADS=1`` where several jobs share a machine, as the
    test suite's workers do).
    """
    if threads is None:
        text = os.environ.get(THREADS_ENV, "").strip()
        if text:
            try:
                threads = int(text)
            except ValueError:
                raise ValueError(f"{THREADS_ENV}={text!r}: expected a whole number of threads") from None
        else:
            cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
            threads = len(cpus) if cpus else os.cpu_count() or 1
    if threads < 1:
        raise ValueError(f"training threads must be at least 1, got {threads}")
    return threads


def _use_cpu_threads(model: Any, threads: int) -> None:
    """Set torch's thread count once ultralytics has chosen the device (its own choice undone)."""

    def set_threads(trainer: Any) -> None:
        if getattr(trainer.device, "type", "") == "cpu":
            import torch

            torch.set_num_threads(threads)
            log.info("training on CPU with %d threads", threads)

    model.add_callback("on_pretrain_routine_start", set_threads)


def _mute_ultralytics_mlflow() -> None:
    """Switch off ultralytics' MLflow callback unless inkloop opened a run for it (``MLFLOW_RUN_ID``).

    With mlflow installed that callback logs on its own (to ``./mlruns`` or ``mlflow.db`` in the
    working folder when no tracking URI is set); inkloop's rule is that without tracking nothing
    changes, and with tracking the callback joins inkloop's run (:mod:`inkloop.lifecycle.tracking`).

    ultralytics reads its ``mlflow`` setting when a trainer is made and imports the callback's
    module (and with it all of mlflow, ~3 s of CPU per training process) only when it is on, so
    the setting is turned off for this process alone: ``dict.__setitem__`` skips the settings
    object's own ``__setitem__``, which would also write it to the user's settings file. A
    callback module imported already (by older ultralytics, or by the caller) is emptied too.
    """
    try:
        from ultralytics.utils import SETTINGS
    except ImportError:  # pragma: no cover - ultralytics is the training extra
        return
    dict.__setitem__(SETTINGS, "mlflow", False)
    ul_mlflow = sys.modules.get("ultralytics.utils.callbacks.mlflow")
    if ul_mlflow is not None:
        ul_mlflow.callbacks.clear()


def _stop_between_saves(model: Any) -> None:
    """Make SIGTERM end the training process at once, except while checkpoints are written.

    ultralytics writes ``last.pt`` in place; a process killed in the middle leaves a truncated
    checkpoint and an unresumable run. A SIGTERM arriving during the save is held until the save
    returns. Only the ``python -m inkloop.lifecycle.training`` child installs this: a library call must not
    take over its host's signal handling.
    """
    state = {"saving": False, "pending": False}

    def on_sigterm(signum: int, _frame: Any) -> None:
        if state["saving"]:
            state["pending"] = True
            return
        raise SystemExit(128 + signum)

    def wrap_save(trainer: Any) -> None:
        original = trainer.save_model

        def save_model() -> Any:
            state["saving"] = True
            try:
                return original()
            finally:
                state["saving"] = False
                if state["pending"]:
                    raise SystemExit(128 + signal.SIGTERM)

        trainer.save_model = save_model

    signal.signal(signal.SIGTERM, on_sigterm)
    model.add_callback("on_pretrain_routine_start", wrap_save)


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` items → ``{KEY: value}``, each value read as YAML (``0.01`` a float,
    ``false`` a bool, ``[1, 2]`` a list): the one reading of ``--set``, for ``inkloop train`` and
    this module's own command line. Raises :class:`ValueError` naming an item that is not one."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def _main(argv: Iterable[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser(description="Train an inkloop recipe with ultralytics, offline.")
    p.add_argument("--data", required=True)
    p.add_argument("--recipe", default="bundled-v1", choices=sorted(RECIPES))
    p.add_argument("--recipe-file", help="A recipe.json (its recipe fields are used; overrides --recipe).")
    p.add_argument("--model", help="Starting weights (.pt) or architecture (.yaml); overrides the recipe's.")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="Recipe/train overrides.")
    p.add_argument("--project", default="runs/train")
    p.add_argument("--name")
    p.add_argument("--resume", action="store_true")
    p.add_argument(
        "--threads",
        type=int,
        help=f"Torch threads for CPU training (default: ${THREADS_ENV}, else every CPU).",
    )
    a = p.parse_args(list(argv) if argv is not None else None)
    inkloop_log = logging.getLogger("inkloop")  # this child's own lines, beside ultralytics' in the log
    inkloop_log.addHandler(logging.StreamHandler())
    inkloop_log.setLevel(logging.INFO)
    recipe: Recipe | str = a.recipe
    if a.recipe_file:
        recipe = recipe_from_record(json.loads(Path(a.recipe_file).read_text()))
    try:
        overrides = parse_overrides(a.set)
    except ValueError as exc:
        p.error(str(exc))
    if a.model:
        overrides["model"] = a.model
    run_dir = train(
        a.data,
        recipe,
        a.project,
        a.name,
        a.resume,
        overrides or None,
        on_model=_stop_between_saves,
        threads=a.threads,
    )
    print(run_dir)
    sys.stdout.flush()


if __name__ == "__main__":
    _main()

"""From a finished training run to a registered candidate: export, variants, parity, register.

The steps of the retrain loop and where they live:

1. :func:`inkloop.lifecycle.retrain.retrain`: fine-tune in a child process (progress, time limit, resume);
2. :func:`export_candidate` (here): ONNX + card with lineage, variants with parity
   (:mod:`inkloop.lifecycle.variants`), registration as a new version and the ``candidate`` alias;
3. :func:`inkloop.lifecycle.gate.promote`: candidate vs production on the frozen test split; the
   ``production`` alias moves only if the gate passes.

Why variants are registered as their own versions (``v7-int8`` beside ``v7``): a registry version
holds exactly one ONNX file whose checksum its card vouches for, so an INT8 file needs its own
version to be served as ``registry://name@v7-int8`` with the same guarantees. Only ONNX variants
within parity tolerance are registered; OpenVINO and TensorRT outputs stay in the export folder
(they are built per machine kind anyway) and are described on the card.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inkloop import storage
from inkloop.lifecycle.variants import FORMATS, ParityTolerance, build_variants, variant_card
from inkloop.models.references import BUNDLED_NAME, ModelCard, ModelError

if TYPE_CHECKING:
    from inkloop.models.resolve import RegistryArg

logger = logging.getLogger(__name__)

_REGISTER_ATTEMPTS = 5


@dataclass
class ExportResult:
    """What :func:`export_candidate` produced and where it is (``out_dir`` local; ``output`` the
    storage URL the files were uploaded to, when ``out_dir`` was given as one)."""

    out_dir: Path
    card: ModelCard
    version: str | None = None
    registry: str | None = None
    alias: str | None = None
    registered_variants: dict[str, str] = field(default_factory=dict)
    output: str | None = None

    @property
    def model_ref(self) -> str:
        """How to use the model elsewhere: a registry reference, else the exported file."""
        if self.version:
            scheme = "mlflow://" if (self.registry or "").startswith("mlflow") else "registry://"
            return f"{scheme}{self.card.name}@{self.version}"
        return storage.join(self.output or str(self.out_dir), "model.onnx")

    def to_dict(self) -> dict[str, Any]:
        variants = self.card.extra.get("variants", {})
        return {
            "out_dir": self.output or str(self.out_dir),
            "name": self.card.name,
            "version": self.version,
            "registry": self.registry,
            "alias": self.alias,
            "model_ref": self.model_ref,
            "metrics": self.card.metrics,
            "variants": {
                k: {kk: v.get(kk) for kk in ("status", "offered", "reason", "parity", "registry_version")}
                for k, v in variants.items()
            },
            "registered_variants": self.registered_variants,
        }


def latest_export(export_dir: str | os.PathLike[str]) -> str:
    """The newest curated YOLO export (``<export_dir>/<version>/data.yaml``) by the time its
    data.yaml was written; ``export_dir`` itself when it is one version (it has a data.yaml).

    The retrain DAG is scheduled by the training-data Asset and trains on whatever curation
    exported last. ``export_dir`` may be a storage URL; there a version counts once its
    ``manifest.json`` is stored (uploaded last, so the version is complete).
    """
    base = os.fspath(export_dir)
    if storage.exists(storage.join(base, "data.yaml")):
        return base
    stamped = []
    for name in storage.listdir(base):
        if name.startswith("."):  # a local export being written
            continue
        info = storage.info(storage.join(base, name, "data.yaml"))
        if info is None or info.get("type") != "file":
            continue
        if storage.is_url(base) and not storage.exists(storage.join(base, name, "manifest.json")):
            continue
        modified = info.get("mtime") or info.get("LastModified") or info.get("updated")
        stamp = modified.timestamp() if hasattr(modified, "timestamp") else float(modified or 0)
        stamped.append((stamp, name))
    if not stamped:
        raise FileNotFoundError(f"no curated dataset under {base} (run `inkloop curate export` first)")
    return storage.join(base, max(stamped)[1])


def find_weights(source: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]]:
    """The checkpoint to export and its run record (``recipe.json``, or ``{}``).

    ``source`` is a run directory (its ``weights/best.pt``, else ``weights/last.pt``) or a
    ``.pt`` file (its run record is looked up two folders up, ultralytics' layout). A storage URL
    (a run kept in a bucket) has the checkpoint downloaded to the run's local scratch folder
    (:func:`~inkloop.lifecycle.training.run_scratch`, with the run's MLflow record); the record
    gets ``run_url``.
    """
    if storage.is_url(source):
        return _fetch_weights(os.fspath(source))
    src = Path(source)
    if src.is_dir():
        weights = next(
            (p for p in (src / "weights" / "best.pt", src / "weights" / "last.pt") if p.is_file()), None
        )
        if weights is None:
            raise ModelError(f"{src}: no weights/best.pt or weights/last.pt (has the run finished an epoch?)")
        run_dir = src
    elif src.is_file() and src.suffix == ".pt":
        weights, run_dir = src, src.parent.parent
    else:
        raise ModelError(f"{src}: expected a training run folder or a .pt checkpoint")
    record_path = run_dir / "recipe.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    if record:
        record.setdefault("run_dir", str(run_dir.resolve()))
    return weights, record


def _fetch_weights(url: str) -> tuple[Path, dict[str, Any]]:
    """:func:`find_weights` for a stored run folder or ``.pt``."""
    from inkloop.lifecycle.tracking import RUN_FILE
    from inkloop.lifecycle.training import run_scratch

    if url.endswith(".pt"):
        run_url, candidates = url.rsplit("/", 2)[0], [url]
    else:
        run_url = url.rstrip("/")
        candidates = [storage.join(run_url, "weights", n) for n in ("best.pt", "last.pt")]
    pt = next((u for u in candidates if storage.exists(u)), None)
    if pt is None:
        raise ModelError(f"{url}: no weights/best.pt or weights/last.pt (has the run finished an epoch?)")
    local_run = run_scratch(run_url)
    rel = pt[len(run_url) + 1 :] if pt.startswith(run_url + "/") else pt.rsplit("/", 1)[-1]
    target = local_run / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    weights = Path(storage.download(pt, target.parent))
    text = storage.read_text_if_exists(storage.join(run_url, "recipe.json"))
    record = json.loads(text) if text else {}
    tracked = storage.read_text_if_exists(storage.join(run_url, RUN_FILE))
    if tracked is not None:  # the training's MLflow run, which the export logs into
        storage.write_text(str(local_run / RUN_FILE), tracked)
    if record:
        record.setdefault("run_dir", str(local_run))
        record["run_url"] = run_url
    return weights, record


def _track_export(record: dict[str, Any], card: ModelCard, out: Path, data: Any, split: str) -> Any:
    """Into the training's MLflow run (if it was tracked): the evaluator's report on ``split`` (P/R/F1 at
    the operating threshold, mAP50, mAP50-95, by source group), its PR curve and errors file, the
    variants' parity and the card. The card remembers the run, so the gate can log its decision there."""
    from inkloop.lifecycle.tracking import log_evaluation, resume_run

    tracker = resume_run(record.get("run_dir"))
    if not tracker.active:
        return tracker
    card.extra["tracking"] = {k: v for k, v in tracker.to_dict().items() if k != "offline"}
    if data is not None:
        from inkloop.evaluation.evaluator import evaluate

        try:
            report = evaluate(
                str(out / "model.onnx"), data, split=split, out_dir=out / "evaluation", group_by="^[^_]+"
            )
            log_evaluation(tracker, report, prefix=f"eval.{split}")
        except Exception as exc:  # the export itself succeeded; say why the report is missing
            logger.warning("MLflow: evaluation for tracking failed: %s", exc)
    tracker.log_dict(card.extra.get("variants", {}), "model/variants.json")
    tracker.log_dict(card.to_dict(), "model/card-unregistered.json")
    return tracker


def _plan_version(reg: Any, name: str) -> str:
    """The version the next registration will get; the registry's own numbering rule."""
    return reg._next_version(name)


def export_candidate(
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    data: str | os.PathLike[str] | None = None,
    name: str | None = None,
    registry: RegistryArg = None,
    register: bool = True,
    alias: str | None = "candidate",
    imgsz: int | None = None,
    preprocessing: str | None = None,
    conf_threshold: float | None = None,
    iou_threshold: float | None = None,
    formats: tuple[str, ...] | list[str] = FORMATS,
    split: str = "test",
    tolerance: ParityTolerance | None = None,
    calibration_images: int = 64,
    int8_options: dict[str, Any] | None = None,
    parent_weight: float = 0.0,
) -> ExportResult:
    """Export a trained checkpoint, build and check its variants, and register it as a candidate.

    Settings the card needs (name, input size, preprocessing, thresholds) default to the parent
    model's, as recorded in the run's ``recipe.json``, so a retrained model serves exactly like
    the one it replaces. The card also gets the data version, the recipe and seed, the parent
    version, the fp32 model's metrics on the ``split`` of ``data`` and ``extra["variants"]``.
    With ``parent_weight`` (0 < w < 1) the checkpoint is first averaged with the parent it was
    fine-tuned from, ``w`` of the parent (:func:`~inkloop.lifecycle.soup.blend_with_parent`: what
    kept ``@4``'s scans), and the card's ``recipe.soup`` records both ingredients.
    With ``register`` (and a registry: a :class:`~inkloop.models.registry.Registry`, its URL, or None
    for the default one) the model becomes a new version, offered ONNX variants become
    ``<version>-<variant>`` versions, and ``alias`` (default ``candidate``) points at it.

    ``source``, ``out_dir`` and ``data`` may be storage URLs: the checkpoint and the dataset are
    copied to local scratch, the export is written in a local folder and its files (``card.json``
    last) uploaded to ``out_dir`` at the end.
    """
    from inkloop.lifecycle.export import export_onnx
    from inkloop.lifecycle.soup import check_parent_weight
    from inkloop.lifecycle.training import local_dataset, url_scratch

    check_parent_weight(parent_weight)  # before anything is read or written
    weights, record = find_weights(source)
    if data is not None:
        data = local_dataset(data)
    output = os.fspath(out_dir) if storage.is_url(out_dir) else None
    parent = dict(record.get("parent") or {})
    defaults = dict(parent.pop("card", None) or {})
    card_name = name or defaults.get("name") or BUNDLED_NAME
    size = int(imgsz or defaults.get("input_size") or record.get("imgsz") or 640)
    recipe = {k: v for k, v in record.items() if k not in ("parent",)}
    if parent_weight:
        weights, recipe["soup"] = _blend_with_parent(weights, record, parent, parent_weight)
    card_extra: dict[str, Any] = {
        "data_version": record.get("data_version"),
        "parent_version": parent.get("model_version") or parent.get("ref"),
        "recipe": recipe,
        "lineage": {"parent": parent, "weights": str(weights)},
        # the parent's per-domain operating thresholds too, unless one threshold is asked for
        "domain_thresholds": {}
        if conf_threshold is not None
        else dict(defaults.get("domain_thresholds") or {}),
    }
    if output is not None:
        out, _ = url_scratch("exports", output, "export")
        shutil.rmtree(out, ignore_errors=True)
    else:
        out = Path(out_dir).resolve()
    card = export_onnx(
        weights,
        out,
        imgsz=size,
        name=card_name,
        version="unregistered",
        preprocessing=preprocessing or defaults.get("preprocessing", "letterbox"),  # type: ignore[arg-type]
        conf_threshold=conf_threshold if conf_threshold is not None else defaults.get("conf_threshold", 0.25),
        iou_threshold=iou_threshold if iou_threshold is not None else defaults.get("iou_threshold", 0.7),
        card_extra=card_extra,
    )
    variants = build_variants(
        out,
        card,
        data,
        formats=formats,
        split=split,
        tolerance=tolerance,
        calibration_images=calibration_images,
        int8_options=int8_options,
    )
    card.extra["variants"] = variants
    if variants["onnx"].get("metrics"):
        card.metrics = dict(variants["onnx"]["metrics"])
    tracker = _track_export(record, card, out, data, split)
    result = ExportResult(out_dir=out, card=card, output=output)
    if not register:
        card.save(out / "card.json")
        _upload_export(result)
        return result

    from inkloop.models.resolve import open_registry

    reg = open_registry(registry)
    offered_onnx = [
        k for k, v in variants.items() if k != "onnx" and v.get("offered") and v.get("format") == "onnx"
    ]
    for attempt in range(_REGISTER_ATTEMPTS):
        version = _plan_version(reg, card_name)
        for k in offered_onnx:
            variants[k]["registry_version"] = f"{version}-{k}"
        card.version = version
        card.save(out / "card.json")
        try:
            got = reg.register(card_name, out / "model.onnx", card, pt_path=out / "model.pt", version=version)
            break
        except ModelError as exc:  # someone registered that number meanwhile: plan the next one
            if "already exists" not in str(exc) or attempt == _REGISTER_ATTEMPTS - 1:
                raise
    registered = reg.show(card_name, got)
    result.card, result.version, result.registry = registered, got, reg.url
    for k in offered_onnx:
        vcard = variant_card(registered, k, variants[k])
        result.registered_variants[k] = reg.register(
            card_name, out / variants[k]["file"], vcard, version=f"{got}-{k}"
        )
    if alias:
        reg.set_alias(card_name, alias, got)
        result.alias = alias
    tracker.log_dict(registered.to_dict(), "model/card.json")
    tracker.set_tags({"inkloop.registry": reg.url, "inkloop.model_version": registered.model_version})
    logger.info(
        "registered %s@%s in %s (variants: %s)", card_name, got, reg.url, result.registered_variants or "none"
    )
    _upload_export(result)
    return result


def _blend_with_parent(
    weights: Path, record: dict[str, Any], parent: dict[str, Any], parent_weight: float
) -> tuple[Path, dict[str, Any]]:
    """The run's checkpoint averaged with the checkpoint its training started from, written beside
    the run's weights.

    The parent is ``recipe.json``'s ``model`` where that file is still there (the same machine),
    else fetched again from the registry the run records (a worker exporting what another
    trained); either way it must hash to the parent SHA-256 recorded when the training started.
    """
    from inkloop.lifecycle.soup import blend_with_parent

    start = Path(str(record.get("model") or ""))
    if start.suffix != ".pt":  # an architecture .yaml: trained from scratch
        raise ModelError(
            f"{weights}: the run did not start from a checkpoint, so there is no parent to blend with"
        )
    if not start.is_file() and parent.get("registry") and parent.get("name") and parent.get("version"):
        from inkloop.models.resolve import open_registry

        reg = open_registry(str(parent["registry"]))
        start = reg.fetch(str(parent["name"]), str(parent["version"]), with_pt=True).path.with_name(
            "model.pt"
        )
    out = weights.with_name(f"{weights.stem}-blend-{parent_weight:g}.pt")
    soup = blend_with_parent(weights, start, parent_weight, out, parent_sha256=parent.get("sha256"))
    soup["of"][0]["name"] = str(parent.get("model_version") or parent.get("ref") or "parent")
    return out, soup


def _upload_export(result: ExportResult) -> None:
    """The export's files at ``result.output`` (``card.json`` last: the export is complete)."""
    if result.output is not None:
        from inkloop.storage.folders import upload_folder

        upload_folder(result.out_dir, result.output, last=("card.json",))

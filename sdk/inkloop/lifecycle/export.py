"""Export a trained ``.pt`` to ONNX (dynamic batch, simplified) and write its model card.

ultralytics does the export; this module decides the settings inkloop's detector relies on
(dynamic batch so pages can be batched, opset it can run) and records what the card needs.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from inkloop.documents.hashing import sha256_file
from inkloop.models.references import ModelCard, Preprocessing


def export_onnx(
    weights: str | Path,
    out_dir: str | Path,
    imgsz: int,
    name: str,
    version: str,
    preprocessing: Preprocessing = "letterbox",
    conf_threshold: float = 0.25,
    iou_threshold: float = 0.7,
    card_extra: dict[str, Any] | None = None,
    copy_pt: bool = True,
) -> ModelCard:
    """Write ``out_dir/model.onnx`` (+ ``model.pt``) and ``out_dir/card.json``; return the card."""
    from inkloop.lifecycle.training import offline_env

    offline_env()
    from ultralytics import YOLO

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / "model.onnx"
    # ultralytics writes the .onnx beside the weights it reads: export from a scratch copy, so a
    # checkpoint that already has a model.onnx beside it (the bundled model's folder, a registry
    # version) never has that file overwritten or moved away.
    with tempfile.TemporaryDirectory(prefix="inkloop-export-", dir=out) as scratch:
        source = Path(scratch) / Path(weights).name
        shutil.copy2(weights, source)
        model = YOLO(str(source))
        produced = Path(model.export(format="onnx", imgsz=imgsz, dynamic=True, simplify=True, device="cpu"))
        shutil.move(str(produced), target)
    if copy_pt:
        from ultralytics.utils.torch_utils import strip_optimizer

        shutil.copy2(weights, out / "model.pt")
        strip_optimizer(str(out / "model.pt"))  # fp16 weights only: a quarter of the checkpoint
    names = model.names
    class_names = [names[k] for k in sorted(names)] if isinstance(names, dict) else list(names)
    extra = dict(card_extra or {})
    card = ModelCard(
        name=name,
        version=version,
        class_names=class_names,
        input_size=imgsz,
        preprocessing=preprocessing,
        conf_threshold=conf_threshold,
        iou_threshold=iou_threshold,
        sha256=sha256_file(target),
        license="AGPL-3.0-or-later",
        **{k: extra.pop(k) for k in list(extra) if k in ModelCard.__dataclass_fields__},
    )
    card.extra.update(extra)
    if copy_pt:
        card.extra.setdefault("files", {})["model.pt"] = sha256_file(out / "model.pt")
    card.save(out / "card.json")
    return card

"""Weight averages of checkpoints: a fine-tune blended back towards the model it started from.

Fine-tuning a good model on a few reviewed pages of a new kind of document teaches it that kind
and costs it some of what it knew: ``coco-v5`` (``@3`` fine-tuned on scans and born-digital
pages) lost 0.045 scan mAP50, beyond the gate's per-domain tolerance, and the uniform average of
it and ``@3`` kept most of the born-digital gain while the scans came back (``@4``,
docs/training-records/HISTORY.md). Fine-tunes of one start sit in one basin of the loss, where
their average scores as well as either or better (Wortsman et al., 2022, "Model soups"; the
parent-and-child case is their WiSE-FT), at no cost at inference: the average is one network of
the same size. :func:`blend_with_parent` is that step as the retrain lifecycle runs it
(:func:`~inkloop.lifecycle.promotion.export_candidate`'s ``parent_weight``);
:func:`average_checkpoints` is the general average ``tools/soup.py`` measures soups with.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from inkloop.documents.hashing import sha256_file
from inkloop.models.references import ModelError


def _network(path: Path) -> tuple[dict[str, Any], Any]:
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    net = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else None
    if net is None:
        raise ModelError(f"{path}: not an ultralytics checkpoint (no 'ema' or 'model' network in it)")
    return ckpt, net.float()


def average_checkpoints(paths: Sequence[Path], out: Path, weights: Sequence[float] | None = None) -> Path:
    """Write the weighted average of the checkpoints' networks as an ultralytics checkpoint.

    Floating-point tensors (weights, biases, BatchNorm statistics) are averaged; integer ones (the
    BatchNorm batch counter) are taken from the first. Networks must have the same layers and
    shapes: a YOLOv8n and a YOLO11n do not average.
    """
    import torch

    if len(paths) < 2:
        raise ModelError("a soup needs at least two checkpoints")
    weights = list(weights) if weights is not None else [1.0 / len(paths)] * len(paths)
    if len(weights) != len(paths) or abs(sum(weights) - 1.0) > 1e-6 or min(weights) < 0:
        raise ModelError(
            f"weights must be one non-negative number per checkpoint summing to 1, got {weights}"
        )
    loaded = [_network(Path(p)) for p in paths]
    first_ckpt, first = loaded[0]
    states = [net.state_dict() for _, net in loaded]
    shapes = {k: tuple(v.shape) for k, v in states[0].items()}
    for path, state in zip(paths[1:], states[1:], strict=True):
        if {k: tuple(v.shape) for k, v in state.items()} != shapes:
            raise ModelError(
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


def check_parent_weight(parent_weight: float) -> float:
    """The one rule for a ``parent_weight`` option: at least 0 (0: no blending) and below 1 (1 would
    throw the fine-tune away). A ``ValueError`` names the value, so callers report a usage error."""
    if not 0.0 <= parent_weight < 1.0:
        raise ValueError(f"parent_weight must be at least 0 and below 1, got {parent_weight}")
    return parent_weight


def blend_with_parent(
    weights: Path, parent: Path, parent_weight: float, out: Path, parent_sha256: str | None = None
) -> dict[str, Any]:
    """Average a fine-tune with the checkpoint it started from; returns the record for its card.

    ``parent_weight`` is the parent's share (0.5: the uniform average that made ``@4``; 0 would
    be the fine-tune itself and is refused here, the caller skips the step instead).
    ``parent_sha256``, the hash recorded when the training started, guards against blending with
    a parent file that changed since.
    """
    if not 0.0 < parent_weight < 1.0:
        raise ModelError(f"parent_weight must be between 0 and 1 (exclusive), got {parent_weight}")
    if not parent.is_file():
        raise ModelError(f"the parent checkpoint to blend with is missing: {parent}")
    parent_hash = sha256_file(parent)
    if parent_sha256 and parent_hash != parent_sha256:
        raise ModelError(
            f"{parent}: SHA-256 {parent_hash[:12]}… is not the parent the run started from "
            f"({parent_sha256[:12]}…); refusing to blend with another model"
        )
    average_checkpoints([parent, weights], out, [parent_weight, 1.0 - parent_weight])
    return {
        "why": "the fine-tune averaged with its parent, so the old domains keep what the parent knew",
        "of": [
            {"name": "parent", "file": str(parent), "sha256": parent_hash, "weight": parent_weight},
            {
                "name": "fine-tune",
                "file": str(weights),
                "sha256": sha256_file(weights),
                "weight": 1.0 - parent_weight,
            },
        ],
    }

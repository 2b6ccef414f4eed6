"""The per-page signals of uncertainty (``band:``, ``tta:``, ``cue:``, ``place:``) and their
noisy-OR (:func:`page_uncertainty`); each takes boxes already mapped to page pixels."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from inkloop import geometry
from inkloop.detection.scoring import is_kept, kept
from inkloop.geometry import Matching, box_iou, covered_share
from inkloop.routing.config import PageSignals, PlaceHint, RoutingConfig, compile_cues
from inkloop.types import Detection


def noisy_or(contributions: Sequence[float]) -> float:
    """``1 - Π(1 - c)`` over contributions clipped to [0, 1]: one strong signal is enough."""
    keep = 1.0
    for c in contributions:
        keep *= 1.0 - min(max(c, 0.0), 1.0)
    return 1.0 - keep


def _box(xyxy: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.0f}" for v in xyxy) + "]"


# -- signals -------------------------------------------------------------------------------------
def band_signal(
    detections: Sequence[Detection], threshold: float, config: RoutingConfig
) -> tuple[list[float], list[str]]:
    """Contributions of boxes within the ambiguous band: ``band_weight`` at the threshold, 0 at its edges."""
    low, high = config.band(threshold)
    out: list[float] = []
    reasons: list[str] = []
    for d in detections:
        s = d.score
        if not low <= s <= high:
            continue
        width = (threshold - low) if s <= threshold else (high - threshold)
        closeness = 1.0 - abs(s - threshold) / width if width > 0 else 1.0
        c = config.band_weight * closeness
        if c <= 0:
            continue
        out.append(c)
        side = "kept" if is_kept(s, threshold) else "dropped"
        reasons.append(f"band: {d.label} {s:.3f} near threshold {threshold:.2f} ({side}) at {_box(d.xyxy)}")
    return out, reasons


def match_boxes(a: Sequence[Detection], b: Sequence[Detection], min_iou: float = 0.5) -> Matching:
    """One-to-one greedy matching (highest IoU first, same label): ``(pairs, unmatched_a, unmatched_b)``."""
    same_label = np.zeros((len(a), len(b)), dtype=bool)
    for i, da in enumerate(a):
        same_label[i] = [da.label == db.label for db in b]
    iou = box_iou([d.xyxy for d in a], [d.xyxy for d in b], eps=0.0)
    return geometry.match_boxes(iou, min_iou, allowed=same_label)


def _view_name(config: RoutingConfig) -> str:
    if config.tta_transform == "gamma":
        return f"gamma {config.tta_gamma:g}"
    return f"shrink {config.tta_scale:g}"


def tta_signal(
    detections: Sequence[Detection],
    tta_detections: Sequence[Detection],
    threshold: float,
    config: RoutingConfig,
) -> tuple[list[float], list[str]]:
    """Kept boxes (score > threshold) of either view without a kept partner in the other.

    Only kept boxes count, because what matters is whether the *decision* would change; a box that
    merely moves within the band is the band signal's business.
    """
    base = kept(detections, threshold)
    kept_tta = kept(tta_detections, threshold)
    _, missed, extra = match_boxes(base, kept_tta, config.tta_iou)
    view = _view_name(config)
    reasons = [
        f"tta: {base[i].label} {base[i].score:.3f} at {_box(base[i].xyxy)} not found in the {view} view"
        for i in missed
    ] + [
        f"tta: {d.label} {d.score:.3f} at {_box(d.xyxy)} found only in the {view} view"
        for d in (kept_tta[j] for j in extra)
    ]
    return [config.tta_weight] * (len(missed) + len(extra)), reasons


def find_cues(text: str, config: RoutingConfig) -> list[str]:
    """The distinct phrases of ``text`` that ask for a signature (at most three, in page order)."""
    rx = compile_cues(tuple(config.cue_patterns))
    if rx is None or not text:
        return []
    found: list[str] = []
    for m in rx.finditer(text):
        snippet = " ".join(m.group(0).split())
        snippet = snippet if len(snippet) <= 40 else snippet[:37] + "..."
        if snippet.lower() not in (f.lower() for f in found):
            found.append(snippet)
        if len(found) == 3:
            break
    return found


def cue_signal(
    detections: Sequence[Detection], text: str, threshold: float, config: RoutingConfig
) -> tuple[list[float], list[str]]:
    """A page whose text asks for a signature but on which no box is kept: a likely miss."""
    if not config.cues or kept(detections, threshold):
        return [], []
    cues = find_cues(text, config)
    if not cues:
        return [], []
    quoted = ", ".join(json.dumps(c, ensure_ascii=False) for c in cues)
    return [config.cue_weight], [f"cue: text asks for a signature ({quoted}) but nothing was detected"]


def place_signal(
    detections: Sequence[Detection], places: Sequence[PlaceHint], threshold: float, config: RoutingConfig
) -> tuple[list[float], list[str]]:
    """Each signature place with no kept box on it: a likely miss (``place_weight`` each).

    Unlike the text cue, this fires on a page where *some* box was kept but a place is still
    empty: a contract signed by one party that the detector half-missed.
    """
    if not config.places or not places:
        return [], []
    boxes = kept(detections, threshold)
    out: list[float] = []
    reasons: list[str] = []
    for p in places:
        if any(covered_share(d.xyxy, p.xyxy) >= config.place_min_overlap for d in boxes):
            continue
        out.append(config.place_weight)
        reasons.append(f"place: {p.what} at {_box(p.xyxy)} has no detection on it")
    return out, reasons


def page_uncertainty(
    detections: Sequence[Detection],
    threshold: float,
    config: RoutingConfig,
    *,
    tta_detections: Sequence[Detection] | None = None,
    text: str = "",
) -> PageSignals:
    """One page's uncertainty from its boxes, its TTA boxes (if any) and its text layer.

    ``detections`` should be decoded down to ``config.band(threshold)[0]`` (see
    :func:`decoding_floor`) so near misses count; boxes above ``threshold`` are the page's
    decision. ``tta_detections`` is ``None`` when TTA did not run. Boxes of both views must be in
    the same (page) pixels.
    """
    contributions, reasons = band_signal(detections, threshold, config)
    if tta_detections is not None:
        c, r = tta_signal(detections, tta_detections, threshold, config)
        contributions += c
        reasons += r
    c, r = cue_signal(detections, text, threshold, config)
    contributions += c
    reasons += r
    return PageSignals(round(noisy_or(contributions), 4), reasons)

"""Routing pages to humans: an uncertainty score per page, then a budgeted decision per run.

Why two steps (docs/architecture.md, "Routing"):

1. :func:`page_uncertainty` needs only one page — its boxes, a second look at it (test-time
   augmentation) and its text layer — so the pipeline computes it while detecting and writes it,
   with its reasons, into ``results.jsonl``.
2. :func:`route_results` needs *every* page of the run, because the review budget ("at most N
   pages, highest uncertainty first") is a ranking. Results are written document by document as
   they finish, so the decisions cannot go into ``results.jsonl``; :func:`route_run` reads the
   finished results folder and writes ``routing.jsonl`` (one line per page: ``page_key``,
   ``uncertainty``, ``decision``, ``reasons``). It is a pure function of the results file and the
   config — re-running it, or resuming a crashed detection run, gives the same file — and it is
   what the review push reads.

Signals, each a contribution in [0, 1], combined as a noisy-OR (``1 - Π(1 - c)``) so one strong
signal is enough, several weak ones add up, and the score stays in [0, 1]:

- ``band:`` a box scoring near the operating threshold is a coin flip. The detector decodes down
  to the bottom of the band (:func:`decoding_floor`), so *near misses* below the threshold are
  seen too; only boxes above the threshold are kept in the results.
- ``tta:`` the page run through the model a second time under a mild photometric change; a kept
  box in one view with no kept box at IoU ≥ 0.5 in the other means the decision is unstable.
- ``cue:`` the PDF text layer asks for a signature ("Signature:", "Sincerely", "X____") but no box
  was kept: the likeliest place for a silent miss.
- ``place:`` a signature place the verdict stage found on the page (a signature field, a labelled
  line such as ``Signature: ____``) with no kept box on it: a likely miss even when another place
  of the page was detected. Places come from the PDF's structure, which detection does not read,
  so the caller passes them in as :class:`PlaceHint` boxes (the verdict stage:
  :func:`inkloop.verdict.integrate.place_hints`); routing only decides whether a box covers them.

Decision reasons are prefixed ``route:`` and signal reasons ``band:``/``tta:``/``cue:``/
``place:``/``unscored:``, so a program can tell them apart and :func:`route_results` can be re-applied. A
later stage may put pages first (``priority``): the signing verdict sends the pages of documents
judged ``needs_review`` or ``partially_signed``, with the reason ``verdict:<verdict>``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import cv2
import numpy as np

from inkloop import storage
from inkloop.detection.preprocess import PAD_VALUE, Transform, as_rgb, letterbox, prepare, stretch
from inkloop.detection.results import read_results
from inkloop.types import SCHEMA_VERSION, Decision, Detection, PageResult

if TYPE_CHECKING:
    from inkloop.detection.detector import Detector, Prepared
    from inkloop.documents.opening import OpenedDocument
    from inkloop.models.references import Preprocessing

log = logging.getLogger(__name__)

ROUTING = "routing.jsonl"

#: Phrases that ask for a signature, matched case-insensitively on the PDF text layer.
#: English first (the brief), then the closings and labels of the other languages in our inputs.
DEFAULT_CUES: tuple[str, ...] = (
    r"\bsignature\b",  # English and French
    r"\bsigned\b",  # not "unsigned", "assigned", "designed": \b needs a non-letter before
    r"\bsign\s+here\b",
    r"\bsincerely\b",
    r"\byours\s+(?:truly|faithfully)\b",
    r"\b(?:kind|best|warm)\s+regards\b",
    r"(?<![^\W_])x\s*_{3,}",  # "X_____", "x ____" (a lone X, not the end of a word)
    r"\bsign(?:ed|er|ing)?\b[^\n]{0,40}?_{3,}",  # "sign: _____", "signer ______"
    r"_{3,}[^\n]{0,40}?\bsign(?:ed|er|ing)?\b",
    r"\bsign[ée](?:e|s|es)?\b",  # fr: signé, signée
    r"\blu\s+et\s+approuv[ée]\b",
    r"\bcordialement\b",
    r"\bunterschrift\b",  # de
    r"\bmit\s+freundlichen\s+gr[üu](?:ß|ss)en\b",
    r"\bfirma\b",  # es, it
    r"\batentamente\b",
)

TTATransform = Literal["gamma", "shrink"]


@dataclass(frozen=True)
class RoutingConfig:
    """Every knob of routing, with defaults meant as a starting point to calibrate on reviews.

    Ambiguous band — ``band_low``..``band_high`` around the operating threshold ``t`` (the model
    card's ``conf_threshold`` or ``--conf``):
      - ``band_margin = 0.15``: default band is ``t - 0.15``..``t + 0.15`` (0.10..0.40 at t=0.25);
        ``band_low``/``band_high`` (default ``None``) set absolute bounds instead. The low bound
        is never below 0.01, so decoding stays bounded.
      - ``band_weight = 0.8``: contribution of a box exactly at ``t``; it falls linearly to 0 at
        the band's edges. A coin-flip box ranks just below a text cue (evidence from outside the
        model) and above a TTA disagreement.

    Test-time augmentation — one more inference per page:
      - ``tta = True``: run it on *every* page. The pages it exists for are those that look
        confident (nothing found, nothing near the threshold), so it cannot be limited to pages
        that are already uncertain without losing its point; turn it off to halve inference.
      - ``tta_transform = "gamma"``: ``out = 255·(in/255)^tta_gamma`` on the model image. White
        paper and black ink stay put, only mid-greys move — faint pen, stamps, grey scans, fax —
        which is where signature decisions are genuinely fragile, and geometry is untouched, so
        boxes compare exactly. ``"shrink"`` instead draws the page at ``tta_scale`` of the
        model's input and pads the rest: a scale test (rescaling the page itself would be undone
        by the letterbox resize, and enlarging would crop the page). It makes already-small
        signatures smaller, so it measures "small objects get lost" more than per-page doubt.
      - ``tta_gamma = 1.5`` (darkens mid-grey 128 → 90), ``tta_scale = 0.83``.
      - ``tta_iou = 0.5``: boxes of the same label match at IoU ≥ this (greedy, best IoU first).
      - ``tta_weight = 0.6``: contribution of each kept box with no partner in the other view.

    Document cues:
      - ``cues = True``, ``cue_patterns = DEFAULT_CUES`` (regexes, case-insensitive);
      - ``cue_weight = 0.9``: when the text layer matches and no box is kept on the page. Image
        pages have no text layer, so this signal is silent on them (no OCR).

    Signature places (given by the caller, see :class:`PlaceHint`):
      - ``places = True``; ``place_weight = 0.7``: the contribution of each place with no kept box
        on it (noisy-OR over places, so two empty places weigh more than one). Below the text cue,
        because an empty place is also what every unsigned document has; above a TTA
        disagreement. Less than 1, so the contribution can be taken out again on re-routing.
      - ``place_min_overlap = 0.1``: a kept box covers a place when at least this share of the
        box's area lies on the place's zone (a signature often overflows its line).

    Decisions:
      - ``review_min_uncertainty = 0.3``: pages at or above it are review candidates, the others
        are confident (a single band box counts from scores within ±0.1 of the threshold).
      - ``max_review_pages = None`` and ``max_review_fraction = 0.1``: the run's review budget is
        the smaller of the two that are set (the fraction of the run's pages, rounded up, so a
        small run still gets one); both ``None`` means no budget. Candidates beyond it, lowest
        uncertainty first, become ``auto_accept`` with the reason "over budget".
      - ``audit_rate = 0.02``: each page that ends ``auto_accept`` (confident or over budget) is
        turned into ``audit`` when ``sha256(audit_seed + page_key)`` falls below the rate. The
        draw does not depend on the model, the run or its order, so it is reproducible and every
        auto-accepted page has the same known chance: an unbiased estimate of the precision of
        what is accepted without review. Audit pages do not use the review budget.
      - ``audit_seed = "inkloop-audit"``: change it to draw a different sample.
    """

    band_margin: float = 0.15
    band_low: float | None = None
    band_high: float | None = None
    band_weight: float = 0.8
    tta: bool = True
    tta_transform: TTATransform = "gamma"
    tta_gamma: float = 1.5
    tta_scale: float = 0.83
    tta_iou: float = 0.5
    tta_weight: float = 0.6
    cues: bool = True
    cue_patterns: tuple[str, ...] = DEFAULT_CUES
    cue_weight: float = 0.9
    places: bool = True
    place_weight: float = 0.7
    place_min_overlap: float = 0.1
    review_min_uncertainty: float = 0.3
    max_review_pages: int | None = None
    max_review_fraction: float | None = 0.1
    audit_rate: float = 0.02
    audit_seed: str = "inkloop-audit"

    def __post_init__(self) -> None:
        for name in (
            "band_weight",
            "tta_weight",
            "cue_weight",
            "place_min_overlap",
            "review_min_uncertainty",
            "audit_rate",
            "tta_iou",
        ):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"RoutingConfig.{name} must be within [0, 1], got {v}")
        if not 0.0 <= self.place_weight < 1.0:
            raise ValueError(f"RoutingConfig.place_weight must be within [0, 1), got {self.place_weight}")
        if self.band_margin < 0:
            raise ValueError(f"RoutingConfig.band_margin must be ≥ 0, got {self.band_margin}")
        if self.tta_transform not in ("gamma", "shrink"):
            raise ValueError(
                f"RoutingConfig.tta_transform must be 'gamma' or 'shrink', got {self.tta_transform!r}"
            )
        if self.tta_gamma <= 0:
            raise ValueError(f"RoutingConfig.tta_gamma must be > 0, got {self.tta_gamma}")
        if not 0.1 <= self.tta_scale <= 1.0:
            raise ValueError(
                f"RoutingConfig.tta_scale must be within [0.1, 1] (enlarging crops), got {self.tta_scale}"
            )
        if self.max_review_pages is not None and self.max_review_pages < 0:
            raise ValueError(f"RoutingConfig.max_review_pages must be ≥ 0, got {self.max_review_pages}")
        if self.max_review_fraction is not None and not 0.0 <= self.max_review_fraction <= 1.0:
            raise ValueError(
                f"RoutingConfig.max_review_fraction must be within [0, 1], got {self.max_review_fraction}"
            )
        _compile(tuple(self.cue_patterns))  # a bad regex fails here, not mid-run

    def band(self, threshold: float) -> tuple[float, float]:
        """The ambiguous band ``(low, high)`` around ``threshold``."""
        low = threshold - self.band_margin if self.band_low is None else self.band_low
        high = threshold + self.band_margin if self.band_high is None else self.band_high
        return max(0.01, min(low, threshold)), min(1.0, max(high, threshold))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["cue_patterns"] = list(self.cue_patterns)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RoutingConfig:
        """From JSON or an Airflow param; unknown keys are an error, so typos do not pass silently."""
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown RoutingConfig keys: {', '.join(sorted(unknown))}")
        d = dict(d)
        if "cue_patterns" in d:
            d["cue_patterns"] = tuple(d["cue_patterns"])
        return cls(**d)


class PlaceHint(NamedTuple):
    """A place on a page that asks for a signature, as the caller found it: ``xyxy`` is the zone
    where a signature is expected, in the page's pixels (the frame of the page's boxes); ``what``
    names it for people (``field 'Signature1'``, ``label 'Signature:'``)."""

    xyxy: tuple[float, float, float, float]
    what: str


class PageSignals(NamedTuple):
    """One page's uncertainty in [0, 1] and the reasons that produced it."""

    uncertainty: float
    reasons: list[str]


@lru_cache(maxsize=16)
def _compile(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)


def _noisy_or(contributions: Sequence[float]) -> float:
    keep = 1.0
    for c in contributions:
        keep *= 1.0 - min(max(c, 0.0), 1.0)
    return 1.0 - keep


def is_kept(score: float, threshold: float) -> bool:
    """Whether the detector keeps a box: ``score > threshold`` compared in float32, as the decoder does.

    Compared in float64 instead, a score equal to ``float32(threshold)`` would be kept here and
    dropped by a run without routing.
    """
    return bool(np.float32(score) > np.float32(threshold))


def kept(detections: Sequence[Detection], threshold: float) -> list[Detection]:
    """The boxes a run at ``threshold`` reports, out of boxes decoded at a lower floor."""
    return [d for d in detections if is_kept(d.score, threshold)]


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


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two xyxy boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_boxes(
    a: Sequence[Detection], b: Sequence[Detection], min_iou: float = 0.5
) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """One-to-one greedy matching (highest IoU first, same label): ``(pairs, unmatched_a, unmatched_b)``."""
    cand = sorted(
        (
            (iou(da.xyxy, db.xyxy), i, j)
            for i, da in enumerate(a)
            for j, db in enumerate(b)
            if da.label == db.label
        ),
        key=lambda t: (-t[0], t[1], t[2]),
    )
    used_a: set[int] = set()
    used_b: set[int] = set()
    pairs: list[tuple[int, int]] = []
    for v, i, j in cand:
        if v < min_iou:
            break
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        pairs.append((i, j))
    return (
        pairs,
        [i for i in range(len(a)) if i not in used_a],
        [j for j in range(len(b)) if j not in used_b],
    )


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
    rx = _compile(tuple(config.cue_patterns))
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


def _covered_share(box: Sequence[float], zone: Sequence[float]) -> float:
    """The share of ``box``'s area that lies on ``zone``."""
    iw = min(box[2], zone[2]) - max(box[0], zone[0])
    ih = min(box[3], zone[3]) - max(box[1], zone[1])
    area = (box[2] - box[0]) * (box[3] - box[1])
    return iw * ih / area if iw > 0 and ih > 0 and area > 0 else 0.0


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
        if any(_covered_share(d.xyxy, p.xyxy) >= config.place_min_overlap for d in boxes):
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
    return PageSignals(round(_noisy_or(contributions), 4), reasons)


# -- detection-time helpers (used by inkloop.detection.pipeline) -------------------------------------------
@contextlib.contextmanager
def decoding_floor(detector: Detector, config: RoutingConfig | None) -> Iterator[float]:
    """Temporarily decode down to the bottom of the band; yields the operating threshold.

    Greedy NMS visits boxes by descending score, so boxes below the threshold never suppress
    boxes above it: filtering ``score > threshold`` afterwards gives exactly the boxes a run at
    the threshold gives. The detector's ``conf`` is restored on exit, so a detector shared
    between runs is left as it was.
    """
    threshold = detector.conf
    if config is None:
        yield threshold
        return
    detector.conf = min(threshold, config.band(threshold)[0])
    try:
        yield threshold
    finally:
        detector.conf = threshold


def apply_gamma(image: np.ndarray, gamma: float) -> np.ndarray:
    """``255·(x/255)^gamma`` on a uint8 image; 0 and 255 are fixed points."""
    lut = np.round(((np.arange(256, dtype=np.float64) / 255.0) ** gamma) * 255.0).astype(np.uint8)
    return lut[image]


def shrink_prepare(
    image: np.ndarray, size: int, mode: Preprocessing, scale: float
) -> tuple[np.ndarray, Transform]:
    """Like :func:`~inkloop.detection.preprocess.prepare`, but the page fills only ``scale`` of the input,
    centred."""
    inner = max(1, round(size * scale))
    rgb = as_rgb(image)
    resized, t = letterbox(rgb, inner) if mode == "letterbox" else stretch(rgb, inner)
    left = (size - inner) // 2
    top = (size - inner) // 2
    canvas = cv2.copyMakeBorder(
        resized,
        top,
        size - inner - top,
        left,
        size - inner - left,
        cv2.BORDER_CONSTANT,
        value=(PAD_VALUE,) * 3,
    )
    chw = np.ascontiguousarray(canvas.transpose(2, 0, 1), dtype=np.float32)
    chw *= 1.0 / 255.0
    return chw, Transform(t.gain_x, t.gain_y, t.pad_x + left, t.pad_y + top, t.src_width, t.src_height)


def tta_tensor(
    image: np.ndarray, size: int, mode: Preprocessing, config: RoutingConfig
) -> tuple[np.ndarray, Transform]:
    """The second view of a model image, as a model input and the way back to the image's pixels."""
    if config.tta_transform == "gamma":
        return prepare(apply_gamma(image, config.tta_gamma), size, mode)
    return shrink_prepare(image, size, mode, config.tta_scale)


def prepare_tta(detector: Detector, image: np.ndarray, config: RoutingConfig) -> Prepared:
    """:func:`tta_tensor` for ``detector``; runs in the pipeline's producer thread beside inference."""
    from inkloop.detection.detector import Prepared

    tensor, transform = tta_tensor(image, detector.input_size, detector.card.preprocessing, config)
    return Prepared(tensor, transform)


def page_text(doc: OpenedDocument, index: int) -> str:
    """The page's text layer, or '' if it cannot be read: a cue is a hint, never a reason to fail."""
    try:
        return doc.page_text(index)
    except Exception as exc:
        log.debug("%s: page %d: no text layer (%s)", doc.source, index + 1, exc)
        return ""


# -- decisions over a run ------------------------------------------------------------------------
def audit_draw(page_key: str, seed: str = "inkloop-audit") -> float:
    """A uniform number in [0, 1) fixed by the page key (and seed): the page's audit lottery ticket."""
    digest = hashlib.sha256(f"{seed}\x00{page_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def review_budget(n_pages: int, config: RoutingConfig) -> int | None:
    """How many pages of a run may go to review; ``None`` means no limit."""
    limits: list[int] = []
    if config.max_review_pages is not None:
        limits.append(config.max_review_pages)
    if config.max_review_fraction is not None:
        limits.append(math.ceil(config.max_review_fraction * n_pages - 1e-9))
    return min(limits) if limits else None


def with_place_signal(
    result: PageResult, places: Sequence[PlaceHint], threshold: float, config: RoutingConfig
) -> tuple[float | None, list[str]]:
    """The page's uncertainty and signal reasons with :func:`place_signal` folded in (noisy-OR).

    Earlier ``place:`` reasons are taken out first, their contributions divided back out of the
    uncertainty, so routing a routed page again gives the same number.
    """
    old = [x for x in result.reasons if x.startswith("place:")]
    reasons = [x for x in result.reasons if not x.startswith("place:")]
    if result.uncertainty is None:
        return None, reasons
    keep = 1.0 - float(result.uncertainty)
    if old:
        keep = min(1.0, keep / (1.0 - config.place_weight) ** len(old))
    c, r = place_signal(result.detections, places, threshold, config)
    return round(_noisy_or([1.0 - keep, *c]), 4), [*reasons, *r]


def route_results(
    results: Sequence[PageResult],
    config: RoutingConfig,
    priority: Mapping[str, str] | None = None,
    places: Mapping[str, Sequence[PlaceHint]] | None = None,
    threshold: float = 0.0,
) -> list[PageResult]:
    """Decide every page of a run: review (budgeted, most uncertain first), auto_accept or audit.

    Returns copies in the input order with ``decision`` set and a ``route:`` reason appended
    (earlier ``route:`` and ``verdict:`` reasons are dropped, so routing again gives the same
    answer). A page without an uncertainty (detected without routing) counts as 0 and says so.

    ``priority`` (page key → reason, e.g. ``"verdict:needs_review"``) names pages a later stage
    wants a person to see first: they are review candidates whatever their uncertainty, ranked
    ahead of every other candidate (within the budget), and carry the reason.

    ``places`` (page key → :class:`PlaceHint` list, from the verdict stage) adds the ``place:``
    signal: each place no box above ``threshold`` (the run's operating threshold; results hold
    only boxes above it) covers raises the page's uncertainty (:func:`with_place_signal`).
    """
    priority = priority or {}
    places = places or {}
    scored: list[tuple[float, list[str]]] = []
    for r in results:
        if r.page_key in places or any(x.startswith("place:") for x in r.reasons):
            u, signal_reasons = with_place_signal(r, places.get(r.page_key, ()), threshold, config)
            r = dataclasses.replace(r, uncertainty=u, reasons=signal_reasons)
        reasons = [x for x in r.reasons if not x.startswith(("route:", "verdict:"))]
        if r.page_key in priority:
            reasons.append(priority[r.page_key])
        if r.uncertainty is None:
            if not any(x.startswith("unscored:") for x in reasons):
                reasons.append("unscored: detected without routing; uncertainty taken as 0")
            scored.append((0.0, reasons))
        else:
            scored.append((float(r.uncertainty), reasons))

    first = {i for i, r in enumerate(results) if r.page_key in priority}
    candidates = [i for i, (u, _) in enumerate(scored) if u >= config.review_min_uncertainty or i in first]
    candidates.sort(key=lambda i: (i not in first, -scored[i][0], results[i].page_key))
    budget = review_budget(len(results), config)
    n_review = len(candidates) if budget is None else min(budget, len(candidates))
    rank = {i: k + 1 for k, i in enumerate(candidates)}
    review = set(candidates[:n_review])
    allowed = "no budget" if budget is None else f"budget {budget}"

    out: list[PageResult] = []
    for i, r in enumerate(results):
        u, reasons = scored[i]
        decision: Decision
        if i in review:
            decision = "review"
            first_why = f"{priority[r.page_key]} first, " if i in first else ""
            why = (
                f"route: review ({first_why}uncertainty {u:.3f}, rank {rank[i]}/{len(candidates)}, {allowed})"
            )
        else:
            decision = "auto_accept"
            if i in rank:
                first_why = f"{priority[r.page_key]}, " if i in first else ""  # a priority page too
                why = (
                    f"route: over budget ({first_why}uncertainty {u:.3f}, "
                    f"rank {rank[i]}/{len(candidates)}, {allowed})"
                )
            else:
                why = f"route: confident (uncertainty {u:.3f} < {config.review_min_uncertainty:g})"
        whys = [why]
        if decision == "auto_accept":
            draw = audit_draw(r.page_key, config.audit_seed)
            if draw < config.audit_rate:
                decision = "audit"
                whys.append(f"route: audit sample ({config.audit_rate:.1%} of accepted, draw {draw:.4f})")
        out.append(dataclasses.replace(r, uncertainty=u, decision=decision, reasons=[*reasons, *whys]))
    return out


@dataclass(frozen=True, slots=True)
class RoutingRecord:
    """One line of ``routing.jsonl``: what to do with a page, and why."""

    page_key: str
    uncertainty: float
    decision: Decision
    reasons: list[str]
    source: str = ""
    model_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "routing",
            "page_key": self.page_key,
            "source": self.source,
            "model_version": self.model_version,
            "uncertainty": self.uncertainty,
            "decision": self.decision,
            "reasons": list(self.reasons),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RoutingRecord:
        return cls(
            page_key=d["page_key"],
            uncertainty=float(d["uncertainty"]),
            decision=d["decision"],
            reasons=list(d.get("reasons", [])),
            source=d.get("source", ""),
            model_version=d.get("model_version", ""),
        )


def route_run(
    out_dir: str | os.PathLike[str],
    config: RoutingConfig | None = None,
    priority: Mapping[str, str] | None = None,
    places: Mapping[str, Sequence[PlaceHint]] | None = None,
    threshold: float = 0.0,
) -> list[PageResult]:
    """Route every page of a results folder and (re)write ``routing.jsonl`` atomically.

    The whole folder is one run for the budget: a resumed or re-forced run is routed as if it had
    run once. Returns the routed pages (``results.jsonl`` order) for callers such as the review
    push that also need the boxes. ``priority``, ``places``, ``threshold``: see :func:`route_results`.
    """
    config = config or RoutingConfig()
    out = os.fspath(out_dir)
    routed = route_results(read_results(out), config, priority, places, threshold)
    lines = [
        json.dumps(
            RoutingRecord(
                page_key=r.page_key,
                uncertainty=float(r.uncertainty or 0.0),
                decision=r.decision or "auto_accept",
                reasons=r.reasons,
                source=r.source,
                model_version=r.model_version,
            ).to_dict(),
            ensure_ascii=False,
        )
        + "\n"
        for r in routed
    ]
    storage.write_text(storage.join(out, ROUTING), "".join(lines))  # all or nothing, local or URL
    return routed


def read_routing(out_dir: str | os.PathLike[str]) -> dict[str, RoutingRecord]:
    """``routing.jsonl`` of a results folder, by page key (empty if routing never ran)."""
    recs: dict[str, RoutingRecord] = {}
    for d in storage.read_jsonl(storage.join(out_dir, ROUTING)):
        rec = RoutingRecord.from_dict(d)
        recs[rec.page_key] = rec
    return recs

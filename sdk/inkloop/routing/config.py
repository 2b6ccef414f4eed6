"""Routing's knobs: :class:`RoutingConfig`, the text cues, and the place hints a caller passes in."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, NamedTuple

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
        compile_cues(tuple(self.cue_patterns))  # a bad regex fails here, not mid-run

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
def compile_cues(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    """The cue patterns as one case-insensitive regex (None when there are none); cached per tuple."""
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)

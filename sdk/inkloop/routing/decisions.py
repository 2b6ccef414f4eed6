"""Decisions over a whole run: the review budget, the audit draw, ``routing.jsonl``.

The budget is a ranking of every page of the run, so it runs on a finished results folder
(:func:`route_run`), never inside detection.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from inkloop import storage
from inkloop.detection.results import read_results
from inkloop.routing.config import PlaceHint, RoutingConfig
from inkloop.routing.signals import noisy_or, place_signal
from inkloop.types import SCHEMA_VERSION, Decision, PageResult

ROUTING = "routing.jsonl"


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
    return round(noisy_or([1.0 - keep, *c]), 4), [*reasons, *r]


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
    *,
    results: Sequence[PageResult] | None = None,
) -> list[PageResult]:
    """Route every page of a results folder and (re)write ``routing.jsonl`` atomically.

    The whole folder is one run for the budget: a resumed or re-forced run is routed as if it had
    run once. Returns the routed pages (``results.jsonl`` order) for callers such as the review
    push that also need the boxes. ``priority``, ``places``, ``threshold``: see :func:`route_results`.
    ``results``: the folder's results (:func:`~inkloop.detection.results.read_results`) when the
    caller has read them already for its priority or places, so they are not read twice.
    """
    config = config or RoutingConfig()
    out = os.fspath(out_dir)
    if results is None:
        results = read_results(out)
    routed = route_results(results, config, priority, places, threshold)
    records = (
        RoutingRecord(
            page_key=r.page_key,
            uncertainty=float(r.uncertainty or 0.0),
            decision=r.decision or "auto_accept",
            reasons=r.reasons,
            source=r.source,
            model_version=r.model_version,
        ).to_dict()
        for r in routed
    )
    storage.write_jsonl(storage.join(out, ROUTING), records)  # all or nothing, local or URL
    return routed


def read_routing(out_dir: str | os.PathLike[str]) -> dict[str, RoutingRecord]:
    """``routing.jsonl`` of a results folder, by page key (empty if routing never ran)."""
    recs: dict[str, RoutingRecord] = {}
    for d in storage.read_jsonl(storage.join(out_dir, ROUTING)):
        rec = RoutingRecord.from_dict(d)
        recs[rec.page_key] = rec
    return recs

"""Routing pages to humans: an uncertainty score per page, then a budgeted decision per run.

Why two steps (docs/architecture.md, "Routing"):

1. :func:`page_uncertainty` needs only one page — its boxes, a second look at it (test-time
   augmentation) and its text layer — so it is computed while detecting and written, with its
   reasons, into ``results.jsonl``: detection asks a :class:`~inkloop.detection.scoring.PageScorer`
   for it, and :class:`RoutingScorer` is routing's (detection does not import routing).
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
  to the bottom of the band (:func:`inkloop.detection.scoring.decoding_floor`), so *near misses*
  below the threshold are seen too; only boxes above the threshold are kept in the results.
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

The package: :mod:`~inkloop.routing.config` (the knobs), :mod:`~inkloop.routing.signals` (per
page), :mod:`~inkloop.routing.views` (the TTA view), :mod:`~inkloop.routing.scorer` (what a
detection run calls), :mod:`~inkloop.routing.decisions` (over a run: budget, audit,
``routing.jsonl``). Routing sits above detection and below the verdict stage, which adds its
priority and places (:func:`inkloop.verdict.integrate.route_with_verdicts`).
"""

from __future__ import annotations

from inkloop.routing.config import DEFAULT_CUES, PageSignals, PlaceHint, RoutingConfig, TTATransform
from inkloop.routing.decisions import (
    ROUTING,
    RoutingRecord,
    audit_draw,
    read_routing,
    review_budget,
    route_results,
    route_run,
    with_place_signal,
)
from inkloop.routing.scorer import RoutingScorer
from inkloop.routing.signals import (
    band_signal,
    cue_signal,
    find_cues,
    match_boxes,
    noisy_or,
    page_uncertainty,
    place_signal,
    tta_signal,
)
from inkloop.routing.views import apply_gamma, prepare_tta, shrink_prepare, tta_tensor

__all__ = [
    "DEFAULT_CUES",
    "ROUTING",
    "PageSignals",
    "PlaceHint",
    "RoutingConfig",
    "RoutingRecord",
    "RoutingScorer",
    "TTATransform",
    "apply_gamma",
    "audit_draw",
    "band_signal",
    "cue_signal",
    "find_cues",
    "match_boxes",
    "noisy_or",
    "page_uncertainty",
    "place_signal",
    "prepare_tta",
    "read_routing",
    "review_budget",
    "route_results",
    "route_run",
    "shrink_prepare",
    "tta_signal",
    "tta_tensor",
    "with_place_signal",
]

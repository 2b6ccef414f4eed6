"""The verdict in the rest of the loop: after a detection run, in its summary, and in routing.

- :func:`judge_run`: derive ``verdicts.jsonl`` for a results folder, put the counts per verdict
  into ``summary.json`` and, when the run was routed, route again with the verdicts' priority.
- :func:`review_priority` / :func:`route_with_verdicts`: documents judged ``needs_review`` or
  ``partially_signed`` go to review first; their pages carry the reason ``verdict:<verdict>``.
- :func:`place_hints`: every signature place the verdict found, in page pixels, for routing's
  ``place:`` signal (a place no box covers is a likely miss).
- :func:`merge_results`: fold mapped detection parts (results and verdicts) into one folder.

Detection followed by the verdicts is :func:`inkloop.api.detect` (``inkloop.detect``), the one
entry point the SDK, the command line and the Airflow operator share.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from inkloop import storage
from inkloop.detection.results import Summary, merge_parts, read_results, read_summary, write_summary
from inkloop.routing import PlaceHint, RoutingConfig, route_run
from inkloop.verdict._base import PageResult
from inkloop.verdict.derive import derive_verdicts
from inkloop.verdict.judge import VerdictConfig
from inkloop.verdict.record import (
    VERDICTS,
    DocumentVerdict,
    append_verdicts,
    count_verdicts,
    read_verdicts,
)

#: Verdicts whose documents a person should see before any other page.
REVIEW_FIRST: tuple[str, ...] = ("needs_review", "partially_signed")


def review_priority(verdicts: Iterable[DocumentVerdict], results: Sequence[PageResult]) -> dict[str, str]:
    """Page key → ``"verdict:<verdict>"`` for the pages of documents that go to review first.

    The pages are those holding a signature place or ink of the verdict (where a person must
    look); a document with neither (quarantined, unreadable, no place found) sends every page.
    """
    pages_of: dict[str, list[int]] = {}
    for r in results:
        pages_of.setdefault(r.page.doc_id, []).append(r.page.index)
    out: dict[str, str] = {}
    for v in verdicts:
        if v.verdict not in REVIEW_FIRST or v.doc_id not in pages_of:
            continue
        wanted = {p.page for p in v.places} | {i.page for i in v.ink}
        indices = [i for i in pages_of[v.doc_id] if i in wanted] or pages_of[v.doc_id]
        for i in indices:
            out[f"{v.doc_id}:{i}"] = f"verdict:{v.verdict}"
    return out


def place_hints(
    verdicts: Iterable[DocumentVerdict], results: Sequence[PageResult]
) -> dict[str, list[PlaceHint]]:
    """Page key → the signature places of that page (fields, labelled lines), as zones in the page's
    pixels, for routing's ``place:`` signal.

    Why here and not in routing: places come from the PDF's structure, which the verdict stage
    reads and detection does not (detection sits below the verdict stage). A place signed with a
    digital signature is left out (no ink is expected on it); so is a page without PDF points
    (an image: it has no places).
    """
    pages = {(r.page.doc_id, r.page.index): r.page for r in results}
    out: dict[str, list[PlaceHint]] = {}
    for v in verdicts:
        for p in v.places:
            page = pages.get((v.doc_id, p.page)) if p.page is not None else None
            if page is None or p.zone is None or not page.pdf_size or p.status == "signed_digital":
                continue
            sx, sy = page.width / page.pdf_size[0], page.height / page.pdf_size[1]
            x0, y0, x1, y1 = p.zone
            what = f"{p.kind} {(p.field_name or p.text)!r}"
            out.setdefault(page.page_key, []).append(PlaceHint((x0 * sx, y0 * sy, x1 * sx, y1 * sy), what))
    return out


def route_with_verdicts(
    results_dir: str | os.PathLike[str], routing: RoutingConfig | None = None
) -> list[PageResult]:
    """:func:`~inkloop.routing.route_run` with the folder's ``verdicts.jsonl`` (if any)
    putting ``needs_review`` and ``partially_signed`` documents first, and every place they found
    feeding routing's ``place:`` signal (:func:`place_hints`). The results are read once, for both."""
    out = os.fspath(results_dir)
    verdicts = read_verdicts(out)
    results = read_results(out)
    priority = review_priority(verdicts, results) if verdicts else None
    places = place_hints(verdicts, results) if verdicts else None
    return route_run(out, routing or RoutingConfig(), priority, places, results=results)


def judge_run(
    results_dir: str | os.PathLike[str],
    summary: Summary | None = None,
    config: VerdictConfig | None = None,
    routing: RoutingConfig | None = None,
    source_root: str | os.PathLike[str] | None = None,
) -> tuple[Summary, list[DocumentVerdict]]:
    """Derive the verdicts of a detection run's documents in ``results_dir``.

    With the run's ``summary`` (its ``run_id``), only that run's documents are derived, read from
    the run's own part objects (a watched inbox's folder grows every run; re-reading and
    re-hashing every earlier source each time would grow with it), and added to ``verdicts.jsonl``
    without reading it (readers keep each document's latest verdict); without it,
    every document in the folder. Records the run's counts per verdict in the summary (and
    rewrites ``summary.json``), and with ``routing`` re-routes the folder so ``routing.jsonl`` puts
    the documents that need a person first. Returns the summary and the derived verdicts.
    """
    out = os.fspath(results_dir)
    if summary is None:
        summary = read_summary(out) or Summary(out_dir=out)
        verdicts = derive_verdicts(out, config, source_root=source_root)
    else:
        run_id = summary.run_id or None
        verdicts = derive_verdicts(out, config, source_root=source_root, write=run_id is None, run_id=run_id)
        if run_id is not None and verdicts:
            append_verdicts(out, verdicts)
    summary.verdicts = count_verdicts(verdicts)
    write_summary(out, summary)
    if routing is not None:
        route_with_verdicts(out, routing)
    return summary, verdicts


def merge_results(out_dir: str | os.PathLike[str], parts: Iterable[str | os.PathLike[str]]) -> Summary:
    """:func:`~inkloop.detection.results.merge_parts`, plus the parts' verdicts.

    A part's verdict replaces the folder's earlier verdict of the same document (verdicts are
    derived, so the newest wins); the merged summary counts the parts' verdicts (None if no part
    derived any).
    """
    parts = [os.fspath(p) for p in parts]
    total = merge_parts(out_dir, parts)
    out = os.fspath(out_dir)
    new: dict[str, DocumentVerdict] = {}
    with_verdicts = [p for p in parts if storage.log_exists(storage.join(p, VERDICTS))]
    for p in with_verdicts:
        for v in read_verdicts(p):
            new[v.doc_id or v.source] = v
    if new or with_verdicts:
        if new:  # added without reading the folder's verdicts: readers keep the latest per document
            append_verdicts(out, new.values())
        total.verdicts = count_verdicts(new.values())
        write_summary(out, total)
    return total

"""Getting pages into the store: render result pages to images, import results and reviews, and
one curation cycle (import, find issues, freeze the test split, export)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from inkloop import storage
from inkloop.curation.records import (
    PageRecord,
    ProgressFn,
)
from inkloop.curation.store import CurationStore
from inkloop.types import PageResult


def page_image_name(result: PageResult) -> str:
    """The PNG name of a page image; the same as review's, so images rendered once serve both."""
    return f"{result.page.doc_id[:16]}-p{result.page.index + 1}.png"


def render_pages(
    results: Sequence[PageResult],
    out_dir: str | os.PathLike[str],
    dpi: float = 150.0,
    progress: ProgressFn | None = None,
) -> tuple[dict[str, str], dict[str, str]]:
    """Page images for people (PNG, reading resolution) for the given results, once per page.

    ``out_dir`` is a local folder or a storage URL (then the images are stored there, and
    :class:`~inkloop.curation.media.MediaCache` keeps the local copies FiftyOne reads). Existing
    PNGs are reused (``inkloop review push`` renders the same names into
    ``RESULTS/review-images``), found with one listing of the folder. Returns
    ``{page_key: path or URL}`` and ``{source: reason}`` for documents that could not be opened
    any more (moved, deleted).
    """
    from inkloop.detection.outputs import write_png
    from inkloop.documents.limits import DocumentError
    from inkloop.documents.opening import open_document

    out = os.fspath(out_dir)
    storage.require_folder(out)
    present = set(storage.listdir(out))
    paths: dict[str, str] = {}
    failed: dict[str, str] = {}
    todo: dict[str, list[PageResult]] = {}
    for r in results:
        if page_image_name(r) in present:
            paths[r.page_key] = storage.join(out, page_image_name(r))
            if progress:
                progress(1)
        else:
            todo.setdefault(r.source, []).append(r)
    for source, rs in todo.items():
        try:
            with open_document(source, people_dpi=dpi) as doc:
                for r in rs:
                    p = storage.join(out, page_image_name(r))
                    write_png(doc.render_for_people(r.page.index), p)
                    paths[r.page_key] = p
                    if progress:
                        progress(1)
        except (DocumentError, OSError) as exc:
            failed[source] = str(exc)
            if progress:
                progress(len([r for r in rs if r.page_key not in paths]))
    return paths, failed


def page_domains(results: Sequence[PageResult]) -> dict[str, str]:
    """``{page_key: "scan" | "digital"}`` for the results' pages, by the rule of
    :mod:`inkloop.documents.domain` applied to each source document (opened once). Pages whose
    document cannot be opened any more are left out (their samples keep the domain they have)."""
    from inkloop.documents.domain import document_page_domains
    from inkloop.documents.limits import DocumentError
    from inkloop.documents.opening import open_document

    by_source: dict[str, list[PageResult]] = {}
    for r in results:
        by_source.setdefault(r.source, []).append(r)
    out: dict[str, str] = {}
    for source, rs in by_source.items():
        try:
            with open_document(source) as doc:
                doms = document_page_domains(doc.kind, doc.path, doc.document.page_count)
        except (DocumentError, OSError, RuntimeError, ValueError):
            continue  # moved, deleted or unreadable now: render_pages reports it
        for r in rs:
            if 0 <= r.page.index < len(doms):
                out[r.page_key] = doms[r.page.index]
    return out


def import_results(
    store: CurationStore,
    results_dir: str | os.PathLike[str],
    reviews: str | os.PathLike[str] | None = None,
    images_dir: str | os.PathLike[str] | None = None,
    dpi: float = 150.0,
    reviewed_only: bool = False,
    progress: ProgressFn | None = None,
    on_total: ProgressFn | None = None,
) -> dict[str, Any]:
    """Upsert a results folder (and optionally a reviews file from ``inkloop review pull``).

    Page images are rendered into ``images_dir`` (default ``RESULTS/review-images``, shared with
    review). ``results_dir``, ``reviews`` and ``images_dir`` are local paths or storage URLs
    (``s3://…``): images stored in a bucket reach FiftyOne through the store's media cache.
    Reviews of pages not in this results folder update samples already in the dataset.
    ``reviewed_only`` imports only the pages that have a review. Every page gets its
    ``domain`` (``scan`` or ``digital``) from its source document (:func:`page_domains`).
    ``progress`` is told each page rendered (or found rendered), ``on_total`` once how many pages
    there are to render, before the first: a progress bar gets its size from the one read of the
    results.
    """
    from inkloop.detection.results import RESULTS, read_results
    from inkloop.review.labelstudio import read_reviews

    results_path = os.fspath(results_dir)
    with storage.scoped_options(store.storage_options):  # results, reviews, sources, images
        if not storage.log_exists(storage.join(results_path, RESULTS)):
            raise FileNotFoundError(f"{results_path} has no {RESULTS} (run `inkloop detect` first)")
        results = read_results(results_path)
        by_key = {r.page_key: r for r in read_reviews(reviews)} if reviews else {}
        chosen = [r for r in results if r.page_key in by_key] if reviewed_only else results
        if on_total:
            on_total(len(chosen))
        images = os.fspath(images_dir) if images_dir else storage.join(results_path, "review-images")
        paths, failed = render_pages(chosen, images, dpi=dpi, progress=progress)
        domains = page_domains([r for r in chosen if r.page_key in paths])
        records = [
            PageRecord.from_result(r, paths[r.page_key], by_key.get(r.page_key), domains.get(r.page_key))
            for r in chosen
            if r.page_key in paths
        ]
        counts = store.upsert_pages(records)
    in_results = {r.page_key for r in results}
    later = store.apply_reviews(v for k, v in by_key.items() if k not in in_results)
    return {
        "dataset": store.name,
        "results": results_path,
        "pages": len(chosen),
        **counts,
        "reviews": len(by_key),
        "reviews_applied_to_existing": later["updated"],
        "reviews_unknown": later["unknown"],
        "images_dir": images,
        "unrenderable_sources": failed,
        "domains": dict(Counter(domains.values())),
    }


def curate_cycle(
    results_dir: str | os.PathLike[str],
    reviews: str | os.PathLike[str],
    export_dir: str | os.PathLike[str],
    dataset: str = "inkloop",
    find_issues: bool = True,
    storage_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One curation step of the loop (what the review-sync DAG runs): import the run's results and
    the pulled reviews, evaluate the model on reviewed pages, flag duplicates and likely label
    mistakes, and export a versioned YOLO training set (frozen test split kept apart).

    Every location may be a storage URL (``s3://…``) reached with ``storage_options`` (else the
    environment); page images in a bucket are read through the local media cache
    (:class:`~inkloop.curation.media.MediaCache`)."""
    store = CurationStore(dataset, storage_options=storage_options)
    imported = import_results(store, results_dir, reviews=reviews)
    evaluation = store.evaluate() if store.reviewed().count() else {}
    issues = store.find_issues() if find_issues and store.reviewed().count() > 1 else {}
    export = store.export_yolo(export_dir)
    return {
        "dataset": dataset,
        "imported": imported,
        "evaluation": evaluation,
        "issues": issues,
        "export": export,
    }

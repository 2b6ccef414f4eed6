"""Re-derive verdicts from a results folder and the source documents (``inkloop verdict RESULTS``).

Why re-derive rather than store verdicts with detection: the rules (and the places found in
documents) change more often than the detector runs; the stored page results plus the files are
enough to answer again without running the model.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from inkloop import storage
from inkloop.detection.results import read_quarantine, read_results, read_run
from inkloop.documents.hashing import sha256_file
from inkloop.verdict._base import PageResult
from inkloop.verdict.judge import VerdictConfig, verdict_for_document
from inkloop.verdict.record import DocumentVerdict, write_verdicts


@contextlib.contextmanager
def _resolve(source: str, root: Path | None) -> Iterator[Path | None]:
    """The source as a local file: itself, or a private copy of a storage URL (None if gone)."""
    local = storage.local_path(source)
    if local is not None:
        p = Path(local)
        if not p.is_absolute() and root is not None:
            p = root / p
        yield p
        return
    tmp = tempfile.mkdtemp(prefix="inkloop-verdict-")
    try:
        try:
            copy = Path(storage.download(source, tmp))
        except storage.StorageError as exc:
            if exc.kind != "not_found":
                raise
            yield None
            return
        yield copy
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def derive_verdicts(
    results_dir: str | os.PathLike[str],
    config: VerdictConfig | None = None,
    source_root: str | os.PathLike[str] | None = None,
    write: bool = True,
    run_id: str | None = None,
) -> list[DocumentVerdict]:
    """One verdict per document in ``results_dir/results.jsonl`` (plus its quarantined inputs).

    ``run_id``: derive the documents of that run alone, read once from its own part objects
    (``runs/<run_id>/``, pages and quarantine records together): neither the reading nor the
    hashing grows with the folder's history.

    Sources are read from each record's ``source`` (relative paths against ``source_root``, else
    the working directory). A document whose file is gone or changed (its SHA-256 is no longer
    the ``doc_id``) or was quarantined gets ``needs_review`` with the reason; one bad document
    never stops the others. Writes ``verdicts.jsonl`` beside the results unless ``write=False``.
    """
    out = os.fspath(results_dir)
    root = Path(source_root) if source_root is not None else None
    by_doc: dict[str, list[PageResult]] = {}
    # the latest run of each document, as detection wrote it; or one run's own records
    if run_id:
        page_results, quarantined = read_run(out, run_id)
    else:
        page_results, quarantined = read_results(out), read_quarantine(out)
    for pr in page_results:
        by_doc.setdefault(pr.page.doc_id, []).append(pr)
    verdicts: list[DocumentVerdict] = []
    for doc_id, pages in by_doc.items():
        source = pages[0].source
        try:
            with _resolve(source, root) as path:
                if path is None or not path.is_file():
                    v = _review(doc_id, source, "source document not found: places cannot be read", pages)
                elif sha256_file(path) != doc_id:
                    v = _review(
                        doc_id, source, "source document changed since detection (SHA-256 differs)", pages
                    )
                else:
                    v = verdict_for_document(path, pages, config, doc_id=doc_id)
                    v.source = source
        except Exception as exc:  # a bug or a hostile file must not stop the batch
            v = _review(doc_id, source, f"verdict failed: {exc.__class__.__name__}: {str(exc)[:150]}", pages)
        verdicts.append(v)
    for q in quarantined:
        if q.doc_id in by_doc:
            continue
        verdicts.append(
            DocumentVerdict(
                doc_id=q.doc_id or "",
                source=q.source,
                verdict="needs_review",
                reasons=[f"quarantined at detection ({q.error}): {q.reason}"],
                config=(config or VerdictConfig()).to_dict(),
            )
        )
    if write:
        write_verdicts(out, verdicts)
    return verdicts


def _review(doc_id: str, source: str, reason: str, pages: list[PageResult]) -> DocumentVerdict:
    return DocumentVerdict(
        doc_id=doc_id,
        source=source,
        verdict="needs_review",
        reasons=[reason],
        model_version=pages[0].model_version if pages else "",
    )

"""A results folder: ``results.jsonl`` (one PageResult per line), ``quarantine.jsonl``, ``summary.json``,
on a local disk or under a storage URL (``s3://…``) alike, through :mod:`inkloop.storage`.

Why JSON Lines that only grow: a re-run can skip every ``doc_id`` already present, and any tool
(jq, pandas, Spark) reads them. A forced re-run adds newer records; readers keep the latest run's
records for each document (:func:`read_results` does this), and :meth:`ResultStore.compact`
rewrites the files that way. How a run writes them where there is no append (object stores), and
why its cost does not grow with the folder's history: :class:`ResultStore` and :class:`DocIndex`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from inkloop import storage
from inkloop.types import PageResult, QuarantineRecord

RESULTS = "results.jsonl"
QUARANTINE = "quarantine.jsonl"
SUMMARY = "summary.json"
#: ``runs/<run_id>/part-NNNNN.jsonl``: each run's records, immutable (see :class:`ResultStore`).
RUNS = "runs"
#: ``index/<xx>.tsv``: which documents the folder holds (see :class:`DocIndex`).
INDEX = "index"
INDEX_MARK = "FORMAT"

log = logging.getLogger(__name__)


@dataclass
class Summary:
    """What a run did, for people (CLI table) and programs (``--json``, XCom)."""

    documents: int = 0
    pages: int = 0
    pages_with_detections: int = 0
    detections: int = 0
    quarantined: int = 0
    skipped: int = 0
    seconds: float = 0.0
    model_version: str = ""
    out_dir: str = ""
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    #: Documents per signing verdict (``inkloop.verdict``), when verdicts were derived; else None.
    verdicts: dict[str, int] | None = None
    #: The run that wrote this summary's records (each results/quarantine line carries it), so
    #: later steps can work on this run's documents alone.
    run_id: str = ""

    @property
    def pages_per_second(self) -> float:
        return self.pages / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["pages_per_second"] = round(self.pages_per_second, 3)
        d["seconds"] = round(self.seconds, 3)
        return d


def _doc_key(r: dict[str, Any]) -> str:
    return str(r.get("page", {}).get("doc_id") or r.get("doc_id") or r.get("source", ""))


def _latest_run_only(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep, for each document, only the records written by its most recent run (each once: a
    merge interrupted after its append and redone may have written the same record twice)."""
    records = list(records)
    last_run: dict[str, str] = {}
    for r in records:
        last_run[_doc_key(r)] = r.get("run_id", "")
    out, seen = [], set()
    for r in records:
        key = _doc_key(r)
        if r.get("run_id", "") != last_run[key]:
            continue
        ident = (key, r.get("run_id", ""), r.get("page", {}).get("index"), r.get("kind"))
        if ident in seen:
            continue
        seen.add(ident)
        out.append(r)
    return out


def read_results(out_dir: str | os.PathLike[str]) -> list[PageResult]:
    """Every page result in a results folder (latest run per document)."""
    recs = _latest_run_only(storage.read_log(storage.join(out_dir, RESULTS)))
    return [PageResult.from_dict(r) for r in recs if r.get("kind") == "page"]


def _run_records(out_dir: str | os.PathLike[str], run_id: str) -> list[dict[str, Any]] | None:
    """The records one run committed (its part objects, ``runs/<run_id>/``); None for a run that
    left none (a folder written before part objects existed)."""
    folder = storage.join(out_dir, RUNS, run_id)
    names = [n for n in storage.listdir(folder) if n.endswith(".jsonl")]
    if not names:
        return None
    return [r for n in names for r in storage.read_jsonl(storage.join(folder, n))]


def read_run(out_dir: str | os.PathLike[str], run_id: str) -> tuple[list[PageResult], list[QuarantineRecord]]:
    """The page results and the quarantine records one run wrote, from one read of its own part
    objects (they hold both kinds): the cost follows the run, not the folder's history (verdicts
    after a run use this). A run that left no parts is read from the two logs instead."""
    recs = _run_records(out_dir, run_id)
    if recs is None:
        recs = [
            r
            for name in (RESULTS, QUARANTINE)
            for r in storage.read_log(storage.join(out_dir, name))
            if r.get("run_id") == run_id
        ]
    pages = [PageResult.from_dict(r) for r in recs if r.get("kind") == "page"]
    return pages, [QuarantineRecord.from_dict(r) for r in recs if r.get("kind") == "quarantine"]


def read_quarantine(out_dir: str | os.PathLike[str]) -> list[QuarantineRecord]:
    recs = _latest_run_only(storage.read_log(storage.join(out_dir, QUARANTINE)))
    return [QuarantineRecord.from_dict(r) for r in recs]


def read_summary(out_dir: str | os.PathLike[str]) -> Summary | None:
    """``summary.json`` of a results folder (the fields this version knows), None without one;
    one read, no separate existence check."""
    text = storage.read_text_if_exists(storage.join(out_dir, SUMMARY))
    if text is None:
        return None
    d = json.loads(text)
    known = Summary.__dataclass_fields__
    return Summary(**{k: v for k, v in d.items() if k in known})


def write_summary(out_dir: str | os.PathLike[str], summary: Summary) -> str:
    """``summary.json`` of a results folder, replaced whole (one PUT on object stores)."""
    url = storage.join(out_dir, SUMMARY)
    return storage.write_text(url, json.dumps(summary.to_dict(), indent=2, ensure_ascii=False) + "\n")


#: Quarantine kinds that a later run retries instead of skipping.
RETRY_ERRORS = frozenset({"inference_unavailable"})

_HEX2 = re.compile(r"^[0-9a-f]{2}")


class DocIndex:
    """Which documents a results folder holds: ``index/<xx>.tsv``, one line per document and run
    (``doc_id``, ``run_id``, ``page`` or the quarantine error), sharded by the ``doc_id``'s first
    two hex digits.

    Why: deciding whether a run's 20 documents are new must not read the folder's 100,000 records
    (the cost would grow with history). A lookup reads one small shard; a commit rewrites only the
    shards its documents fall in (one PUT each on object stores). A folder written before the index
    existed gets one built from its records, once.
    """

    def __init__(self, out_dir: str) -> None:
        self.dir = storage.join(out_dir, INDEX)
        self._out = out_dir
        self._shards: dict[str, dict[str, tuple[str, str]]] = {}
        self._checked = False
        self._marked = False

    @staticmethod
    def shard_of(doc_id: str) -> str:
        head = doc_id[:2].lower()
        return head if _HEX2.match(head) else "other"

    def _ensure(self) -> None:
        """Build the index from ``results.jsonl``/``quarantine.jsonl`` when a folder has records
        but no index (written by an earlier inkloop): one pass, once."""
        if self._checked:
            return
        self._checked = True
        self._marked = storage.exists(storage.join(self.dir, INDEX_MARK))
        if self._marked:
            return
        entries = [
            (r["page"]["doc_id"], r.get("run_id", ""), "page")
            for r in storage.read_log(storage.join(self._out, RESULTS))
            if r.get("kind") == "page"
        ]
        entries += [
            (r["doc_id"], r.get("run_id", ""), str(r.get("error", "")))
            for r in storage.read_log(storage.join(self._out, QUARANTINE))
            if r.get("doc_id")
        ]
        if entries:
            entries.sort(key=lambda e: e[1])  # run ids start with their time: the latest run wins
            self._write(entries)

    def _shard(self, name: str) -> dict[str, tuple[str, str]]:
        if name not in self._shards:
            shard: dict[str, tuple[str, str]] = {}
            text = storage.read_text_if_exists(storage.join(self.dir, f"{name}.tsv"))
            for line in (text or "").splitlines():  # none: no document of this shard yet
                parts = line.split("\t")
                if len(parts) == 3:
                    shard[parts[0]] = (parts[1], parts[2])
            self._shards[name] = shard
        return self._shards[name]

    def get(self, doc_id: str) -> tuple[str, str] | None:
        """``(run_id, status)`` of the document's latest run, or None if the folder lacks it."""
        self._ensure()
        return self._shard(self.shard_of(doc_id)).get(doc_id)

    def is_done(self, doc_id: str) -> bool:
        """In the results, or quarantined for what it is (not for a passing cause)."""
        entry = self.get(doc_id)
        return entry is not None and entry[1] not in RETRY_ERRORS

    def add(self, entries: Iterable[tuple[str, str, str]]) -> None:
        """Record ``(doc_id, run_id, status)`` entries, rewriting each touched shard whole."""
        self._ensure()
        self._write(entries)

    def _write(self, entries: Iterable[tuple[str, str, str]]) -> None:
        touched: dict[str, list[tuple[str, str, str]]] = {}
        for doc_id, run_id, status in entries:
            touched.setdefault(self.shard_of(doc_id), []).append((doc_id, run_id, status))
        for name, new in sorted(touched.items()):
            shard = self._shard(name)
            for doc_id, run_id, status in new:
                shard[doc_id] = (run_id, status)
            text = "".join(f"{d}\t{r}\t{st}\n" for d, (r, st) in shard.items())
            storage.write_text(storage.join(self.dir, f"{name}.tsv"), text)
        if touched and not self._marked:  # the folder's records are all in the index from now on
            storage.write_text(storage.join(self.dir, INDEX_MARK), "1\n")
            self._marked = True


class ResultStore:
    """The writer of one results folder, aware of what earlier runs already did.

    Object stores have no append and no rename, so a run never edits a file in place: it buffers
    its records and *commits* them every ``commit_every`` documents and at the end, each commit
    in three steps:

    1. an immutable part object, ``runs/<run_id>/part-NNNNN.jsonl`` (one PUT; locally a temporary
       file renamed into place): the run's own records, which verdicts read afterwards;
    2. the records added to ``results.jsonl`` / ``quarantine.jsonl`` (the merged files readers
       use; locally an fsync-ed append, on object stores a new object made by the server);
    3. the documents entered in the index (:class:`DocIndex`): only now are they "seen".

    A run that cannot write (endpoint gone, access denied, bucket missing) fails with a
    :class:`~inkloop.storage.StorageError` naming the URL, and its documents stay unseen, so the
    next run processes them. A commit interrupted between steps 2 and 3 is redone by the next run
    with a newer ``run_id``; readers keep each document's latest run, so it is idempotent by
    ``doc_id``. One writer per folder at a time (mapped Airflow tasks each write their own folder
    and :func:`merge_parts` folds them in).
    """

    def __init__(self, out_dir: str | os.PathLike[str], commit_every: int = 50) -> None:
        self.dir = storage.require_folder(os.fspath(out_dir))
        self.run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self.index = DocIndex(self.dir)
        self.commit_every = max(1, commit_every)
        #: Documents this run wrote (committed or not).
        self.done_docs: set[str] = set()
        self._pending: list[dict[str, Any]] = []
        self._pending_docs = 0
        self._parts = 0

    def is_done(self, doc_id: str) -> bool:
        return doc_id in self.done_docs or self.index.is_done(doc_id)

    def write_document(self, results: list[PageResult]) -> None:
        """All pages of one document in one commit, so a document is either in or out."""
        for r in results:
            d = r.to_dict()
            d["run_id"] = self.run_id
            self._pending.append(d)
        if results:
            self.done_docs.add(results[0].page.doc_id)
        self._document_added()

    def write_quarantine(self, rec: QuarantineRecord) -> None:
        d = rec.to_dict()
        d["run_id"] = self.run_id
        self._pending.append(d)
        self._document_added()

    def add_records(self, records: Iterable[dict[str, Any]]) -> None:
        """Records as another run wrote them (their ``run_id`` kept): what a merge folds in."""
        for r in records:
            self._pending.append(r)
        self._document_added()

    def _document_added(self) -> None:
        self._pending_docs += 1
        if self._pending_docs >= self.commit_every:
            self.commit()

    def commit(self) -> None:
        """Write the records buffered since the last commit (see the class docstring)."""
        if not self._pending:
            return
        records, self._pending, self._pending_docs = self._pending, [], 0
        self._parts += 1
        part = storage.join(self.dir, RUNS, self.run_id, f"part-{self._parts:05d}.jsonl")
        storage.write_jsonl(part, records)
        pages = [r for r in records if r.get("kind") == "page"]
        quarantined = [r for r in records if r.get("kind") == "quarantine"]
        if pages:
            storage.append_log(storage.join(self.dir, RESULTS), storage.jsonl_bytes(pages))
        if quarantined:
            storage.append_log(storage.join(self.dir, QUARANTINE), storage.jsonl_bytes(quarantined))
        entries = {r["page"]["doc_id"]: (r.get("run_id", ""), "page") for r in pages}
        for r in quarantined:
            if r.get("doc_id") and r["doc_id"] not in entries:
                entries[r["doc_id"]] = (r.get("run_id", ""), str(r.get("error", "")))
        self.index.add((d, run, status) for d, (run, status) in entries.items())

    def write_summary(self, summary: Summary) -> str:
        return write_summary(self.dir, summary)

    def compact(self) -> None:
        """Rewrite both files keeping only the latest run's records per document (after a forced
        re-run; the one step whose cost follows the folder's size)."""
        self.commit()
        for name in (RESULTS, QUARANTINE):
            url = storage.join(self.dir, name)
            if storage.log_exists(url):
                storage.write_log(url, _latest_run_only(storage.read_log(url)))

    def close(self) -> None:
        self.commit()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
            return
        # The run failed: keep the documents it finished if the storage takes them; if it does
        # not, they stay unseen (the next run processes them) and the run's own error is raised.
        try:
            self.commit()
        except Exception as err:
            log.warning("%s: the failed run's finished documents were not committed: %s", self.dir, err)


def merge_parts(out_dir: str | os.PathLike[str], parts: Iterable[str | os.PathLike[str]]) -> Summary:
    """Fold per-worker result folders into ``out_dir``, one copy per document (first part wins).

    Mapped detection tasks each write their own folder (no shared file between workers); this
    step, run once after them, commits what is new to the main folder (part object, merged files,
    index: see :class:`ResultStore`) and sums the summaries. Documents already in ``out_dir`` are
    looked up in its index, so the cost follows the parts, not the folder's history.
    """
    out = os.fspath(out_dir)
    total = Summary(out_dir=out)
    with ResultStore(out) as store:
        seen_q: set[str] = set()
        for part in parts:
            p = os.fspath(part)
            new_docs: set[str] = set()
            records: list[dict[str, Any]] = []
            for r in _latest_run_only(storage.read_log(storage.join(p, RESULTS))):
                doc = r["page"]["doc_id"]
                entry = store.index.get(doc)
                if doc not in new_docs and (
                    doc in store.done_docs or (entry is not None and entry[1] == "page")
                ):
                    continue  # already in the folder's results (a quarantined one may now have pages)
                new_docs.add(doc)
                records.append(r)
                total.pages += 1
                total.pages_with_detections += bool(r["detections"])
                total.detections += len(r["detections"])
                total.model_version = r["model_version"]
            total.documents += len(new_docs)
            store.done_docs |= new_docs
            for r in _latest_run_only(storage.read_log(storage.join(p, QUARANTINE))):
                key = r.get("doc_id") or r["source"]
                if key in seen_q or (r.get("doc_id") and store.index.get(r["doc_id"]) is not None):
                    continue
                seen_q.add(key)
                records.append(r)
                total.quarantined += 1
                total.quarantine_reasons[r["error"]] = total.quarantine_reasons.get(r["error"], 0) + 1
            if records:
                store.add_records(records)
            s = read_summary(p)
            if s is not None:
                total.seconds += float(s.seconds)
                total.skipped += int(s.skipped)
        store.commit()
        store.write_summary(total)
    return total

"""Results on disk: ``results.jsonl`` (one PageResult per line), ``quarantine.jsonl``, ``summary.json``.

Why append-only JSON Lines: a crash loses at most the document being written, a re-run can skip
every ``doc_id`` already present, and any tool (jq, pandas, Spark) reads it. A forced re-run
appends newer records; readers keep the latest run's records for each document
(:func:`read_results` does this), and :meth:`ResultStore.compact` rewrites the file that way.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from inkloop.types import PageResult, QuarantineRecord

RESULTS = "results.jsonl"
QUARANTINE = "quarantine.jsonl"
SUMMARY = "summary.json"


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


def _iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with path.open(encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash; the document is simply redone


def _latest_run_only(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep, for each document, only the records written by its most recent run."""
    records = list(records)
    last_run: dict[str, str] = {}
    for r in records:
        key = r.get("page", {}).get("doc_id") or r.get("doc_id") or r.get("source", "")
        last_run[key] = r.get("run_id", "")
    out = []
    for r in records:
        key = r.get("page", {}).get("doc_id") or r.get("doc_id") or r.get("source", "")
        if r.get("run_id", "") == last_run[key]:
            out.append(r)
    return out


def read_results(out_dir: str | os.PathLike[str]) -> list[PageResult]:
    """Every page result in a results folder (latest run per document)."""
    recs = _latest_run_only(_iter_jsonl(Path(out_dir) / RESULTS))
    return [PageResult.from_dict(r) for r in recs if r.get("kind") == "page"]


def run_doc_ids(out_dir: str | os.PathLike[str], run_id: str) -> set[str]:
    """The documents (``doc_id``) one run wrote to the folder: its pages and its quarantine."""
    out = Path(out_dir)
    ids: set[str] = set()
    for r in _iter_jsonl(out / RESULTS):
        if r.get("run_id") == run_id and r.get("kind") == "page":
            ids.add(r["page"]["doc_id"])
    for r in _iter_jsonl(out / QUARANTINE):
        if r.get("run_id") == run_id and r.get("doc_id"):
            ids.add(r["doc_id"])
    return ids


def read_quarantine(out_dir: str | os.PathLike[str]) -> list[QuarantineRecord]:
    recs = _latest_run_only(_iter_jsonl(Path(out_dir) / QUARANTINE))
    return [QuarantineRecord.from_dict(r) for r in recs]


def _drop_cut_line(path: Path) -> None:
    """Cut a last line that a killed writer left unfinished.

    Why: a process killed in the middle of a write (a lost worker) can leave a partial line with no
    newline; the next run's first record would be appended to it, and the joined line, unreadable,
    would lose a finished document. The unfinished document is simply redone.
    """
    try:
        with path.open("rb+") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return
            pos = size
            while pos > 0:
                step = min(65536, pos)
                f.seek(pos - step)
                chunk = f.read(step)
                nl = chunk.rfind(b"\n")
                if nl >= 0:
                    f.truncate(pos - step + nl + 1)
                    return
                pos -= step
            f.truncate(0)
    except FileNotFoundError:
        return


#: Quarantine kinds that a later run retries instead of skipping.
RETRY_ERRORS = frozenset({"inference_unavailable"})


class ResultStore:
    """Append-only writer for one output folder, aware of what earlier runs already did."""

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        for name in (RESULTS, QUARANTINE):
            _drop_cut_line(self.dir / name)
        self.done_docs: set[str] = set()
        for r in _iter_jsonl(self.dir / RESULTS):
            if r.get("kind") == "page":
                self.done_docs.add(r["page"]["doc_id"])
        # a document quarantined for a passing cause (an inference server that did not answer)
        # is tried again by the next run; one quarantined for what it is stays out
        self.quarantined_docs: set[str] = {
            r["doc_id"]
            for r in _iter_jsonl(self.dir / QUARANTINE)
            if r.get("doc_id") and r.get("error") not in RETRY_ERRORS
        }
        self._results = (self.dir / RESULTS).open("a", encoding="utf-8")
        self._quarantine = (self.dir / QUARANTINE).open("a", encoding="utf-8")

    def is_done(self, doc_id: str) -> bool:
        return doc_id in self.done_docs or doc_id in self.quarantined_docs

    def write_document(self, results: list[PageResult]) -> None:
        """All pages of one document in one write, so a document is either in or out."""
        lines = []
        for r in results:
            d = r.to_dict()
            d["run_id"] = self.run_id
            lines.append(json.dumps(d, ensure_ascii=False))
        self._results.write("\n".join(lines) + "\n")
        self._results.flush()
        if results:
            self.done_docs.add(results[0].page.doc_id)

    def write_quarantine(self, rec: QuarantineRecord) -> None:
        d = rec.to_dict()
        d["run_id"] = self.run_id
        self._quarantine.write(json.dumps(d, ensure_ascii=False) + "\n")
        self._quarantine.flush()

    def write_summary(self, summary: Summary) -> Path:
        path = self.dir / SUMMARY
        path.write_text(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False) + "\n")
        return path

    def compact(self) -> None:
        """Rewrite both files keeping only the latest run's records per document."""
        for name in (RESULTS, QUARANTINE):
            path = self.dir / name
            kept = _latest_run_only(_iter_jsonl(path))
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept), encoding="utf-8")
            os.replace(tmp, path)

    def close(self) -> None:
        self._results.close()
        self._quarantine.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def merge_parts(out_dir: str | os.PathLike[str], parts: Iterable[str | os.PathLike[str]]) -> Summary:
    """Fold per-worker result folders into ``out_dir``, one copy per document (first part wins).

    Mapped detection tasks each write their own folder (no shared file between workers); this
    step, run once after them, appends what is new to the main files and sums the summaries.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seen_docs = {r["page"]["doc_id"] for r in _iter_jsonl(out / RESULTS) if r.get("kind") == "page"}
    seen_q = {r.get("doc_id") or r["source"] for r in _iter_jsonl(out / QUARANTINE)}
    total = Summary(out_dir=str(out))
    with (
        (out / RESULTS).open("a", encoding="utf-8") as res,
        (out / QUARANTINE).open("a", encoding="utf-8") as qua,
    ):
        for part in parts:
            p = Path(part)
            new_docs: set[str] = set()
            for r in _latest_run_only(_iter_jsonl(p / RESULTS)):
                doc = r["page"]["doc_id"]
                if doc in seen_docs and doc not in new_docs:
                    continue
                new_docs.add(doc)
                res.write(json.dumps(r, ensure_ascii=False) + "\n")
                total.pages += 1
                total.pages_with_detections += bool(r["detections"])
                total.detections += len(r["detections"])
                total.model_version = r["model_version"]
            total.documents += len(new_docs)
            seen_docs |= new_docs
            for r in _latest_run_only(_iter_jsonl(p / QUARANTINE)):
                key = r.get("doc_id") or r["source"]
                if key in seen_q:
                    continue
                seen_q.add(key)
                qua.write(json.dumps(r, ensure_ascii=False) + "\n")
                total.quarantined += 1
                total.quarantine_reasons[r["error"]] = total.quarantine_reasons.get(r["error"], 0) + 1
            if (p / SUMMARY).exists():
                s = json.loads((p / SUMMARY).read_text())
                total.seconds += float(s.get("seconds", 0.0))
                total.skipped += int(s.get("skipped", 0))
    (out / SUMMARY).write_text(json.dumps(total.to_dict(), indent=2, ensure_ascii=False) + "\n")
    return total

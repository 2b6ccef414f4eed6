"""A watched inbox: each scheduled run is handed only the documents no earlier run has finished.

A document is known by its ``doc_id`` (SHA-256 of its bytes), so a file dropped again, renamed or
copied, is not processed twice. To keep a large inbox cheap to list every few minutes, the hashes
are cached in ``inbox-ledger.json`` in the results folder, keyed by the file's name, size and
modification time: only new or changed files are read.

"Finished" means in the results folder's index (:class:`~inkloop.detection.results.DocIndex`,
written after ``results.jsonl`` or ``quarantine.jsonl``): a run that failed before its results were
committed is retried by the next one. The inbox, the ledger and the results folder may each be a
local folder or a storage URL.
"""

from __future__ import annotations

import json
import os
from typing import Any

from inkloop import storage
from inkloop.detection.results import DocIndex
from inkloop.documents.hashing import source_doc_id
from inkloop.documents.inputs import expand_inputs

LEDGER = "inbox-ledger.json"
#: Airflow's ``[core] max_map_length`` default: a mapped task with more map indexes fails the run.
MAX_MAP_LENGTH = 1024


def _fingerprint(source: str) -> str | None:
    """Name, size and modification time, or None when the storage gives no time (then: rehash)."""
    try:
        local = storage.local_path(source)
        if local is None:
            info = storage.info(source) or {}
            mtime = (
                info.get("mtime") or info.get("LastModified") or info.get("updated") or info.get("created")
            )
            return None if mtime is None else f"{info.get('size')}:{mtime}"
        st = os.stat(local)
        return f"{st.st_size}:{st.st_mtime_ns}"
    except Exception:
        return None


def unseen_documents(inbox: str | list[str], results_dir: str | os.PathLike[str]) -> list[str]:
    """The inbox's files whose ``doc_id`` is not yet in ``results_dir`` (one file per ``doc_id``).

    Updates ``inbox-ledger.json`` (the hash cache). Files that cannot be read are kept: detection
    quarantines them with the reason.
    """
    specs = [inbox] if isinstance(inbox, str) else list(inbox)
    out = storage.require_folder(os.fspath(results_dir))
    ledger_path = storage.join(out, LEDGER)
    ledger: dict[str, Any] = {}
    try:
        ledger = json.loads(storage.read_text_if_exists(ledger_path) or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        ledger = {}  # a damaged cache is rebuilt: it only saves hashing
    index = DocIndex(out)
    fresh: dict[str, Any] = {}
    todo: list[str] = []
    listed: set[str] = set()
    for src in expand_inputs(specs):
        fp = _fingerprint(src)
        entry = ledger.get(src)
        if fp is not None and entry and entry.get("fingerprint") == fp:
            doc_id = entry.get("doc_id")
        else:
            doc_id = source_doc_id(src)
        if doc_id is not None:
            fresh[src] = {"fingerprint": fp, "doc_id": doc_id}
            if doc_id in listed or index.is_done(doc_id):
                continue
            listed.add(doc_id)
        todo.append(src)
    storage.write_text(ledger_path, json.dumps(fresh, indent=0, ensure_ascii=False))
    return todo


def plan_inbox(
    inbox: str | list[str],
    results_dir: str | os.PathLike[str],
    docs_per_batch: int = 20,
    max_batches: int | None = None,
) -> list[list[str]]:
    """Batches (for dynamic task mapping) of the inbox's unseen documents; ``[]`` when none.

    Never more than ``max_batches`` nor Airflow's ``max_map_length`` (1024) batches, whatever the
    inbox size: batches grow instead, so a huge inbox cannot fail the run at mapping time.
    """
    from inkloop.documents.inputs import plan_batches

    cap = min(max_batches or MAX_MAP_LENGTH, MAX_MAP_LENGTH)
    return plan_batches(unseen_documents(inbox, results_dir), docs_per_batch, cap)

"""Load benchmark of ``inkloop_detect`` on the local distributed Airflow (not a timed test).

Generates an inbox of N pages from the committed fixture documents (multi-page PDFs, a multi-page
TIFF, PNG and JPEG pages, and a share of broken files), runs ``inkloop_detect`` over it on the
deployment of ``deploy/local_airflow.py``, and checks what users rely on:

- 0 lost and 0 duplicated: every readable document is in ``results.jsonl`` with all its pages,
  every broken one in ``quarantine.jsonl``, each ``doc_id`` exactly once;
- throughput: pages/hour for the deployment and per worker (from the Celery worker of each
  mapped batch);
- memory: peak RSS of each worker's process tree per batch, sampled with psutil every second,
  so growth across batches (a leak) shows;
- the batch planner keeps the map indexes under Airflow's ``max_map_length``;
- a second run over the same inbox processes nothing twice (it ends after listing).

Every file is unique (a copy of a fixture with a unique trailer after its end marker, which
readers ignore), so deduplication by ``doc_id`` does not shrink the load.

    .venv/bin/python deploy/load_benchmark.py --pages 10000 --out .cache/deploy-bench
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import threading
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import local_airflow as la

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
AIRFLOW_MAX_MAP_LENGTH = 1024  # [core] max_map_length, Airflow's default


def _templates() -> list[tuple[str, bytes, int]]:
    """(suffix, bytes, pages) of each fixture document and page image."""
    import pymupdf

    files = sorted((FIXTURES / "documents").iterdir()) + sorted(
        p for p in (FIXTURES / "pages").iterdir() if p.suffix.lower() in (".png", ".jpg")
    )
    out = []
    for f in files:
        with pymupdf.open(f) as doc:
            out.append((f.suffix.lower(), f.read_bytes(), doc.page_count))
    return out


def _unique(data: bytes, suffix: str, tag: str) -> bytes:
    """The same document with a unique trailer after its end marker (PDF ``%%EOF``, PNG ``IEND``,
    JPEG ``EOI``, TIFF: unreferenced bytes at the end), so every copy has its own ``doc_id``."""
    if suffix == ".pdf":
        return data + f"\n% inkloop-load {tag}\n".encode()
    return data + f"inkloop-load {tag}".encode()


def make_inbox(dest: Path, pages: int, broken_every: int = 40, prefix: str = "") -> dict[str, dict[str, Any]]:
    """Write documents totalling ``pages`` readable pages into ``dest`` plus one broken file per
    ``broken_every`` documents; return the manifest ``{file name: {doc_id, pages, broken}}``."""
    dest.mkdir(parents=True, exist_ok=True)
    templates = _templates()
    manifest: dict[str, dict[str, Any]] = {}
    done, i = 0, 0
    while done < pages:
        tag = f"{prefix}{i:06d}"
        if broken_every and i % broken_every == broken_every - 1:
            kind = i // broken_every % 3
            if kind == 0:  # not a PDF at all, named like one
                name, data = f"doc-{tag}-broken.pdf", b"%PDF-1.7\n" + bytes(range(256)) * 8 + tag.encode()
            elif kind == 1:  # a PDF cut in the middle of its first page
                pdf = next(t for t in templates if t[0] == ".pdf" and t[2] > 1)[1]
                name, data = f"doc-{tag}-truncated.pdf", pdf[:2048] + tag.encode()
            else:  # a PNG signature and nothing readable after it
                name, data = f"doc-{tag}-broken.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64 + tag.encode()
            broken, n = True, 0
        else:
            suffix, raw, n = templates[i % len(templates)]
            name, data, broken = f"doc-{tag}{suffix}", _unique(raw, suffix, tag), False
            done += n
        (dest / name).write_bytes(data)
        manifest[name] = {"doc_id": hashlib.sha256(data).hexdigest(), "pages": n, "broken": broken}
        i += 1
    return manifest


class RssSampler(threading.Thread):
    """Every ``interval`` s: the RSS of each worker's process tree, total and its largest process."""

    def __init__(self, dep: la.Deployment, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.dep, self.interval = dep, interval
        self.samples: list[tuple[float, str, int, int]] = []  # (time, worker, tree bytes, max process)
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            now = time.time()
            for w in la.WORKERS:
                rss = [la.rss_bytes(p) for p in self.dep.worker_pids(f"worker-{w}")]
                self.samples.append((now, w, sum(rss), max(rss, default=0)))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)

    def peak(self, worker: str, start: float, end: float) -> tuple[int, int]:
        sel = [(t, m) for ts, w, t, m in self.samples if w == worker and start <= ts <= end]
        return (max((t for t, _ in sel), default=0), max((m for _, m in sel), default=0))


def check_results(
    out_dir: str | Path, manifest: dict[str, dict[str, Any]], options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Lost, duplicated, wrongly quarantined: every count must be 0. ``out_dir`` is a folder or a
    storage URL (``options``: its storage options, e.g. a deployment's bucket)."""
    from inkloop import storage
    from inkloop.detection.results import QUARANTINE, RESULTS

    out = str(out_dir)
    pages_by_doc: dict[str, list[int]] = defaultdict(list)
    runs_by_doc: dict[str, set[str]] = defaultdict(set)
    for r in storage.read_log(storage.join(out, RESULTS), options):
        if r.get("kind") == "page":
            pages_by_doc[r["page"]["doc_id"]].append(r["page"]["index"])
            runs_by_doc[r["page"]["doc_id"]].add(r.get("run_id", ""))
    q_docs: dict[str, int] = defaultdict(int)
    for r in storage.read_log(storage.join(out, QUARANTINE), options):
        q_docs[r.get("doc_id")] += 1
    expected = {m["doc_id"]: m for m in manifest.values()}
    good = {d for d, m in expected.items() if not m["broken"]}
    bad = {d for d, m in expected.items() if m["broken"]}
    return {
        "documents": len(expected),
        "pages_expected": sum(m["pages"] for m in expected.values()),
        "pages_in_results": sum(len(v) for v in pages_by_doc.values()),
        "lost": len(good - set(pages_by_doc)) + len(bad - set(q_docs) - set(pages_by_doc)),
        "duplicated_docs": sum(1 for d, runs in runs_by_doc.items() if len(runs) > 1)
        + sum(1 for n in q_docs.values() if n > 1)
        + len(set(pages_by_doc) & set(q_docs)),
        "duplicated_pages": sum(len(v) - len(set(v)) for v in pages_by_doc.values()),
        "wrong_page_count": sum(
            1 for d in good & set(pages_by_doc) if len(pages_by_doc[d]) != expected[d]["pages"]
        ),
        "broken_quarantined": len(bad & set(q_docs)),
        "broken": len(bad),
        "readable_quarantined": sorted(good & set(q_docs))[:10],
        "unexpected_docs": len((set(pages_by_doc) | set(q_docs)) - set(expected)),
    }


def _ts(v: Any) -> float:
    return v.timestamp() if isinstance(v, datetime) else float("nan")


def run(pages: int, out: Path, docs_per_batch: int, broken_every: int, timeout: float) -> dict[str, Any]:
    dep = la.Deployment()
    client = la.Client(dep)
    inbox, results = out / "inbox", out / "results"
    t0 = time.monotonic()
    manifest_file = out / "manifest.json"
    if manifest_file.exists():
        manifest = json.loads(manifest_file.read_text())
    else:
        manifest = make_inbox(inbox, pages, broken_every)
        manifest_file.write_text(json.dumps(manifest))
    gen_s = time.monotonic() - t0
    sampler = RssSampler(dep)
    sampler.start()
    started = time.time()
    conf = {"inbox": str(inbox), "out_dir": str(results), "docs_per_batch": docs_per_batch}
    run_id = client.trigger("inkloop_detect", conf)
    state = client.wait_run("inkloop_detect", run_id, timeout=timeout, poll=10)
    wall = time.time() - started
    sampler.stop()
    tries = client.task_tries("inkloop_detect", run_id)
    detect = [t for t in tries if t["task_id"] == "detect"]
    summaries = {}
    for t in detect:
        if t["state"] == "success":
            p = (
                results
                / "parts"
                / run_id.replace(":", "_").replace("+", "_")
                / f"{t['map_index']:04d}"
                / "summary.json"
            )
            if p.exists():
                summaries[t["map_index"]] = json.loads(p.read_text())
    per_worker: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"batches": 0, "pages": 0, "busy_s": 0.0, "rss": []}
    )
    for t in sorted(detect, key=lambda t: _ts(t["start_date"])):
        w = (t["worker"] or "?").split("@")[0]
        pw = per_worker[w]
        if t["state"] == "success":
            pw["batches"] += 1
            pw["pages"] += int(summaries.get(t["map_index"], {}).get("pages", 0))
        start, end = _ts(t["start_date"]), _ts(t["end_date"])
        pw["busy_s"] += max(0.0, end - start) if end == end else 0.0
        tree, proc = sampler.peak(w, start, end) if end == end else (0, 0)
        pw["rss"].append({"map_index": t["map_index"], "tree_mb": tree >> 20, "max_process_mb": proc >> 20})
    check = check_results(results, manifest)
    pages_done = check["pages_in_results"]
    report: dict[str, Any] = {
        "pages_requested": pages,
        "inbox_generated_s": round(gen_s, 1),
        "run_id": run_id,
        "state": state,
        "batches": len({t["map_index"] for t in detect}),
        "max_map_length": AIRFLOW_MAX_MAP_LENGTH,
        "detect_tries": len(detect),
        "wall_s": round(wall, 1),
        "pages_per_hour": round(pages_done / wall * 3600),
        "check": check,
        "workers": {},
    }
    for w, pw in sorted(per_worker.items()):
        rss_tree = [r["tree_mb"] for r in pw["rss"] if r["tree_mb"]]
        report["workers"][w] = {
            "batches": pw["batches"],
            "pages": pw["pages"],
            "pages_per_hour_of_run": round(pw["pages"] / wall * 3600),
            "peak_rss_tree_mb_first_last_max": [rss_tree[0], rss_tree[-1], max(rss_tree)] if rss_tree else [],
            "peak_rss_task_process_mb_max": max((r["max_process_mb"] for r in pw["rss"]), default=0),
            "rss_per_batch": pw["rss"],
        }
    # the same inbox again: nothing new, the run ends after listing
    t1 = time.time()
    again = client.trigger("inkloop_detect", conf)
    report["second_run"] = {
        "state": client.wait_run("inkloop_detect", again, timeout=3600, poll=5),
        "seconds": round(time.time() - t1, 1),
        # batches that ran (an empty listing skips the unexpanded mapped task: one skipped row)
        "detect_tasks": sum(
            t["state"] != "skipped" for t in client.task_tries("inkloop_detect", again, "detect")
        ),
        "check_after": check_results(results, manifest),
    }
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=10_000)
    ap.add_argument("--out", type=Path, default=ROOT / ".cache" / "deploy-bench")
    ap.add_argument("--docs-per-batch", type=int, default=20)
    ap.add_argument("--broken-every", type=int, default=40, help="one broken file per this many documents")
    ap.add_argument("--timeout", type=float, default=24 * 3600)
    ap.add_argument("--up", action="store_true", help="start the deployment first (and leave it running)")
    args = ap.parse_args(argv)
    if args.up:
        la.up()
    args.out = args.out.resolve()
    report = run(args.pages, args.out, args.docs_per_batch, args.broken_every, args.timeout)
    text = json.dumps(report, indent=2, default=str)
    (args.out / "report.json").write_text(text + "\n")
    print(text)
    c, c2 = report["check"], report["second_run"]["check_after"]
    ok = (
        report["state"] == "success"
        and c["lost"] == c["duplicated_docs"] == c["duplicated_pages"] == c["wrong_page_count"] == 0
        and c["broken_quarantined"] == c["broken"]
        and report["batches"] <= AIRFLOW_MAX_MAP_LENGTH
        and report["second_run"]["detect_tasks"] == 0
        and c2 == c
    )
    print("OK" if ok else "FAILED", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    sys.exit(main())

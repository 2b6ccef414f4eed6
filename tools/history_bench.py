"""Does a small detection run cost more when its results folder has a long history? (issue 34, point 6)

Runs ``inkloop detect INBOX --out OUT`` (the CLI as users run it: inbox listing, skipping seen
documents, detection, writing and merging, verdicts) in a fresh process, twice per storage:

- **first**: 20 new documents into an empty folder;
- **100th**: 20 new documents into a folder that already holds 100,000 page records from 99
  earlier runs (``results.jsonl``, ``verdicts.jsonl``, the index and 99 run part objects, written
  through :mod:`inkloop.storage` exactly as runs write them; the records are synthetic, the
  documents of the measured run are real fixture pages made distinct by a few trailing bytes).

Prints wall time and peak memory (the child's ``ru_maxrss``) of each, and the ratio 100th/first,
on a local disk and on moto's S3 server (started here on 127.0.0.1, stopped by PID). Not a test:
timings on a shared machine are noisy, so each case is repeated (``--repeat``) and the median kept.

    python tools/history_bench.py [--records 100000] [--docs 20] [--repeat 3] [--storage local s3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import inkloop  # noqa: F401  (first: its privacy switches)
from inkloop import storage
from inkloop.detection.results import QUARANTINE, RESULTS, RUNS, SUMMARY, DocIndex
from inkloop.verdict.record import VERDICTS

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "documents"
#: Small fixture documents cycled to make the run's documents (a scan, a photo, a one-page PDF).
SOURCES = ("letter.jpg", "contrat signé 2.png", "unsigned form.pdf")


def make_inbox(url: str, n: int, tag: str) -> None:
    """``n`` distinct documents: fixture files with a unique comment or trailer appended (a new
    ``doc_id`` each; every format here ignores bytes after its end marker)."""
    for i in range(n):
        src = FIXTURES / SOURCES[i % len(SOURCES)]
        data = src.read_bytes() + f"\n%inkloop-bench {tag} {i}\n".encode()
        storage.write_bytes(storage.join(url, f"{tag}-{i:03d}{src.suffix}"), data)


def seed_history(out: str, records: int, runs: int = 99) -> None:
    """A results folder with ``records`` page records written by ``runs`` earlier runs."""
    per_run = -(-records // runs)
    pages: list[bytes] = []
    verdicts: list[bytes] = []
    entries: list[tuple[str, str, str]] = []
    written = 0
    for r in range(runs):
        run_id = f"20260101T{r:06d}-{uuid.uuid4().hex[:8]}"
        part: list[bytes] = []
        for _ in range(min(per_run, records - written)):
            doc = uuid.uuid4().hex + uuid.uuid4().hex
            rec = {
                "schema_version": 1,
                "kind": "page",
                "page_key": f"{doc}:0",
                "source": f"inbox/history-{written:06d}.pdf",
                "page": {"doc_id": doc, "index": 0, "width": 1275, "height": 1650, "dpi": 150,
                         "pdf_size": [612.0, 792.0]},
                "model_version": "signature-detector@3",
                "detections": [{"label": "signature", "score": 0.91,
                                "xyxy": [812.4, 1301.0, 1130.2, 1388.7],
                                "pdf_xyxy": [389.95, 624.48, 542.5, 666.58]}],
                "uncertainty": None, "decision": None, "reasons": [], "run_id": run_id,
            }  # fmt: skip
            line = (json.dumps(rec) + "\n").encode()
            part.append(line)
            pages.append(line)
            verdict = {"schema_version": 1, "kind": "verdict", "doc_id": doc, "source": rec["source"],
                       "verdict": "signed", "reasons": ["1 signature place, signed in ink"], "pages": [],
                       "places": [], "ink": [], "marks": [], "digital_signatures": [],
                       "model_version": "signature-detector@3", "config": {"threshold": 0.2}}  # fmt: skip
            verdicts.append((json.dumps(verdict) + "\n").encode())
            entries.append((doc, run_id, "page"))
            written += 1
        storage.write_bytes(storage.join(out, RUNS, run_id, "part-00001.jsonl"), b"".join(part))
    storage.write_bytes(storage.join(out, RESULTS), b"".join(pages))
    storage.write_bytes(storage.join(out, VERDICTS), b"".join(verdicts))
    storage.write_bytes(storage.join(out, QUARANTINE), b"")
    storage.write_text(storage.join(out, SUMMARY), "{}\n")
    DocIndex(out).add(entries)


def timed_detect(inbox: str, out: str, env: dict[str, str], cwd: str) -> tuple[float, float, dict]:
    """Wall seconds and peak RSS (MB) of one ``inkloop detect`` process, and its summary."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "inkloop", "detect", inbox, "--out", out, "-q", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
    )
    stdout, stderr = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 3):
        raise SystemExit(f"inkloop detect failed ({proc.returncode}):\n{stderr.decode()[-3000:]}")
    return seconds, usage.ru_maxrss / 1024, json.loads(stdout)


def storage_steps(out: str, docs: int, tag: str) -> float:
    """Seconds of a run's storage work alone, in this process, without detection: look up
    ``docs`` new documents in the index, commit their records (part object, merged files,
    index), add their verdicts and write the summary (what ``inkloop detect`` does around the
    model)."""
    from inkloop.detection.results import ResultStore, Summary
    from inkloop.types import Detection, Page, PageResult
    from inkloop.verdict.record import DocumentVerdict, append_verdicts

    t0 = time.perf_counter()
    with ResultStore(out) as store:
        for i in range(docs):
            doc = uuid.uuid4().hex + uuid.uuid4().hex
            assert not store.is_done(doc)
            page = Page(doc_id=doc, index=0, width=1275, height=1650, dpi=150, pdf_size=(612.0, 792.0))
            det = Detection("signature", 0.9, (812.4, 1301.0, 1130.2, 1388.7))
            store.write_document([PageResult(page, [det], "signature-detector@3", source=f"{tag}-{i}.pdf")])
        store.commit()
        store.write_summary(Summary(documents=docs, run_id=store.run_id))
    verdicts = [
        DocumentVerdict(doc_id=f"{tag}-{i}", source=f"{tag}-{i}.pdf", verdict="signed") for i in range(docs)
    ]
    append_verdicts(out, verdicts)
    return time.perf_counter() - t0


def bench(kind: str, base: str, env: dict[str, str], args: argparse.Namespace, cwd: str) -> dict:
    history = storage.join(base, "history")
    t0 = time.perf_counter()
    seed_history(history, args.records)
    seeded = time.perf_counter() - t0
    rows: dict[str, list[tuple[float, float]]] = {"first": [], "100th": []}
    for rep in range(args.repeat):
        for case in ("first", "100th"):
            tag = f"{case}-{rep}"
            inbox = storage.join(base, "inbox", tag)
            make_inbox(inbox, args.docs, tag)
            out = storage.join(base, f"empty-{rep}") if case == "first" else history
            seconds, mb, summary = timed_detect(inbox, out, env, cwd)
            assert summary["documents"] == args.docs, summary
            rows[case].append((seconds, mb))
            print(f"  {kind} {case:>5} run {rep + 1}: {seconds:6.2f} s  {mb:6.0f} MB", flush=True)
    steps: dict[str, list[float]] = {"first": [], "100th": []}
    for rep in range(5):
        steps["first"].append(storage_steps(storage.join(base, f"steps-empty-{rep}"), args.docs, f"s{rep}"))
        steps["100th"].append(storage_steps(history, args.docs, f"h{rep}"))
    step_med = {case: statistics.median(v) for case, v in steps.items()}
    print(
        f"  {kind} storage steps alone (median of 5): "
        f"first {step_med['first']:.3f} s, 100th {step_med['100th']:.3f} s"
    )
    med = {
        c: (statistics.median(s for s, _ in v), statistics.median(m for _, m in v)) for c, v in rows.items()
    }
    out = {c: {"s": s, "mb": m, "steps_s": step_med[c]} for c, (s, m) in med.items()}
    return {"storage": kind, "seeded_s": seeded, **out}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--docs", type=int, default=20)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--storage", nargs="+", default=["local", "s3"], choices=["local", "s3"])
    args = p.parse_args()
    scratch = tempfile.mkdtemp(prefix="inkloop-history-bench-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    results = []
    try:
        if "local" in args.storage:
            results.append(bench("local", str(Path(scratch) / "data"), env, args, scratch))
        if "s3" in args.storage:
            from inkloop.devservers.s3 import start, stop

            handle = start(log_dir=Path(scratch) / "moto")
            try:
                os.environ.update(handle.client_env())  # this process's writes (seeding, inboxes)
                bucket = f"bench-{uuid.uuid4().hex[:8]}"
                storage.url_to_fs(f"s3://{bucket}")[0].mkdir(bucket)
                results.append(
                    bench("s3 (moto)", f"s3://{bucket}", {**env, **handle.client_env()}, args, scratch)
                )
            finally:
                stop(handle)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\n{args.docs} documents per run; history {args.records:,} records; median of {args.repeat}")
    print(
        "| storage | first run | 100th run | ratio (time) | ratio (peak memory) "
        "| storage steps alone: first, 100th |"
    )
    print("|---|---|---|---|---|---|")
    for r in results:
        f, h = r["first"], r["100th"]
        print(
            f"| {r['storage']} | {f['s']:.2f} s, {f['mb']:.0f} MB | {h['s']:.2f} s, {h['mb']:.0f} MB "
            f"| {h['s'] / f['s']:.2f}× | {h['mb'] / f['mb']:.2f}× "
            f"| {f['steps_s']:.3f} s, {h['steps_s']:.3f} s |"
        )


if __name__ == "__main__":
    main()

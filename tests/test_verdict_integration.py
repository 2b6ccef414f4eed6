"""The verdict in the loop: detect's summary and verdicts.jsonl, `inkloop verdict`, routing first,
merging mapped parts, and the watched inbox's listing (the DAG itself: test_airflow_dags.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from inkloop.detection import inbox as inbox_mod
from inkloop.detection.inbox import LEDGER, plan_inbox, unseen_documents
from inkloop.detection.results import read_results
from inkloop.models.resolve import resolve_model
from inkloop.routing import RoutingConfig, read_routing, route_results
from inkloop.types import Page, PageResult
from inkloop.verdict import VERDICTS_ORDER, DocumentVerdict, Ink, read_verdicts, write_verdicts
from inkloop.verdict.integrate import merge_results, review_priority, route_with_verdicts


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inkloop", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def page(doc: str, index: int, u: float | None = 0.0) -> PageResult:
    return PageResult(Page(doc, index, 1000, 1400), [], "m@1", source=f"{doc}.pdf", uncertainty=u)


@pytest.fixture(scope="module")
def detected(tmp_path_factory, documents_dir) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("detected") / "out"
    p = run_cli("detect", str(documents_dir), "--out", str(out), "--route", "--no-tta", "-q")
    return out, p


# -- routing -------------------------------------------------------------------------------------
def test_priority_pages_go_to_review_first_whatever_their_uncertainty():
    cfg = RoutingConfig(max_review_pages=2, max_review_fraction=None, audit_rate=0.0)
    pages = [page("a", 0, 0.9), page("b", 0, 0.0), page("c", 0, 0.8), page("d", 0, 0.0)]
    prio = {"b:0": "verdict:needs_review", "d:0": "verdict:partially_signed"}
    routed = route_results(pages, cfg, prio)
    assert [r.decision for r in routed] == ["auto_accept", "review", "auto_accept", "review"]
    assert "verdict:needs_review" in routed[1].reasons
    assert any(x.startswith("route: review (verdict:needs_review first") for x in routed[1].reasons)
    assert any("over budget" in x for x in routed[0].reasons)
    # routing again (e.g. after a new verdict) replaces the earlier verdict reasons
    again = route_results(routed, cfg, {})
    assert [r.decision for r in again] == ["review", "auto_accept", "review", "auto_accept"]
    assert not any(x.startswith("verdict:") for r in again for x in r.reasons)


def test_review_priority_picks_the_pages_with_places_or_ink():
    results = [page("a", 0), page("a", 1), page("a", 2), page("b", 0), page("b", 1), page("c", 0)]
    verdicts = [
        DocumentVerdict("a", "a.pdf", "partially_signed", ink=[Ink(2, 0.5, (0, 0, 1, 1), None)]),
        DocumentVerdict("b", "b.pdf", "needs_review", reasons=["quarantined"]),  # nothing located
        DocumentVerdict("c", "c.pdf", "signed"),
    ]
    assert review_priority(verdicts, results) == {
        "a:2": "verdict:partially_signed",
        "b:0": "verdict:needs_review",
        "b:1": "verdict:needs_review",
    }


# -- detect and the verdict command ----------------------------------------------------------------
def test_detect_derives_verdicts_and_counts_them(detected):
    out, p = detected
    assert p.returncode == 0, p.stderr
    assert "verdicts" in p.stdout and "needs review" in p.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["verdicts"]) == list(VERDICTS_ORDER)
    assert sum(summary["verdicts"].values()) == summary["documents"] == 7
    verdicts = read_verdicts(out)
    assert {v.doc_id for v in verdicts} == {r.page.doc_id for r in read_results(out)}
    assert summary["verdicts"]["unsigned"] == 2  # the unsigned form's and contract's places are empty
    by_name = {Path(v.source).name: v.verdict for v in verdicts}
    assert by_name["contract-signed.pdf"] == "signed" and by_name["contract-unsigned.pdf"] == "unsigned"
    # the ambiguous band starts where the results were cut: the model card's threshold
    card_threshold = resolve_model(None).card.conf_threshold
    assert {v.config["threshold"] for v in verdicts} == {card_threshold}


def test_detect_no_verdict_skips_them(tmp_path, documents_dir):
    out = tmp_path / "out"
    p = run_cli("detect", str(documents_dir / "letter.jpg"), "--out", str(out), "--json", "--no-verdict")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["verdicts"] is None
    assert not (out / "verdicts.jsonl").exists()


def test_a_run_derives_its_own_documents_and_keeps_the_folders_earlier_verdicts(tmp_path, documents_dir):
    """A watched inbox's folder grows every run: a run derives (and re-hashes) its own documents
    only, merged over the earlier verdicts, and routes once with them."""
    from inkloop.api import DetectOptions, detect

    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    shutil.copy(documents_dir / "unsigned form.pdf", inbox)
    first = detect([str(inbox)], out, DetectOptions(conf=0.3), routing=RoutingConfig(tta=False))
    assert first.verdicts is not None and first.verdicts["unsigned"] == 1 and first.run_id
    assert [v.config["threshold"] for v in read_verdicts(out)] == [0.3]  # the detector's threshold
    # the first run's source is gone: re-deriving it would turn it into needs_review
    (inbox / "unsigned form.pdf").unlink()
    shutil.copy(documents_dir / "letter.jpg", inbox)
    second = detect([str(inbox)], out, routing=RoutingConfig(tta=False))
    assert second.documents == 1 and sum(second.verdicts.values()) == 1 and second.run_id != first.run_id
    by_source = {Path(v.source).name: v.verdict for v in read_verdicts(out)}
    assert by_source == {"unsigned form.pdf": "unsigned", "letter.jpg": by_source["letter.jpg"]}
    assert by_source["letter.jpg"] != "needs_review"
    routed = {Path(r.source).name for r in read_routing(out).values()}
    assert routed == {"unsigned form.pdf", "letter.jpg"}  # routing covers the whole folder


def test_a_runs_verdicts_read_its_part_objects_once(tmp_path, documents_dir, monkeypatch):
    """A run's pages and quarantine records share its part objects: deriving the run's verdicts
    reads each part once (not once for pages, again for quarantine), and the run's quarantined
    input still gets its needs_review verdict."""
    from collections import Counter

    from inkloop import storage
    from inkloop.api import DetectOptions, detect
    from inkloop.verdict import derive_verdicts

    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    shutil.copy(documents_dir / "letter.jpg", inbox)
    (inbox / "broken.pdf").write_bytes(b"%PDF-1.4\nnot really")
    summary = detect([str(inbox)], out, DetectOptions(conf=0.3))
    assert summary.run_id and summary.quarantined == 1
    reads: Counter[str] = Counter()
    real = storage.read_jsonl

    def counting(url, *args, **kwargs):
        reads[Path(str(url)).name] += 1
        return real(url, *args, **kwargs)

    monkeypatch.setattr(storage, "read_jsonl", counting)
    verdicts = derive_verdicts(out, run_id=summary.run_id, write=False)
    parts = sorted(p.name for p in (out / "runs" / summary.run_id).glob("*.jsonl"))
    assert parts and dict(reads) == dict.fromkeys(parts, 1)
    by_source = {Path(v.source).name: v for v in verdicts}
    assert set(by_source) == {"letter.jpg", "broken.pdf"}
    assert by_source["broken.pdf"].verdict == "needs_review"
    assert by_source["broken.pdf"].reasons[0].startswith("quarantined at detection (corrupt)")


def test_verdict_command_rederives_and_uses_the_documented_exit_codes(detected, tmp_path, documents_dir):
    out, _ = detected
    before = [v.to_dict() for v in read_verdicts(out)]
    p = run_cli("verdict", str(out), "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert sum(doc["counts"].values()) == 7 and doc["verdicts_path"].endswith("verdicts.jsonl")
    assert [v.to_dict() for v in read_verdicts(out)] == before
    p = run_cli("verdict", str(out))
    assert p.returncode == 0 and "unsigned" in p.stdout and "unsigned form.pdf" in p.stdout
    assert "e-signed" in p.stdout and "e signed" not in p.stdout  # every verdict has a row, as written
    # sources stored relative (results moved from another machine): --source-root finds them
    rel = tmp_path / "rel"
    shutil.copytree(documents_dir, rel / "in")
    shutil.copytree(out, rel / "out")
    text = (rel / "out" / "results.jsonl").read_text()
    (rel / "out" / "results.jsonl").write_text(text.replace(json.dumps(str(documents_dir))[1:-1], "in"))
    p = run_cli("verdict", str(rel / "out"), "--source-root", str(rel), "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["counts"]["unsigned"] == 2
    p = run_cli("verdict", str(rel / "out"), "--json", cwd=tmp_path)  # not found from here
    assert p.returncode == 0 and json.loads(p.stdout)["counts"]["needs_review"] == 7
    assert run_cli("verdict", str(tmp_path / "nothing")).returncode == 2
    assert run_cli("verdict", str(out), "--threshold", "2").returncode == 2
    assert run_cli("verdict").returncode == 2


def test_route_with_verdicts_puts_needs_review_documents_first(detected, tmp_path):
    src, _ = detected
    out = tmp_path / "out"
    shutil.copytree(src, out)
    verdicts = read_verdicts(out)
    signed = next(v for v in verdicts if v.verdict == "signed")
    signed.verdict = "needs_review"
    write_verdicts(out, verdicts)
    routed = route_with_verdicts(out, RoutingConfig(max_review_pages=1, max_review_fraction=None))
    first = [r for r in routed if r.decision == "review"]
    assert [r.page.doc_id for r in first] == [signed.doc_id]
    recs = read_routing(out)
    assert "verdict:needs_review" in recs[first[0].page_key].reasons


def test_merge_results_folds_the_parts_verdicts(tmp_path):
    def part(name: str, docs: list[tuple[str, str]]) -> Path:
        p = tmp_path / name
        p.mkdir()
        (p / "results.jsonl").write_text(
            "".join(json.dumps({**page(d, 0).to_dict(), "run_id": "r"}) + "\n" for d, _ in docs)
        )
        write_verdicts(p, [DocumentVerdict(d, f"{d}.pdf", v) for d, v in docs])
        return p

    out = tmp_path / "out"
    total = merge_results(
        out, [part("p1", [("a", "signed"), ("b", "unsigned")]), part("p2", [("c", "signed")])]
    )
    assert total.documents == 3 and total.verdicts is not None and total.verdicts["signed"] == 2
    assert json.loads((out / "summary.json").read_text())["verdicts"]["unsigned"] == 1
    total = merge_results(out, [part("p3", [("d", "needs_review")])])
    assert total.verdicts is not None and sum(total.verdicts.values()) == 1
    assert sorted(v.doc_id for v in read_verdicts(out)) == ["a", "b", "c", "d"]


# -- the watched inbox -------------------------------------------------------------------------------
def test_inbox_lists_each_unseen_document_once_and_caches_hashes(tmp_path, documents_dir, monkeypatch):
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    shutil.copytree(documents_dir, inbox)
    shutil.copy(inbox / "letter.jpg", inbox / "letter again.jpg")  # same bytes, another name
    (inbox / "broken.pdf").write_bytes(b"%PDF-1.4\nnot really")
    todo = unseen_documents(str(inbox), out)
    assert len(todo) == 8 and sum(Path(t).name.startswith("letter") for t in todo) == 1
    assert run_cli("detect", *todo, "--out", str(out), "-q", "--no-verdict").returncode == 3  # broken one
    calls: list[str] = []
    real = inbox_mod.source_doc_id
    monkeypatch.setattr(inbox_mod, "source_doc_id", lambda s: calls.append(s) or real(s))
    assert unseen_documents(str(inbox), out) == []  # quarantined one included: it has a doc_id
    assert calls == []  # every hash came from the ledger
    assert len(json.loads((out / LEDGER).read_text())) == 9
    (inbox / "letter again.jpg").write_bytes((inbox / "letter.jpg").read_bytes() + b"\0")  # changed
    assert unseen_documents(str(inbox), out) == [str(inbox / "letter again.jpg")]
    assert calls == [str(inbox / "letter again.jpg")]
    assert plan_inbox(str(inbox), out, docs_per_batch=1) == [[str(inbox / "letter again.jpg")]]

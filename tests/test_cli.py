"""``inkloop detect`` end to end on real fixture pages and on every kind of bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from badfiles import make_all
from inkloop.detection.results import read_quarantine, read_results


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inkloop", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


@pytest.fixture()
def mixed_inbox(tmp_path, documents_dir) -> tuple[Path, dict[str, Path]]:
    inbox = tmp_path / "in box ünïcode"
    shutil.copytree(documents_dir, inbox)
    bad = make_all(inbox / "bad", documents_dir)
    return inbox, bad


def test_detect_mixed_batch_accounts_for_every_input(tmp_path, mixed_inbox):
    inbox, bad = mixed_inbox
    out = tmp_path / "out"
    p = run_cli("detect", str(inbox), "--out", str(out), "--json", "--annotate", "--annotate-pdf", "--crops")
    assert p.returncode == 3, p.stderr  # some inputs quarantined
    summary = json.loads(p.stdout)
    results, quarantine = read_results(out), read_quarantine(out)
    good_docs = {r.source for r in results}
    bad_docs = {q.source for q in quarantine}
    all_inputs = {str(f) for f in inbox.rglob("*") if f.is_file()}
    assert good_docs | bad_docs == all_inputs and not good_docs & bad_docs  # each input exactly once
    assert bad_docs == {str(p) for p in bad.values()}
    assert summary["documents"] == 7 and summary["quarantined"] == len(bad)
    assert summary["pages"] == 4 + 2 + 1 + 1 + 1 + 1 + 1 == len(results)
    reasons = {Path(q.source).name: q.reason for q in quarantine}
    assert "password" in reasons["encrypted.pdf"] and "empty" in reasons["empty.pdf"]
    assert "decompression bomb" in reasons["bomb.png"] and "unsupported" in reasons["notes.txt"]
    # the non-ASCII path with spaces went through and is recorded as given
    assert any("contrat signé 2.png" in r.source for r in results)
    # PDF pages carry PDF points, image pages do not
    for r in results:
        assert (r.page.pdf_size is not None) == r.source.endswith(".pdf")
        assert r.model_version == summary["model_version"]
    assert (out / "summary.json").exists()
    assert len(list((out / "annotated").glob("*.png"))) == len(results)
    assert len(list((out / "annotated").glob("*.pdf"))) == 4  # one per PDF
    assert len(list((out / "crops").glob("*.png"))) == sum(len(r.detections) for r in results)
    for name in ("quarantined", "encrypted.pdf"):
        assert name in p.stderr  # people see what was quarantined


def test_rerun_skips_done_documents_unless_forced(tmp_path, documents_dir):
    out = tmp_path / "out"
    first = run_cli("detect", str(documents_dir), "--out", str(out), "--json", "-q")
    assert first.returncode == 0, first.stderr
    n = len(read_results(out))
    again = json.loads(run_cli("detect", str(documents_dir), "--out", str(out), "--json", "-q").stdout)
    assert again["skipped"] == 7 and again["pages"] == 0
    forced = json.loads(
        run_cli("detect", str(documents_dir), "--out", str(out), "--json", "-q", "--force").stdout
    )
    assert forced["pages"] == n and forced["skipped"] == 0
    assert len(read_results(out)) == n  # replaced, not duplicated
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == n  # compacted after a forced run


def test_duplicate_content_under_two_names_is_processed_once(tmp_path, documents_dir):
    (tmp_path / "in").mkdir()
    shutil.copy2(documents_dir / "letter.jpg", tmp_path / "in" / "a.jpg")
    shutil.copy2(documents_dir / "letter.jpg", tmp_path / "in" / "b.jpg")
    s = json.loads(
        run_cli("detect", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--json", "-q").stdout
    )
    assert s["documents"] == 1 and s["skipped"] == 1


def test_exit_codes_and_help(tmp_path, documents_dir):
    assert run_cli("detect", "--out", str(tmp_path)).returncode == 2  # usage: no inputs
    bad_model = run_cli(
        "detect", str(documents_dir), "--out", str(tmp_path / "o"), "--model", str(tmp_path / "x.onnx")
    )
    assert bad_model.returncode == 4 and "model file not found" in bad_model.stdout + bad_model.stderr
    help_text = run_cli("detect", "--help").stdout
    for opt in (
        "--out",
        "--model",
        "--device",
        "--conf",
        "--batch-size",
        "--dpi",
        "--annotate",
        "--annotate-pdf",
        "--crops",
        "--force",
        "--max-pages",
        "--max-pixels",
        "--json",
        "--quiet",
    ):
        assert opt in help_text, opt
    missing = run_cli("detect", str(tmp_path / "nothing.pdf"), "--out", str(tmp_path / "o2"), "--json", "-q")
    assert missing.returncode == 3 and json.loads(missing.stdout)["quarantined"] == 1
    assert read_quarantine(tmp_path / "o2")[0].reason == "file not found"


def test_results_schema_is_documented_in_readme():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for field in ("schema_version", "page_key", "pdf_xyxy", "model_version", "quarantine.jsonl"):
        assert field in readme, field


def test_detect_and_read_only_commands_leave_the_home_untouched(tmp_path, documents_dir):
    """No cache, config or id file appears in the user's home from detecting or listing models
    (the registry's and the libraries' caches are created only where a command needs them)."""
    home = tmp_path / "home"
    home.mkdir()
    redirects = ("XDG_", "MPLCONFIGDIR", "INKLOOP_REGISTRY")  # the suite's own: none may hide a write
    env = {k: v for k, v in os.environ.items() if not k.startswith(redirects)}
    env.update(HOME=str(home), INKLOOP_REGISTRY=str(tmp_path / "registry"))
    for args in (["detect", str(documents_dir), "--out", str(tmp_path / "out"), "-q"], ["models", "list"]):
        p = subprocess.run([sys.executable, "-m", "inkloop", *args], capture_output=True, text=True, env=env)
        assert p.returncode == 0, p.stderr[-2000:]
    assert sorted(p.relative_to(home).as_posix() for p in home.rglob("*")) == []
    assert not (tmp_path / "registry").exists()  # listing an empty registry creates nothing


# --------------------------------------------------------------------------------------------
# Renamed commands: the new names explain themselves; the old ones keep working, with a warning.


def test_promote_lives_with_rollback_and_the_old_name_still_promotes_with_a_warning(tmp_path):
    from inkloop.cli.renamed import deprecation_message
    from inkloop.models.resolve import open_registry, resolve_model

    registry = str(tmp_path / "registry")
    reg = open_registry(registry)
    bundled = resolve_model(None)
    v1, v2 = (reg.register("sig", bundled.path, bundled.card) for _ in range(2))

    new = run_cli("models", "promote", "sig", "--candidate", v1, "--force", "--registry", registry, "--json")
    assert new.returncode == 0, new.stderr
    assert json.loads(new.stdout)["promoted"] and reg.alias("sig", "production") == v1
    assert "deprecated" not in new.stderr

    old = run_cli("promote", "sig", "--candidate", v2, "--force", "--registry", registry, "--json")
    assert old.returncode == 0, old.stderr
    decision = json.loads(old.stdout)  # stdout still carries the JSON document alone
    assert decision["promoted"] and decision["candidate"] == v2 and reg.alias("sig", "production") == v2
    assert deprecation_message("promote") in old.stderr
    assert "use `inkloop models promote`" in old.stderr

    # the same exit codes under both names: a model that is not there is a model error (4)
    for args in (["models", "promote"], ["promote"]):
        missing = run_cli(*args, "nosuch", "--force", "--registry", registry)
        assert missing.returncode == 4, missing.stdout + missing.stderr

    rollback = run_cli("models", "rollback", "sig", "--registry", registry, "--json")
    assert rollback.returncode == 0 and json.loads(rollback.stdout)["to"] == v1


def test_help_lists_the_new_names_only_and_old_names_say_where_to_go():
    from typer.main import get_command

    from inkloop.cli import app
    from inkloop.cli.renamed import RENAMED

    def names(group: object) -> tuple[set[str], set[str]]:
        commands = group.commands  # type: ignore[attr-defined]
        return {n for n, c in commands.items() if not c.hidden}, {n for n, c in commands.items() if c.hidden}

    top = get_command(app)
    shown, hidden = names(top)
    assert {"sync-mlflow-runs", "models"} <= shown and hidden == {"promote", "sync-runs"}
    assert "promote" in names(top.commands["models"])[0]  # type: ignore[attr-defined]
    shown, hidden = names(top.commands["curate"])  # type: ignore[attr-defined]
    assert "open-app" in shown and hidden == {"app"}
    for old, new in RENAMED.items():
        text = run_cli(*old.split(), "--help").stdout
        assert "Deprecated: use" in text and f"inkloop {new}" in text, text


def test_sync_mlflow_runs_and_its_old_name_fail_the_same_on_a_folder_without_runs(tmp_path):
    from inkloop.cli.renamed import deprecation_message

    new = run_cli("sync-mlflow-runs", str(tmp_path), "--json")
    old = run_cli("sync-runs", str(tmp_path), "--json")
    assert new.returncode == old.returncode == 2, new.stdout + new.stderr
    assert new.stdout == old.stdout
    assert deprecation_message("sync-runs") in old.stderr and "deprecated" not in new.stderr
    assert old.stderr.replace(deprecation_message("sync-runs") + "\n", "") == new.stderr


@pytest.mark.fiftyone
def test_curate_open_app_print_is_what_curate_app_printed(tmp_path):
    """``curate open-app --print`` says how to open the App, as ``curate app`` did (which warns)."""
    from inkloop.cli.renamed import deprecation_message

    dataset = f"absent-{tmp_path.name}"
    new = run_cli("curate", "open-app", "--print", "--dataset", dataset, "--json")
    old = run_cli("curate", "app", "--dataset", dataset, "--json")
    assert new.returncode == old.returncode == 0, new.stderr + old.stderr
    assert json.loads(new.stdout) == json.loads(old.stdout)
    info = json.loads(new.stdout)
    assert info["dataset_exists"] is False and f"fiftyone app launch {dataset}" in info["command"]
    assert deprecation_message("curate app") in old.stderr and "deprecated" not in new.stderr


def test_user_commands_do_not_depend_on_the_dev_servers():
    """``inkloop serve`` and every other command reach nothing under ``inkloop.devservers`` (the
    local services for tests and first-time users), directly or through the modules they import."""
    from test_layout import module_graph

    graph = module_graph()
    seen, todo = set(), [m for m in graph if m == "inkloop.cli" or m.startswith("inkloop.cli.")]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph.get(module, ()))
    assert "inkloop.serving.launcher" in seen  # `inkloop serve` starts Triton through it
    assert sorted(m for m in seen if m.startswith("inkloop.devservers")) == []


def test_a_parent_weight_outside_0_to_1_is_a_usage_error_and_writes_nothing(tmp_path):
    for args in (
        ["export", str(tmp_path / "run"), "--out", str(tmp_path / "export"), "--parent-weight", "1.5"],
        [
            "loop",
            "simulate",
            "--stream",
            "s",
            "--test",
            "t",
            "--workdir",
            str(tmp_path / "w"),
            "--parent-weight",
            "1",
        ],
    ):
        r = run_cli(*args)
        assert r.returncode == 2, r.stdout + r.stderr
        assert "parent" in (r.stdout + r.stderr).lower()
    assert list(tmp_path.iterdir()) == []

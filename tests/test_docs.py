"""The documentation is runnable and its links hold.

- Every fenced block preceded by ``<!-- runnable -->`` in ``README.md``, ``docs/*.md`` and
  ``tools/README.md`` runs (``bash`` blocks with bash, ``python`` blocks with this Python) from a
  temporary folder in which every top-level entry of the repository is linked: relative paths work
  and outputs land in the temporary folder. The convention is described in ``docs/README.md``.
- Every relative link points to an existing file, and every ``#anchor`` into a Markdown file to
  one of its headings.
- Every ``python -m inkloop...`` module, ``tools/*.py`` script and ``inkloop`` command named in a
  shell block of the docs exists (``inkloop CMD [SUB] --help`` answers), so no page shows a path
  the layout no longer has.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", ROOT / "tools" / "README.md", *(ROOT / "docs").glob("*.md")])
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
RUNNABLE = re.compile(r"^<!-- runnable -->\n```(bash|python)\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def runnable_blocks() -> list[tuple[str, str, str]]:
    blocks = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for i, m in enumerate(RUNNABLE.finditer(text)):
            blocks.append((f"{rel(page)}#{i}", m.group(1), m.group(2)))
    return blocks


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, re.M)}


def test_pages_exist_and_readme_is_short():
    assert len(PAGES) > 5
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 200
    for name in ("development.md", "model-card.md", "benchmarks.md", "deployment.md"):
        assert (ROOT / "docs" / name).is_file(), name


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_relative_links_point_to_existing_files(page):
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{rel(page)}: {broken}"


@pytest.fixture
def doc_cwd(tmp_path: Path) -> Path:
    for entry in ROOT.iterdir():
        if entry.name not in {"out", ".git"}:
            (tmp_path / entry.name).symlink_to(entry)
    return tmp_path


def test_there_are_runnable_blocks():
    assert {page.split("#")[0] for page, _, _ in runnable_blocks()} >= {"README.md", "docs/detection.md"}


@pytest.mark.parametrize(("where", "lang", "code"), runnable_blocks(), ids=[b[0] for b in runnable_blocks()])
def test_runnable_block(where, lang, code, doc_cwd):
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    cmd = ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
    done = subprocess.run(cmd, cwd=doc_cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{where} failed ({done.returncode}):\n{code}\n{done.stdout}\n{done.stderr}"


def shell_lines() -> list[str]:
    lines = []
    for page in PAGES:
        for m in FENCE.finditer(page.read_text(encoding="utf-8")):
            if m.group(1) in ("bash", "sh", ""):
                lines += [ln.strip() for ln in m.group(2).splitlines()]
    return lines


def all_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in PAGES)


def test_modules_and_scripts_named_in_docs_exist():
    text = all_text()
    modules = set(re.findall(r"python -m (inkloop[\w.]*)", text))
    assert modules, "expected at least one python -m inkloop... in the docs"
    missing = [m for m in sorted(modules) if importlib.util.find_spec(m) is None]
    scripts = set(re.findall(r"\btools/(\w+\.py)", text))
    missing += [s for s in sorted(scripts) if not (ROOT / "tools" / s).is_file()]
    assert not missing, missing


def test_inkloop_commands_named_in_docs_exist():
    from typer.testing import CliRunner

    from inkloop.cli import app

    commands = set()
    for line in shell_lines():
        if not line.startswith("inkloop "):
            continue
        words = []
        for word in line.split()[1:3]:
            if not re.fullmatch(r"[a-z][a-z-]*", word):
                break
            words.append(word)
        commands.add(tuple(words))
    assert ("detect",) in commands
    runner = CliRunner()
    failed = {c: r.output for c in sorted(commands) if (r := runner.invoke(app, [*c, "--help"])).exit_code}
    assert not failed, failed

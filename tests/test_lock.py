"""The repository's environments install from locks in requirements/: they must agree with pyproject.

Why a test: a dependency added or re-ranged in ``pyproject.toml`` without ``make lock`` would
install on a developer's machine (pip reads pyproject) and fail, or silently differ, on CI's
fresh machine (which installs the lock). Fix any failure here with ``make lock``.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
REQS = ROOT / "requirements"
# The environment every lock is resolved for (Makefile's LOCK_PYTHON, this project's machines).
LOCK_ENV = {
    "python_version": "3.11",
    "python_full_version": "3.11.7",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}
FIX = "run `make lock` and commit requirements/"


def read_lock(path: Path) -> dict[str, Version]:
    """``name==version`` pins of a uv/pip-compile lock (comments and annotations skipped)."""
    pins: dict[str, Version] = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9._-]+)==([^\s;]+)", line)
        if m:
            pins[canonicalize_name(m.group(1))] = Version(m.group(2))
    return pins


def direct_from_pyproject(lock: Path) -> set[str]:
    """Packages the lock says it pinned because pyproject.toml (or the .in file) asked for them."""
    names, current = set(), None
    for line in lock.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9._-]+)==", line)
        if m:
            current = canonicalize_name(m.group(1))
        elif current and re.search(r"#\s+(via\s+)?(inkloop \(pyproject\.toml\)|-r .*\.in)", line):
            names.add(current)
    return names


def project_requirements(extras: tuple[str, ...]) -> list[Requirement]:
    """pyproject's dependencies plus the named extras, following ``inkloop[...]`` self-references."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    out = [Requirement(r) for r in project["dependencies"]]
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in optional[extra]:
            req = Requirement(text)
            if canonicalize_name(req.name) == "inkloop":
                todo.extend(req.extras)
            else:
                out.append(req)
    return out


def in_file_requirements(path: Path) -> list[Requirement]:
    lines = (ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines())
    return [Requirement(ln) for ln in lines if ln]


CASES = {
    "base.lock": lambda: project_requirements(()),
    "dev.lock": lambda: project_requirements(("dev",)),
    "labelstudio.lock": lambda: in_file_requirements(REQS / "labelstudio.in"),
    "triton.lock": lambda: in_file_requirements(REQS / "triton.in"),
}


@pytest.mark.parametrize("lock_name", sorted(CASES))
def test_lock_satisfies_every_declared_requirement(lock_name: str) -> None:
    lock = REQS / lock_name
    assert lock.is_file(), f"{lock} is missing: {FIX}"
    pins = read_lock(lock)
    problems = []
    wanted = CASES[lock_name]()
    for req in wanted:
        if req.marker is not None and not req.marker.evaluate(LOCK_ENV):
            continue
        name = canonicalize_name(req.name)
        if name not in pins:
            problems.append(f"{req} is declared but not in {lock_name}")
        elif not req.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{req} is declared but {lock_name} pins {name}=={pins[name]}")
    # The other way round: a pin the lock holds only because of a requirement that is gone.
    declared = {canonicalize_name(r.name) for r in wanted}
    stale = sorted(direct_from_pyproject(lock) - declared)
    problems += [f"{lock_name} pins {n} for pyproject, which no longer asks for it" for n in stale]
    assert not problems, "; ".join(problems) + f" — {FIX}"


def test_locks_are_resolved_for_the_project_python() -> None:
    """The header names the command; ``--python-version 3.11`` alone would resolve for 3.11.0."""
    makefile = (ROOT / "Makefile").read_text()
    python = re.search(r"^LOCK_PYTHON := (\S+)", makefile, re.M)
    assert python is not None
    for lock in sorted(REQS.glob("*.lock")):
        header = "\n".join(lock.read_text().splitlines()[:3])
        assert f"--python-version {python.group(1)}" in header, (lock.name, header)
        assert "/opt/" not in lock.read_text(), f"{lock.name} names a machine-local folder: {FIX}"


def test_label_studio_server_version_is_the_locked_one() -> None:
    from inkloop.devservers.labelstudio.settings import LABEL_STUDIO_VERSION

    assert read_lock(REQS / "labelstudio.lock")["label-studio"] == Version(LABEL_STUDIO_VERSION), FIX


def test_triton_server_pins_match_its_in_file() -> None:
    """``inkloop serve`` installs :data:`PINS` where there is no lock: the same as triton.in."""
    from inkloop.serving.triton_venv import PINS

    assert sorted(map(str, in_file_requirements(REQS / "triton.in"))) == sorted(
        str(Requirement(p)) for p in PINS
    )
    lock = read_lock(REQS / "triton.lock")
    assert lock["numpy"] < Version("2"), "PyTriton's server answers wrongly with numpy 2"


def test_the_installed_environment_is_the_locked_one() -> None:
    """What this test run imports is what dev.lock says (a venv synced from the lock)."""
    import importlib.metadata as md

    pins = read_lock(REQS / "dev.lock")
    wrong = []
    for name in ("onnxruntime", "openvino", "ultralytics", "torch", "numpy", "apache-airflow", "fiftyone"):
        try:
            got = Version(md.version(name))
        except md.PackageNotFoundError:
            wrong.append(f"{name} not installed (lock: {pins[name]})")
            continue
        if got != pins[name]:
            wrong.append(f"{name} {got} installed, lock pins {pins[name]}")
    assert not wrong, "; ".join(wrong) + " — run `make setup-dev` to sync the venv with the lock"

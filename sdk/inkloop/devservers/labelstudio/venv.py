"""Label Studio's own venv (it pins Django and friends): create it, install the pinned version."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from inkloop.devservers.labelstudio.settings import LABEL_STUDIO_VERSION, SetupError, default_venv
from inkloop.review.labeling import repo_root


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def installed_version(venv: Path | None = None) -> str | None:
    """The Label Studio version importable in ``venv``, or None (no venv, broken install)."""
    python = venv_python(venv or default_venv())
    if not python.exists():
        return None
    return python_output(python, "import label_studio; print(label_studio.__version__)")


def python_output(python: Path, code: str) -> str | None:
    """What ``python -c code`` prints (stripped), or None when it fails, times out or prints nothing."""
    try:
        out = subprocess.run(
            [str(python), "-c", code],
            capture_output=True,
            text=True,
            timeout=120,
            env=_clean_python_env(os.environ),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock, so two test sessions or scripts never install into one venv at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _base_python() -> str:
    """The interpreter to create the venv from: the one behind ours, so versions match."""
    return getattr(sys, "_base_executable", None) or sys.executable


def ensure_venv(
    venv: Path | None = None, version: str = LABEL_STUDIO_VERSION, *, quiet: bool = False
) -> Path:
    """Make ``venv`` hold ``label-studio==version``; idempotent, a no-op when it already does.

    Plain ``pip install``: the machine's pip config (constraints, local indexes) applies. Raises
    :class:`SetupError` (the caller decides whether that fails a test run: it should) when the
    venv cannot be created or the install does not end with the right version importable.
    """
    venv = (venv or default_venv()).resolve()
    if installed_version(venv) == version and _lock_applied(venv):
        return venv
    try:
        _install(venv, version, quiet=quiet)
    except OSError as exc:
        raise SetupError(f"could not set up the Label Studio venv {venv}: {exc}") from None
    return venv


def _install(venv: Path, version: str, *, quiet: bool) -> None:
    with _file_lock(venv.with_name(venv.name + ".lock")):
        if installed_version(venv) == version and _lock_applied(venv):  # another process did it
            return
        out = None if not quiet else subprocess.DEVNULL
        env = _clean_python_env(os.environ)
        if not venv_python(venv).exists():
            _run_setup([_base_python(), "-m", "venv", str(venv)], env, out, "create the venv")
        lock, uv = lock_file(), _uv()
        if lock is not None and uv is not None:
            cmd = [uv, "pip", "sync", "--python", str(venv_python(venv)), "--compile-bytecode"]
            cmd += [*_local_wheel_args(), str(lock)]
            _run_setup(cmd, env, out, f"uv pip sync {lock.name}")
        elif lock is not None:
            cmd = [str(venv_python(venv)), "-m", "pip", "install", "-r", str(lock)]
            _run_setup(cmd, env, out, f"pip install -r {lock.name}")
        else:
            cmd = [str(venv_python(venv)), "-m", "pip", "install", f"label-studio=={version}"]
            _run_setup(cmd, env, out, f"pip install label-studio=={version}")
        got = installed_version(venv)
        if got != version:
            raise SetupError(f"after installing, {venv} has label-studio {got!r}, not {version!r}")
        if lock is not None:
            _lock_stamp(venv).write_text(_lock_digest(lock) + "\n")


# The repository's own environments install from lock files (``make lock`` refreshes them), so
# a fresh machine gets exactly the versions CI last tested; a pip-installed inkloop has no lock
# and installs ``label-studio==LABEL_STUDIO_VERSION`` with whatever that resolves to.


def lock_file() -> Path | None:
    """``requirements/labelstudio.lock`` of this checkout, or None outside a checkout."""
    path = repo_root() / "requirements" / "labelstudio.lock"
    return path if path.is_file() else None


def _lock_digest(lock: Path) -> str:
    return hashlib.sha256(lock.read_bytes()).hexdigest()


def _lock_stamp(venv: Path) -> Path:
    return venv / ".inkloop-lock"


def _lock_applied(venv: Path) -> bool:
    """True when the venv was synced from the current lock (or there is no lock to follow)."""
    lock = lock_file()
    if lock is None:
        return True
    stamp = _lock_stamp(venv)
    return stamp.is_file() and stamp.read_text().strip() == _lock_digest(lock)


def _uv() -> str | None:
    """uv, which installs a locked set in seconds: ``$INKLOOP_UV``, the repo's bootstrap, or PATH."""
    for candidate in (os.environ.get("INKLOOP_UV"), str(repo_root() / ".venv-uv" / "bin" / "uv")):
        if candidate and Path(candidate).is_file():
            return candidate
    return shutil.which("uv")


def _local_wheel_args() -> list[str]:
    """``--find-links`` for the machine's local wheel folders (uv ignores pip's configuration)."""
    folders = os.environ.get("INKLOOP_FIND_LINKS", "")  # colon-separated; the Makefile sets it
    return [arg for d in folders.split(":") if d and Path(d).is_dir() for arg in ("--find-links", d)]


def _run_setup(cmd: list[str], env: dict[str, str], out: Any, what: str) -> None:
    try:
        result = subprocess.run(cmd, env=env, stdout=out, stderr=out, check=False)
    except OSError as exc:
        raise SetupError(f"could not {what}: {exc}") from None
    if result.returncode != 0:
        raise SetupError(f"could not {what} (exit code {result.returncode}); see the output above")


def _clean_python_env(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without what would make another venv's python import our packages."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__"}
    return {k: v for k, v in environ.items() if k not in drop}

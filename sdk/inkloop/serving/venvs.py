"""Private venvs for the local servers whose pins clash with the SDK's.

Label Studio pins Django and friends; PyTriton's server needs numpy < 2 where the SDK's OpenCV
needs numpy 2. Each gets a venv beside the checkout, synced from its lock in ``requirements/``
(``make lock`` refreshes them) with uv when the checkout has one, so a fresh machine installs
exactly what CI last tested; a pip-installed inkloop has no lock and pip-installs fallback pins.
A stamp in the venv (the lock's hash) tells when a changed lock needs a new sync.

The venvs are not byte-compiled at install (for Label Studio's 500 packages that cost ~30 s of
setup for modules its server never imports); their pythons run with bytecode writing on
(``clean_python_env``), so the first start caches what the server imports and later starts are as
fast, also where the machine sets ``PYTHONDONTWRITEBYTECODE``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from inkloop.review.labeling import repo_root


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def lock_file(name: str) -> Path | None:
    """``requirements/<name>.lock`` of this checkout, or None outside a checkout."""
    path = repo_root() / "requirements" / f"{name}.lock"
    return path if path.is_file() else None


def wanted_digest(lock: Path | None, fallback: Sequence[str]) -> str:
    """What the venv's stamp must say: the lock's hash, or the fallback pins' hash."""
    data = lock.read_bytes() if lock is not None else "\n".join(fallback).encode()
    return hashlib.sha256(data).hexdigest()


def stamp_matches(venv: Path, digest: str) -> bool:
    stamp = venv / ".inkloop-lock"
    return stamp.is_file() and stamp.read_text().strip() == digest


def sync_venv(
    venv: Path,
    *,
    lock: Path | None,
    fallback: Sequence[str],
    ready: Callable[[], bool],
    error: type[Exception],
    what: str,
    quiet: bool = False,
) -> None:
    """Create ``venv`` if needed and install ``lock`` into it (uv, else pip), or ``fallback`` pins.

    ``ready()`` says whether the venv already holds what its server needs; together with the
    stamp it makes the call a no-op. Installs are serialized with a file lock, so two test
    sessions never install into one venv at once. Failures raise ``error`` naming ``what``.
    """
    digest = wanted_digest(lock, fallback)
    if stamp_matches(venv, digest) and ready():  # the stamp first: ready() starts the venv's python
        return
    with file_lock(venv.with_name(venv.name + ".lock")):
        if stamp_matches(venv, digest) and ready():  # another process did it meanwhile
            return
        out = subprocess.DEVNULL if quiet else None
        env = clean_python_env(os.environ)
        python = str(venv_python(venv))
        try:
            if not venv_python(venv).exists():
                run_setup(
                    [base_python(), "-m", "venv", str(venv)], env, out, f"create the {what} venv", error
                )
            uv = find_uv()
            if lock is not None and uv is not None:
                cmd = [
                    uv,
                    "pip",
                    "sync",
                    "--python",
                    python,
                    *local_wheel_args(),
                    str(lock),
                ]
                run_setup(cmd, env, out, f"uv pip sync {lock.name}", error)
            else:
                target = ["-r", str(lock)] if lock is not None else list(fallback)
                run_setup([python, "-m", "pip", "install", *target], env, out, f"pip install ({what})", error)
        except OSError as exc:
            raise error(f"could not set up the {what} venv {venv}: {exc}") from None
        if not ready():
            raise error(f"after installing, the {what} venv {venv} still lacks what its server needs")
        (venv / ".inkloop-lock").write_text(digest + "\n")


def python_output(python: Path, code: str) -> str | None:
    """What ``python -c code`` prints (stripped), or None when it fails, times out or prints nothing."""
    try:
        out = subprocess.run(
            [str(python), "-c", code],
            capture_output=True,
            text=True,
            timeout=120,
            env=clean_python_env(os.environ),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock, so two test sessions or scripts never install into one venv at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def base_python() -> str:
    """The interpreter to create a venv from: the one behind ours, so versions match."""
    return getattr(sys, "_base_executable", None) or sys.executable


def find_uv() -> str | None:
    """uv, which installs a locked set in seconds: ``$INKLOOP_UV``, the repo's bootstrap, or PATH."""
    for candidate in (os.environ.get("INKLOOP_UV"), str(repo_root() / ".venv-uv" / "bin" / "uv")):
        if candidate and Path(candidate).is_file():
            return candidate
    return shutil.which("uv")


def local_wheel_args() -> list[str]:
    """``--find-links`` for the machine's local wheel folders (uv ignores pip's configuration)."""
    folders = os.environ.get("INKLOOP_FIND_LINKS", "")  # colon-separated; the Makefile sets it
    return [arg for d in folders.split(":") if d and Path(d).is_dir() for arg in ("--find-links", d)]


def run_setup(cmd: list[str], env: dict[str, str], out: Any, what: str, error: type[Exception]) -> None:
    try:
        result = subprocess.run(cmd, env=env, stdout=out, stderr=out, check=False)
    except OSError as exc:
        raise error(f"could not {what}: {exc}") from None
    if result.returncode != 0:
        raise error(f"could not {what} (exit code {result.returncode}); see the output above")


def clean_python_env(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without what would make another venv's python import our packages, nor stop it
    caching its bytecode (the private venvs are installed without it: module docstring)."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__", "PYTHONDONTWRITEBYTECODE"}
    return {k: v for k, v in environ.items() if k not in drop}

"""The Triton server's own venv: PyTriton's tritonserver needs numpy < 2 (with numpy 2 it answers,
wrongly), the SDK's OpenCV needs numpy >= 2. Synced from ``requirements/triton.lock`` with uv when
the checkout has it, else ``pip install`` of ``requirements/triton.in``'s pins (:data:`PINS`)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from inkloop.devservers.labelstudio.settings import SetupError
from inkloop.devservers.labelstudio.venv import (
    _base_python,
    _clean_python_env,
    _file_lock,
    _local_wheel_args,
    _run_setup,
    _uv,
    python_output,
)
from inkloop.review.labeling import repo_root

PYTRITON_VERSION = "0.7.0"
#: What the server needs when there is no lock (a pip-installed inkloop): requirements/triton.in.
PINS = [
    f"nvidia-pytriton=={PYTRITON_VERSION}",
    "numpy==1.26.4",
    "onnxruntime==1.30.0",
    "opencv-python-headless==4.11.0.86",
    "pillow>=10",
    "pymupdf>=1.24",
    "fsspec>=2024.3",
    "pyyaml>=6",
]


def default_venv() -> Path:
    env = os.environ.get("INKLOOP_TRITON_VENV")
    return Path(env).resolve() if env else repo_root() / ".venv-triton"


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def lock_file() -> Path | None:
    path = repo_root() / "requirements" / "triton.lock"
    return path if path.is_file() else None


def _stamp(venv: Path) -> Path:
    return venv / ".inkloop-lock"


def _wanted() -> str:
    lock = lock_file()
    return hashlib.sha256(lock.read_bytes() if lock else "\n".join(PINS).encode()).hexdigest()


def installed_version(venv: Path) -> str | None:
    python = venv_python(venv)
    if not python.exists():
        return None
    code = "import importlib.metadata as m, numpy; print(m.version('nvidia-pytriton'), numpy.__version__)"
    parts = (python_output(python, code) or "").split()
    if len(parts) != 2 or not parts[1].startswith("1."):
        return None  # no PyTriton, or numpy 2 (trap: the server answers wrongly)
    return parts[0]


def ensure_venv(venv: Path | None = None, *, quiet: bool = False) -> Path:
    """Make ``venv`` hold PyTriton and numpy < 2; a no-op when it already matches the lock."""
    venv = (venv or default_venv()).resolve()

    def ready() -> bool:
        stamp = _stamp(venv)
        return (
            installed_version(venv) == PYTRITON_VERSION
            and stamp.is_file()
            and stamp.read_text().strip() == _wanted()
        )

    if ready():
        return venv
    with _file_lock(venv.with_name(venv.name + ".lock")):
        if ready():
            return venv
        out = subprocess.DEVNULL if quiet else None
        env = _clean_python_env(os.environ)
        try:
            if not venv_python(venv).exists():
                _run_setup([_base_python(), "-m", "venv", str(venv)], env, out, "create the Triton venv")
            lock, uv = lock_file(), _uv()
            if lock is not None and uv is not None:
                cmd = [uv, "pip", "sync", "--python", str(venv_python(venv)), *_local_wheel_args(), str(lock)]
                _run_setup(cmd, env, out, f"uv pip sync {lock.name}")
            else:
                target = ["-r", str(lock)] if lock is not None else PINS
                _run_setup([str(venv_python(venv)), "-m", "pip", "install", *target], env, out, "pip install")
        except OSError as exc:
            raise SetupError(f"could not set up the Triton venv {venv}: {exc}") from None
        if installed_version(venv) != PYTRITON_VERSION:
            raise SetupError(
                f"after installing, {venv} lacks nvidia-pytriton {PYTRITON_VERSION} with numpy < 2"
            )
        _stamp(venv).write_text(_wanted() + "\n")
    return venv

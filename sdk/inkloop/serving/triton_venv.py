"""The Triton server's own venv: PyTriton's tritonserver needs numpy < 2 (with numpy 2 it answers,
wrongly), the SDK's OpenCV needs numpy >= 2. Synced from ``requirements/triton.lock`` with uv when
the checkout has it, else ``pip install`` of ``requirements/triton.in``'s pins (:data:`PINS`)."""

from __future__ import annotations

import os
from pathlib import Path

from inkloop.review.labeling import repo_root
from inkloop.serving.venvs import lock_file, python_output, sync_venv, venv_python


class TritonSetupError(RuntimeError):
    """The Triton server's venv could not be created or installed."""


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
    sync_venv(
        venv,
        lock=lock_file("triton"),
        fallback=PINS,
        ready=lambda: installed_version(venv) == PYTRITON_VERSION,
        error=TritonSetupError,
        what="Triton",
        quiet=quiet,
    )
    return venv

"""Label Studio's own venv (it pins Django and friends): created beside the checkout and synced
from ``requirements/labelstudio.lock`` (:mod:`inkloop.serving.venvs`); a pip-installed inkloop
has no lock and installs ``label-studio==LABEL_STUDIO_VERSION``."""

from __future__ import annotations

from pathlib import Path

from inkloop.devservers.labelstudio.settings import LABEL_STUDIO_VERSION, SetupError, default_venv
from inkloop.serving.venvs import lock_file, python_output, sync_venv, venv_python


def installed_version(venv: Path | None = None) -> str | None:
    """The Label Studio version importable in ``venv``, or None (no venv, broken install)."""
    python = venv_python(venv or default_venv())
    if not python.exists():
        return None
    return python_output(python, "import label_studio; print(label_studio.__version__)")


def ensure_venv(
    venv: Path | None = None, version: str = LABEL_STUDIO_VERSION, *, quiet: bool = False
) -> Path:
    """Make ``venv`` hold ``label-studio==version``; idempotent, a no-op when it already does.

    Raises :class:`SetupError` (the caller decides whether that fails a test run: it should) when
    the venv cannot be created or the install does not end with the right version importable.
    """
    venv = (venv or default_venv()).resolve()
    sync_venv(
        venv,
        lock=lock_file("labelstudio"),
        fallback=[f"label-studio=={version}"],
        ready=lambda: installed_version(venv) == version,
        error=SetupError,
        what="Label Studio",
        quiet=quiet,
    )
    return venv

"""Private venvs for the local servers: :mod:`inkloop.serving.venvs` holds them (``inkloop serve``
syncs the Triton venv, and a user command does not depend on ``devservers``); the names stay
importable here for the scripts and tests that import them from where they were."""

from inkloop.serving.venvs import clean_python_env, lock_file, python_output, sync_venv, venv_python

__all__ = ["clean_python_env", "lock_file", "python_output", "sync_venv", "venv_python"]

"""A local Triton server for a model reference: its venv, start, readiness, stop.

``inkloop serve`` is a user command, so the Triton server lives with serving
(:mod:`inkloop.serving.launcher`, :mod:`inkloop.serving.triton_venv`); the names stay importable
here, beside the other local servers, for the tests and scripts that start one.
"""

from inkloop.serving.launcher import TritonServer, TritonStartError
from inkloop.serving.triton_venv import PINS, ensure_venv

__all__ = ["PINS", "TritonServer", "TritonStartError", "ensure_venv"]

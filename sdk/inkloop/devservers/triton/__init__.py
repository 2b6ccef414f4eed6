"""A local Triton server (PyTriton) for a model reference: its venv, start, readiness, stop.

Used by ``inkloop serve`` and the tests; the server process itself is
:mod:`inkloop.serving.triton_server`.
"""

from inkloop.devservers.triton.server import TritonServer, TritonStartError
from inkloop.devservers.triton.venv import ensure_venv

__all__ = ["TritonServer", "TritonStartError", "ensure_venv"]

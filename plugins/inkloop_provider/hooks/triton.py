"""A Triton connection: the server in ``host`` (``http://host:8000`` or ``grpc://host:8001``), the
model name in ``schema`` (default: the bundled model's name), an optional token in ``password``.

Operators turn it into a ``triton://`` model reference; the token is handed to the SDK through
the task process's environment (``INKLOOP_TRITON_TOKEN``), never written into the reference.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from airflow.sdk import BaseHook


class TritonHook(BaseHook):
    """Gives operators a ``triton://`` model reference and the token to send with it."""

    hook_name = "NVIDIA Triton (inkloop)"
    conn_type = "triton"
    conn_name_attr = "triton_conn_id"
    default_conn_name = "triton_default"

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["login", "extra"],
            "relabeling": {"host": "Server URL", "schema": "Model name", "password": "Token (optional)"},
            "placeholders": {"host": "http://127.0.0.1:8000", "schema": "signature-detector"},
        }

    def __init__(self, triton_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.triton_conn_id = triton_conn_id

    def get_model_ref(self, model: str | None = None) -> tuple[str, str | None]:
        """(``triton://host:port/model`` or ``triton+grpc://…``, token or None)."""
        conn = self.get_connection(self.triton_conn_id)
        host = (conn.host or "").rstrip("/")
        if not host:
            raise ValueError(f"connection {self.triton_conn_id!r} needs a host (the Triton server URL)")
        parts = urlsplit(host if "://" in host else f"http://{host}")
        netloc = parts.netloc if parts.port or not conn.port else f"{parts.hostname}:{conn.port}"
        name = model or conn.schema or "signature-detector"
        scheme = "triton+grpc" if parts.scheme == "grpc" else "triton"
        return f"{scheme}://{netloc}/{name}", conn.password or None

    @contextlib.contextmanager
    def token_in_environment(self, token: str | None) -> Iterator[None]:
        from inkloop.detection.triton_backend import TOKEN_ENV

        old = os.environ.get(TOKEN_ENV)
        if token:
            os.environ[TOKEN_ENV] = token
        try:
            yield
        finally:
            if old is None:
                os.environ.pop(TOKEN_ENV, None)
            else:
                os.environ[TOKEN_ENV] = old

    def get_conn(self) -> Any:
        from inkloop.detection.triton_backend import TritonSession

        ref, token = self.get_model_ref()
        return TritonSession(ref, token=token)

    def test_connection(self) -> tuple[bool, str]:
        """The UI's Test button: the model's card read from the server."""
        try:
            session = self.get_conn()
            return True, f"Triton serves {session.card.model_version}"
        except Exception as exc:
            msg = str(exc)
            with contextlib.suppress(Exception):
                _, token = self.get_model_ref()
                if token:
                    msg = msg.replace(token, "***")
            return False, msg

"""A Label Studio connection: URL in ``host`` (with port), API token in ``password``.

The token is a Personal Access Token (what Label Studio 1.23 gives new users; legacy tokens are
off by default) or, where the organisation still allows them, a legacy token: label-studio-sdk
tells them apart and authenticates either (a PAT is exchanged for short-lived access tokens), and
the SDK's hand-made calls use the same rule (:mod:`inkloop.review.auth`). The token lives in
Airflow's connection store (or a secrets backend), never in DAG code, and is never logged: errors
carry the server's own text with the token redacted.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook


class LabelStudioHook(BaseHook):
    """Gives operators a ready ``inkloop.review.labelstudio.LabelStudioClient`` (or the raw SDK client)."""

    conn_name_attr = "labelstudio_conn_id"
    default_conn_name = "labelstudio_default"
    conn_type = "labelstudio"
    hook_name = "Label Studio"

    def __init__(self, labelstudio_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.labelstudio_conn_id = labelstudio_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["schema", "login", "port", "extra"],
            "relabeling": {"host": "Label Studio URL", "password": "API token"},
            "placeholders": {
                "host": "http://127.0.0.1:8080",
                "password": "personal access token (or a legacy token, where allowed)",
            },
        }

    def get_url_and_token(self) -> tuple[str, str]:
        conn = self.get_connection(self.labelstudio_conn_id)
        host = (conn.host or "").rstrip("/")
        if host and "://" not in host:
            host = f"{conn.schema or 'http'}://{host}"
        if conn.port and f":{conn.port}" not in host:
            host = f"{host}:{conn.port}"
        if not host or not conn.password:
            raise ValueError(
                f"connection {self.labelstudio_conn_id!r} needs a host (URL) and a password (API token)"
            )
        return host, conn.password

    def get_conn(self, timeout: float | None = None) -> Any:
        from label_studio_sdk import LabelStudio

        url, token = self.get_url_and_token()
        return LabelStudio(base_url=url, api_key=token, timeout=timeout)

    def test_connection(self) -> tuple[bool, str]:
        """Called by the UI's Test button: one authenticated request (``whoami``, through
        label-studio-sdk, which exchanges a PAT itself); the answer names the user, a refusal
        carries the server's reason; the token is never echoed."""
        from inkloop.review.auth import describe_error, token_kind

        try:
            url, token = self.get_url_and_token()
        except Exception as exc:
            return False, str(exc)
        kind = token_kind(token)
        try:
            user = self.get_conn(timeout=10).users.whoami()
        except Exception as exc:
            msg = describe_error(exc).replace(token, "***")
            return False, f"Label Studio at {url}: checking the connection's {kind} failed: {msg}"
        return True, f"Label Studio at {url} accepts the connection's {kind} (user {user.email})"

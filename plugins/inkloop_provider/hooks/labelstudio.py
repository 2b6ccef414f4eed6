"""A Label Studio connection: URL in ``host`` (with port), API token in ``password``.

The token lives in Airflow's connection store (or a secrets backend), never in DAG code, and
is never logged: errors are re-raised with the token redacted.
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
                "password": "legacy token or personal access token",
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

    def get_conn(self) -> Any:
        from label_studio_sdk import LabelStudio

        url, token = self.get_url_and_token()
        return LabelStudio(base_url=url, api_key=token)

    def test_connection(self) -> tuple[bool, str]:
        """Called by the UI's Test button: one authenticated request, token never echoed."""
        try:
            url, token = self.get_url_and_token()
            import urllib.request

            req = urllib.request.Request(
                f"{url}/api/projects?page_size=1", headers={"Authorization": f"Token {token}"}
            )
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status == 200, f"Label Studio answered {resp.status}"
        except Exception as exc:
            msg = str(exc)
            try:
                _, token = self.get_url_and_token()
                msg = msg.replace(token, "***")
            except Exception:
                pass
            return False, msg

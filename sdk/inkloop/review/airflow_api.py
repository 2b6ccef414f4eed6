"""The few Airflow REST calls the annotator's side makes: trigger a DAG run, publish an Asset event.

Why REST and not an import of Airflow: the ML backend (:mod:`inkloop.review.backend`) runs beside
Label Studio, often on another machine than Airflow and without Airflow installed; Airflow 3's
public API (``/api/v2``) is the supported way in from outside. Authentication: a JWT from the
API server's ``/auth/token`` (``POST`` with a user name and password, or ``GET`` where the simple
auth manager makes every user an admin: local deployments), or a token given as is (a deployment
behind its own identity provider hands one out). A 401 mints the token again once (JWTs expire).
Through inkloop's one HTTP client (:func:`inkloop.net.http_request`, standard library only), like
:mod:`inkloop.review.auth`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from inkloop.net import http_request

log = logging.getLogger(__name__)

#: Environment variables the backend's Airflow settings come from (the CLI's options too).
ENV_URL, ENV_USER, ENV_PASSWORD, ENV_TOKEN = (
    "INKLOOP_AIRFLOW_URL",
    "INKLOOP_AIRFLOW_USER",
    "INKLOOP_AIRFLOW_PASSWORD",
    "INKLOOP_AIRFLOW_TOKEN",
)


class AirflowAPIError(RuntimeError):
    """Airflow's API refused a call or could not be reached; carries Airflow's own text, never a secret."""


@dataclass
class AirflowAPI:
    """An Airflow 3 API server at ``url`` (``http://host:8080``), with its credentials."""

    url: str
    username: str | None = None
    password: str | None = None
    token: str | None = None
    timeout: float = 10.0
    _jwt: str | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")

    def __repr__(self) -> str:  # never the password or a token
        return f"AirflowAPI(url={self.url!r}, user={self.username!r})"

    @classmethod
    def from_env(cls, url: str | None = None) -> AirflowAPI | None:
        """The Airflow named by ``url`` or ``$INKLOOP_AIRFLOW_URL`` (None if neither), with the
        credentials of ``$INKLOOP_AIRFLOW_USER``/``_PASSWORD`` or ``$INKLOOP_AIRFLOW_TOKEN``."""
        url = url or os.environ.get(ENV_URL)
        if not url:
            return None
        return cls(
            url,
            username=os.environ.get(ENV_USER) or None,
            password=os.environ.get(ENV_PASSWORD) or None,
            token=os.environ.get(ENV_TOKEN) or None,
        )

    # -- plumbing --------------------------------------------------------------------------------
    def _redact(self, text: str) -> str:
        for secret in (self.password, self.token, self._jwt):
            if secret:
                text = text.replace(secret, "***")
        return text

    def _send(self, method: str, path: str, body: Any = None, bearer: str | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        try:
            answer = http_request(
                f"{self.url}{path}", method=method, data=data, headers=headers, timeout=self.timeout
            )
            if answer.status < 400:
                return answer.status, answer.json()
        except (OSError, ValueError) as exc:  # refused, timed out, not JSON
            raise AirflowAPIError(
                self._redact(f"Airflow at {self.url}: {method} {path} failed: {type(exc).__name__}: {exc}")
            ) from None
        try:  # an error: Airflow's own text for it
            detail: Any = json.loads(answer.body)
        except ValueError:  # an empty body too
            detail = answer.body.decode(errors="replace")[:300]
        return answer.status, detail

    def _mint(self) -> str:
        if self.token:
            return self.token
        if self.username and self.password:
            status, body = self._send(
                "POST", "/auth/token", {"username": self.username, "password": self.password}
            )
        else:  # the simple auth manager with every user an admin (local deployments)
            status, body = self._send("GET", "/auth/token")
        token = body.get("access_token") if isinstance(body, dict) else None
        if status >= 400 or not token:
            raise AirflowAPIError(
                self._redact(f"Airflow at {self.url}: no API token from /auth/token: HTTP {status}: {body}")
            )
        return str(token)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One authenticated ``/api/v2`` call; a 401 mints the token once more (it may have expired)."""
        with self._lock:
            if self._jwt is None:
                self._jwt = self._mint()
            jwt = self._jwt
        status, answer = self._send(method, f"/api/v2{path}", body, jwt)
        if status == 401 and not self.token:
            with self._lock:
                self._jwt = self._mint()
                jwt = self._jwt
            status, answer = self._send(method, f"/api/v2{path}", body, jwt)
        if status >= 400:
            detail = answer.get("detail", answer) if isinstance(answer, dict) else answer
            raise AirflowAPIError(
                self._redact(f"Airflow at {self.url}: {method} /api/v2{path} failed: HTTP {status}: {detail}")
            )
        return answer

    # -- what the backend asks for ---------------------------------------------------------------
    def trigger_dag(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Start a run of ``dag_id`` now (unpausing it first: a paused DAG would queue it forever);
        returns the run id."""
        quoted = urllib.parse.quote(dag_id, safe="")
        self.call("PATCH", f"/dags/{quoted}", {"is_paused": False})
        run = self.call("POST", f"/dags/{quoted}/dagRuns", {"logical_date": None, "conf": dict(conf or {})})
        return str(run["dag_run_id"])

    def asset_id(self, name: str) -> int:
        """The id of the Asset called ``name`` (Airflow knows it once a DAG that uses it is parsed)."""
        found = self.call("GET", f"/assets?name_pattern={urllib.parse.quote(name)}&limit=100")
        for asset in (found or {}).get("assets", []):
            if asset.get("name") == name:
                return int(asset["id"])
        raise AirflowAPIError(
            f"Airflow at {self.url}: no Asset named {name!r} (is the DAG that uses it deployed and parsed?)"
        )

    def publish_asset_event(self, name: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Publish an event of the Asset ``name`` (``POST /api/v2/assets/events``): the DAGs
        scheduled on it start as if a task had updated it."""
        event = self.call(
            "POST", "/assets/events", {"asset_id": self.asset_id(name), "extra": dict(extra or {})}
        )
        return event if isinstance(event, dict) else {}

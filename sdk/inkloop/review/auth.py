"""Authenticating to Label Studio: one mechanism for both kinds of API token, and its error texts.

Why this module exists: Label Studio 1.23 gives a new organisation **Personal Access Tokens**
(PATs) only; legacy tokens are off unless an admin turns them on. A PAT is a JWT *refresh*
token: it is never sent as such, but exchanged at ``POST /api/token/refresh/`` for a short-lived
access token that goes out as ``Authorization: Bearer …`` (and is exchanged again when it
expires, or when the server answers 401). A legacy token (any string that is not a JWT) goes out
as ``Authorization: Token …`` and works only where the organisation still allows legacy tokens.
Sending a PAT as ``Token …`` gets ``401 Invalid token.``: the bug this module replaced.

label-studio-sdk does the exchange for its own calls, and the review stage uses it wherever it
has the call. What it has no call for (the multipart page upload, the dev server's readiness
check) goes through :class:`LabelStudioAuth` here, so there is one implementation of the rule;
the Airflow provider's hook imports it from here too. Its calls go through inkloop's one HTTP
client (:func:`inkloop.net.http_request`, standard library only): the dev server's scripts and
readiness check run it without label-studio-sdk or httpx.

Every error carries the server's own text (``"Invalid token."``, ``"Token is invalid"``, ``"…
legacy token authentication has been disabled for this organization"``), never ``HTTP 401:
None``, and never the token itself.
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
import time
import urllib.parse
import uuid
from collections.abc import Mapping
from typing import Any

from inkloop.net import Answer, http_request

REFRESH_PATH = "/api/token/refresh/"
WHOAMI_PATH = "/api/current-user/whoami"
_EXPIRY_MARGIN = 30.0  # seconds: exchange again a little before the access token's own expiry


class ReviewServiceError(RuntimeError):
    """Label Studio could not be reached or refused a request (after retries). Never carries the token."""


class LabelStudioHTTPError(ReviewServiceError):
    """Label Studio answered an HTTP error; ``detail`` is the server's own text for it."""

    def __init__(self, message: str, status: int, detail: str) -> None:
        super().__init__(message)
        self.status = status
        self.status_code = status  # the name label-studio-sdk's ApiError uses (retry decisions)
        self.detail = detail


def jwt_claims(token: str) -> dict[str, Any] | None:
    """The claims of a JWT, read without checking its signature (the server checks it); None for
    anything that is not a JWT, such as a legacy token."""
    parts = token.strip().split(".")
    if len(parts) != 3 or not all(parts):
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, binascii.Error):
        return None
    return claims if isinstance(claims, dict) else None


def is_personal_access_token(token: str) -> bool:
    """Whether ``token`` is a Personal Access Token (a JWT refresh token), not a legacy token."""
    claims = jwt_claims(token)
    return claims is not None and claims.get("token_type") == "refresh"


def token_kind(token: str) -> str:
    """ "personal access token" or "legacy token": for messages that must not show the token."""
    return "personal access token" if is_personal_access_token(token) else "legacy token"


def server_detail(body: Any, limit: int = 300) -> str:
    """The server's own explanation from an error body (Label Studio puts it in ``detail``, form
    errors in ``validation_errors``); the raw text, shortened, when it is not such JSON."""
    if isinstance(body, bytes | bytearray):
        body = body.decode("utf-8", errors="replace")
    if isinstance(body, str):
        text = body.strip()
        try:
            body = json.loads(text)
        except ValueError:
            if text.lower().startswith(("<!doctype", "<html")):
                return "an HTML page instead of an API answer (is the URL Label Studio's?)"
            return text[:limit] or "(empty answer)"
    if isinstance(body, dict):
        said = [_flatten(body[key]) for key in ("detail", "error", "message") if body.get(key)]
        if body.get("validation_errors"):  # "Validation error" alone says nothing: add what failed
            said.append(_flatten(body["validation_errors"]))
        if said:
            return ": ".join(said)[:limit]
    if body is None:
        return "(empty answer)"
    return json.dumps(body, ensure_ascii=False)[:limit]


def _flatten(value: Any) -> str:
    """The texts in a (nested) error value: ``{"file": ["bad"]}`` → ``file: bad``."""
    if isinstance(value, dict):
        return "; ".join(
            f"{k}: {_flatten(v)}" if k != "non_field_errors" else _flatten(v) for k, v in value.items()
        )
    if isinstance(value, list | tuple):
        return "; ".join(_flatten(v) for v in value)
    return str(value)


def describe_error(exc: BaseException) -> str:
    """One line for any error of a Label Studio call: ``HTTP <status>: <the server's text>`` for an
    HTTP answer (label-studio-sdk's ``ApiError`` keeps the body in ``.body``, httpx's errors in
    ``.response``), ``<ErrorType>: <reason>`` when nothing answered."""
    if isinstance(exc, LabelStudioHTTPError):
        return f"HTTP {exc.status}: {exc.detail}"
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        body = getattr(exc, "body", None)
        response = getattr(exc, "response", None)
        if body is None and response is not None:
            body = getattr(response, "content", None)
        return f"HTTP {status}: {server_detail(body)}"
    reason = getattr(exc, "reason", None)  # urllib's URLError wraps the socket error
    return f"{type(exc).__name__}: {reason if reason is not None else exc}"


def multipart(
    field_name: str, filename: str, content: bytes, content_type: str | None = None
) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body with one file (Label Studio's upload takes nothing else);
    returns (body, the Content-Type header with its boundary)."""
    boundary = f"inkloop-{uuid.uuid4().hex}"
    kind = content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
    safe_name = filename.replace('"', "_").replace("\r", "_").replace("\n", "_")
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field_name}"; '
        f'filename="{safe_name}"\r\nContent-Type: {kind}\r\n\r\n'
    ).encode()
    return head + content + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class LabelStudioAuth:
    """Authenticated HTTP calls to one Label Studio server with one API token.

    A PAT is exchanged for an access token on first use and again before it expires or after a
    401 (the server may have restarted with a new signing key, or the access token been cut
    short); a legacy token is sent as is. Thread-compatible, not thread-safe: one per client.
    The token stays out of ``repr`` and of every message.
    """

    def __init__(self, url: str, token: str, *, timeout: float = 30.0) -> None:
        if not token:
            raise ValueError("no Label Studio API token given")
        self.url = url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self.personal = is_personal_access_token(token)
        self._access: str | None = None
        self._access_expires = 0.0
        self.exchanges = 0  # how many times the PAT was exchanged (tests, diagnostics)

    def __repr__(self) -> str:
        return f"LabelStudioAuth(url={self.url!r}, {token_kind(self._token)})"

    @property
    def kind(self) -> str:
        return token_kind(self._token)

    def redact(self, text: str) -> str:
        """``text`` with the token (and the access token of the moment) replaced by ``***``."""
        for secret in (self._token, self._access):
            if secret:
                text = text.replace(secret, "***")
        return text

    def exchange(self) -> str:
        """Exchange the PAT for a fresh access token (``POST /api/token/refresh/``)."""
        answer = self._send(
            "POST",
            REFRESH_PATH,
            json.dumps({"refresh": self._token}).encode(),
            {"Content-Type": "application/json"},
        )
        try:
            access = (answer.json() or {}).get("access") if answer.status == 200 else None
        except (ValueError, AttributeError):  # not Label Studio's JSON (a proxy's page)
            access = None
        if not access:
            raise self._error(
                "exchanging the personal access token (POST /api/token/refresh/)",
                answer,
                hint="create a new token in Label Studio (Account & Settings → Personal Access Token)",
            )
        self.exchanges += 1
        claims = jwt_claims(access) or {}
        self._access = str(access)
        exp = claims.get("exp")
        lifetime = float(exp) - time.time() if isinstance(exp, int | float) else 300.0
        self._access_expires = time.monotonic() + max(0.0, lifetime - _EXPIRY_MARGIN)
        return self._access

    def headers(self) -> dict[str, str]:
        """The ``Authorization`` header to send now (exchanging the PAT first when needed)."""
        if not self.personal:
            return {"Authorization": f"Token {self._token}"}
        if self._access is None or time.monotonic() >= self._access_expires:
            self.exchange()
        return {"Authorization": f"Bearer {self._access}"}

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        content_type: str | None = None,
        check: bool = True,
    ) -> Answer:
        """One authenticated call; with a PAT, a 401 gets one fresh exchange and one retry.

        Raises :class:`LabelStudioHTTPError` (the server's text in it) for an HTTP error when
        ``check``, and ``OSError`` (``URLError``, timeouts) when nothing answers.
        """
        if params:
            path = f"{path}{'&' if '?' in path else '?'}{urllib.parse.urlencode(params)}"
        extra: dict[str, str] = {}
        if json_body is not None:
            data, content_type = json.dumps(json_body).encode(), "application/json"
        if content_type:
            extra["Content-Type"] = content_type
        exchanged = self.exchanges
        answer = self._send(method, path, data, {**extra, **self.headers()})
        if answer.status == 401 and self.personal and self.exchanges == exchanged:  # not a fresh one
            self.exchange()
            answer = self._send(method, path, data, {**extra, **self.headers()})
        if check and answer.status >= 400:
            raise self._error(f"{method} {path.split('?')[0]}", answer)
        return answer

    def whoami(self) -> dict[str, Any]:
        """The token's user (``GET /api/current-user/whoami``): the cheapest proof the token works."""
        user = self.request("GET", WHOAMI_PATH).json()
        return user if isinstance(user, dict) else {}

    def _send(self, method: str, path: str, data: bytes | None, headers: Mapping[str, str]) -> Answer:
        return http_request(
            f"{self.url}{path}", method=method, data=data, headers=headers, timeout=self.timeout
        )

    def _error(self, what: str, answer: Answer, hint: str = "") -> LabelStudioHTTPError:
        detail = self.redact(server_detail(answer.body))
        message = f"Label Studio at {self.url}: {what} failed: HTTP {answer.status}: {detail}"
        if answer.status in (401, 403):
            message += f" (with a {self.kind}{'; ' + hint if hint else ''})"
        return LabelStudioHTTPError(message, answer.status, detail)

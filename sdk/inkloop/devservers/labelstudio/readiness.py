"""Waiting until a started server answers, with the token checked; secrets kept out of messages.

The token check is a hand-made call, so it goes through the review stage's one authentication
helper (:class:`inkloop.review.auth.LabelStudioAuth`): a Personal Access Token is exchanged and sent
as ``Bearer``, a legacy token as ``Token``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from inkloop.devservers.labelstudio.settings import READY_TIMEOUT, ServerNotReadyError, TokenRejectedError
from inkloop.devservers.spawn import log_tail
from inkloop.net import http_request
from inkloop.retry import wait_until
from inkloop.review.auth import WHOAMI_PATH as WHOAMI
from inkloop.review.auth import LabelStudioAuth, LabelStudioHTTPError


def _redact(text: str, secrets: Sequence[str | None]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def wait_ready(
    url: str,
    timeout: float = READY_TIMEOUT,
    *,
    token: str | None = None,
    process: subprocess.Popen[bytes] | None = None,
    log_file: Path | None = None,
    interval: float = 0.5,
) -> None:
    """Block until ``url``'s ``/health/`` answers ``UP`` (and ``token`` is accepted, if given).

    Raises :class:`ServerNotReadyError` on timeout or when ``process`` exits first (its log tail
    included, token redacted), and :class:`TokenRejectedError` when the server refuses the token.
    No message ever contains the token, nor a raw urllib error that might echo request headers.
    """
    base = url.rstrip("/")
    last_problem = "no answer yet"

    def up() -> bool:
        nonlocal last_problem
        try:
            answer = http_request(f"{base}/health/", timeout=min(5.0, max(timeout, 0.1)))
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            last_problem = f"{type(exc).__name__}: {_redact(str(reason), [token])}"
            return False
        if answer.status == 200 and b"UP" in answer.body:
            return True
        last_problem = f"/health/ answered HTTP {answer.status}"
        return False

    def exited() -> bool:
        return process is not None and process.poll() is not None

    if not wait_until(up, timeout, interval=interval, give_up=exited):
        if exited():
            assert process is not None
            tail = _redact(log_tail(log_file), [token])
            raise ServerNotReadyError(
                f"Label Studio exited with code {process.returncode} before {base} was ready"
                + (f"; last lines of {log_file}:\n{tail}" if tail else "")
            )
        raise ServerNotReadyError(f"Label Studio at {base} not ready after {timeout:.0f} s ({last_problem})")
    if token is not None:
        check_token(base, token)


def check_token(url: str, token: str, *, timeout: float = 30.0) -> str:
    """Prove ``token`` (a Personal Access Token or a legacy token) works: ``whoami`` through the
    one authentication helper. Returns the user's e-mail; raises :class:`TokenRejectedError` with
    the server's own reason when it is refused, never with the token."""
    base = url.rstrip("/")
    auth = LabelStudioAuth(base, token, timeout=timeout)
    try:
        return str(auth.whoami().get("email", ""))
    except LabelStudioHTTPError as exc:
        if exc.status in (401, 403):
            raise TokenRejectedError(
                f"Label Studio at {base} rejects the {auth.kind} (HTTP {exc.status}: {exc.detail}); was "
                "its data dir initialised with other credentials? Use a fresh data dir or the matching token."
            ) from None
        raise ServerNotReadyError(
            f"Label Studio at {base}: {WHOAMI} gave HTTP {exc.status}: {exc.detail}"
        ) from None
    except OSError as exc:
        raise ServerNotReadyError(
            f"Label Studio at {base} stopped answering ({type(exc).__name__})"
        ) from None

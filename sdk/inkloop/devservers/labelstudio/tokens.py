"""The admin's Personal Access Token of a dev server: minted once per data dir, kept in it.

Why: Label Studio 1.23 runs here with its defaults, so legacy tokens are off and the only API
token is a Personal Access Token (a JWT refresh token), which Label Studio mints itself and no
setting can choose. We mint it the way the UI's "Create New Token" button does (log in with the
admin's e-mail and password, then ``POST /api/token/`` with that session): a real, documented
path, about half a second on a running server. The token is written to
``<data dir>/personal-access-token`` (mode 0600), so later starts, the template copies (same
database, same signing key in the data dir's ``.env``) and ``labeling/token.sh`` reuse it.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import os
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from inkloop.devservers.labelstudio.settings import (
    TOKEN_FILE_NAME,
    LabelStudioServerError,
    TokenRejectedError,
)
from inkloop.net import Answer, http_request
from inkloop.review.auth import is_personal_access_token, server_detail


def token_file(data_dir: Path) -> Path:
    return data_dir / TOKEN_FILE_NAME


def read_token(data_dir: Path) -> str | None:
    """The data dir's saved Personal Access Token, or None (never minted, unreadable, not a PAT)."""
    try:
        token = token_file(data_dir).read_text().strip()
    except OSError:
        return None
    return token if is_personal_access_token(token) else None


def save_token(data_dir: Path, token: str) -> Path:
    """Write the token readable by its owner only (created 0600, never briefly world-readable)."""
    path = token_file(data_dir)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def _csrf(jar: http.cookiejar.CookieJar) -> str:
    for cookie in jar:
        if cookie.name == "csrftoken" and cookie.value:
            return cookie.value
    raise LabelStudioServerError("Label Studio's login page set no CSRF cookie")


def mint_personal_access_token(url: str, username: str, password: str, *, timeout: float = 30.0) -> str:
    """Log in as ``username`` and create its Personal Access Token (``POST /api/token/``), as the UI does.

    Label Studio allows one live token per user: if the user already has one that was not kept
    (the data dir's token file deleted), this raises with what to do rather than revoking a
    token someone may be using.
    """
    base = url.rstrip("/")
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    login = f"{base}/user/login/"

    def send(target: str, **kwargs: Any) -> Answer:
        answer = http_request(target, opener=opener, timeout=timeout, **kwargs)
        if answer.status == 409:
            raise LabelStudioServerError(
                f"Label Studio at {base}: {username} already has a Personal Access Token that inkloop "
                f"did not keep ({server_detail(answer.body)}). Revoke it in Label Studio (Account & "
                "Settings → Personal Access Token) and start again, or start on a fresh data dir."
            )
        if answer.status >= 400:
            raise LabelStudioServerError(
                f"Label Studio at {base}: creating the admin's Personal Access Token failed: "
                f"HTTP {answer.status}: {server_detail(answer.body)}"
            )
        return answer

    try:
        send(login)
        form = {"csrfmiddlewaretoken": _csrf(jar), "email": username, "password": password}
        answer = send(login, data=urllib.parse.urlencode(form).encode(), headers={"Referer": login})
        if answer.url.rstrip("/").endswith("/user/login"):  # the form again: no redirect, no login
            raise TokenRejectedError(
                f"Label Studio at {base} refused the admin login of {username}; was its data dir "
                "initialised with other credentials? Use a fresh data dir or the matching password."
            )
        headers = {"Content-Type": "application/json", "X-CSRFToken": _csrf(jar), "Referer": f"{base}/"}
        created = send(f"{base}/api/token/", method="POST", data=b"{}", headers=headers)
        token = (created.json() or {}).get("token", "")
    except (OSError, ValueError) as exc:
        raise LabelStudioServerError(
            f"Label Studio at {base}: creating the admin's Personal Access Token failed: {type(exc).__name__}"
        ) from None
    if not is_personal_access_token(token):
        raise LabelStudioServerError(f"Label Studio at {base}: POST /api/token/ gave no token")
    return str(token)


def ensure_token(url: str, data_dir: Path, username: str, password: str, *, timeout: float = 30.0) -> str:
    """The data dir's Personal Access Token: the saved one, else a new one minted and saved."""
    token = read_token(data_dir)
    if token is None:
        token = mint_personal_access_token(url, username, password, timeout=timeout)
        save_token(data_dir, token)
    return token

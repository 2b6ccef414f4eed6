"""The admin's Personal Access Token of a dev server: minted once per data dir, kept in it.

Why: Label Studio 1.23 runs here with its defaults, so legacy tokens are off and the only API
token is a Personal Access Token (a JWT refresh token), which Label Studio mints itself and no
setting can choose. We mint it the way the UI's "Create New Token" button does (log in with the
admin's e-mail and password, then ``POST /api/token/`` with that session): a real, documented
path, about half a second on a running server. The token is written to
``<data dir>/personal-access-token`` (mode 0600), so later starts, the template copies (same
database, same signing key in the data dir's ``.env``) and ``labeling/token.sh`` reuse it.

The token lives only as long as that signing key: :func:`ensure_signing_key` writes the key before
the data dir's first start, because the key Label Studio would write itself is lost at the next
start one time in fifty (see there).
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import os
import secrets
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from inkloop.devservers.labelstudio.settings import (
    ENV_FILE_NAME,
    SECRET_KEY_NAME,
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


def signing_key(data_dir: Path) -> str | None:
    """The ``SECRET_KEY`` of the data dir's ``.env`` as written (its first one: Label Studio's
    reader keeps the first), or None when there is no such line or no file."""
    try:
        text = (data_dir / ENV_FILE_NAME).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, sep, value = line.strip().removeprefix("export ").partition("=")
        if sep and name.strip() == SECRET_KEY_NAME:
            return value.strip()
    return None


def signing_key_is_readable(key: str | None) -> bool:
    """Whether Label Studio reads ``key`` back as written.

    Its reader (django-environ) takes a value starting with ``$`` for a reference to another
    variable: such a key reads as empty, Label Studio then makes and appends a new one at every
    start, and every token signed with the first is refused ("Token is invalid"). Django's key
    generator, which Label Studio uses, starts a key with ``$`` one time in fifty.
    """
    return key is not None and key != "" and not key.startswith("$")


def ensure_signing_key(data_dir: Path) -> None:
    """Give ``data_dir`` a ``SECRET_KEY`` Label Studio reads back, before its first start.

    A data dir that has one keeps it (its tokens were signed with it); a missing one is written
    from :func:`secrets.token_urlsafe` (letters, digits, ``-`` and ``_``: nothing the reader
    interprets), in a file only its owner can read. A data dir whose key cannot be read back has
    lost the key its tokens were signed with: that is an error naming the file, not a token
    refused later for no visible reason.
    """
    key = signing_key(data_dir)
    if key is None:
        fd = os.open(data_dir / ENV_FILE_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as f:
            f.write(f"\n{SECRET_KEY_NAME}={secrets.token_urlsafe(50)}\n")
        return
    if not signing_key_is_readable(key):
        raise LabelStudioServerError(
            f"{data_dir / ENV_FILE_NAME}: its {SECRET_KEY_NAME} starts with '$', which Label Studio reads "
            "as a reference to another variable and replaces at every start, so the tokens signed with "
            "it are refused. Start on a fresh data dir."
        )


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

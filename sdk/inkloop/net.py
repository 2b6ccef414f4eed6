"""The network as inkloop's own code uses it: which port is free, and the one HTTP client.

Ports: the local servers (Label Studio, MLflow, Triton, moto's S3, the Celery deployment) ask one
place which port is free, so every server answers the question the same way.

HTTP: inkloop's own calls (readiness probes, the token exchange, the Airflow REST API, MLflow's
health) go through :func:`http_request`, the standard library's ``urllib`` behind one function.
Why not httpx or requests: the base install carries neither (httpx comes with label-studio-sdk and
Airflow, requests with Airflow), and a probe or a handful of REST calls does not justify a new base
dependency; label-studio-sdk keeps its own httpx client for its calls. An HTTP error status is an
answer (the server's text is what the message needs), not an exception; nothing answering
(refused, timed out, a bad host) raises ``OSError``, as ``urllib`` does. Redirects are followed,
but one that leaves the host goes without the ``Authorization`` header (:class:`NoAuthAcrossHosts`):
a Label Studio token must not reach the bucket a presign link redirects to (a leak, and S3 refuses
a request signed twice); urllib on its own would send it along.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from typing import Any

HOST = "127.0.0.1"

__all__ = [
    "HOST",
    "Answer",
    "NoAuthAcrossHosts",
    "answers",
    "build_opener",
    "free_port",
    "http_request",
    "port_is_free",
]


def free_port(host: str = HOST) -> int:
    """A port the kernel considers free right now (bind to port 0), for tests and parallel runs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(port: int, host: str = HOST) -> bool:
    """True when a server would get ``port`` as asked, by a client's test and by the kernel's.

    Label Studio's own test is a connect to ``localhost:port``; servers then bind with
    SO_REUSEADDR. Both are mirrored, so a port in TIME_WAIT counts as free (it is) and a listener
    on any loopback address that would clash counts as busy.
    """
    for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(1.0)
                if s.connect_ex((addr, port)) == 0:
                    return False
        except OSError:
            pass  # no IPv6 on this machine
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class Answer:
    """An HTTP answer: status, headers and the raw body (an error status is an answer too);
    ``url``: the one that answered, after redirects (a login form that comes back is a refusal)."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    url: str = ""

    def json(self) -> Any:
        """The body as JSON (None for an empty body); ``ValueError`` when it is not JSON."""
        return json.loads(self.body) if self.body else None


class NoAuthAcrossHosts(urllib.request.HTTPRedirectHandler):
    """Follow a redirect without the ``Authorization`` header when it leaves the host.

    Label Studio answers a presign link with a 303 to a presigned bucket URL. urllib would send
    our Label Studio token along: a leak to another host, and S3 refuses a request that carries
    both a header and a query-string signature ("Only one auth mechanism allowed")."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            old_host = urllib.parse.urlsplit(req.full_url).netloc
            if urllib.parse.urlsplit(newurl).netloc != old_host:
                new.remove_header("Authorization")
        return new


def build_opener(*handlers: urllib.request.BaseHandler) -> urllib.request.OpenerDirector:
    """``urllib.request.build_opener`` with :class:`NoAuthAcrossHosts` for its redirects, and
    ``handlers`` (a cookie jar for a login session) besides."""
    return urllib.request.build_opener(NoAuthAcrossHosts, *handlers)


_OPENER = build_opener()


def http_request(
    url: str,
    *,
    method: str | None = None,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    opener: urllib.request.OpenerDirector | None = None,
    limit: int | None = None,
) -> Answer:
    """One HTTP request (``method`` by default: POST with ``data``, else GET); an HTTP error status
    comes back as an :class:`Answer`.

    Raises ``OSError`` (``urllib.error.URLError``, ``TimeoutError``, ``ConnectionError``) when
    nothing answers, and ``ValueError`` for a URL that is not one. ``opener``: one with a cookie
    jar, for a login session (the Label Studio dev server's token minting; :func:`build_opener`
    keeps the redirect rule). ``limit``: read at most that many bytes of a successful answer's
    body (a caller that refuses large bodies reads one byte more than it accepts, not all of it).
    """
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    try:
        with (opener or _OPENER).open(request, timeout=timeout) as response:
            body = response.read() if limit is None else response.read(limit)
            return Answer(int(response.status), body, dict(response.headers), response.url)
    except urllib.error.HTTPError as exc:
        body = exc.read() if exc.fp else b""
        return Answer(int(exc.code), body, dict(exc.headers or {}), exc.url or url)


def answers(url: str, *, timeout: float = 2.0, ok: Container[int] | None = (200,)) -> bool:
    """Whether ``url`` answers a GET with a status in ``ok`` (``None``: any HTTP answer at all);
    False when nothing answers. The readiness probe of every local server."""
    try:
        status = http_request(url, timeout=timeout).status
    except (OSError, ValueError):
        return False
    return ok is None or status in ok

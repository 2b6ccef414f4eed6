"""The one way to wait, the one way to retry (inkloop.retry) and the one HTTP client (inkloop.net),
against a real HTTP server on 127.0.0.1 and real clocks."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator

import pytest

from inkloop.net import answers, free_port, http_request, port_is_free
from inkloop.retry import Backoff, retry, wait_until


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/ok")
            self.end_headers()
            return
        if self.path.startswith("/to/"):  # a 303 to another URL, as Label Studio's presign links
            self.send_response(303)
            self.send_header("Location", self.path[len("/to/") :])
            self.end_headers()
            return
        if self.path == "/auth":  # what Authorization header reached this server
            body = json.dumps({"host": self.headers["Host"], "auth": self.headers["Authorization"]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        status = 200 if self.path == "/ok" else 404
        body = b'{"path": "%s"}' % self.path.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(201)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:  # keep the test output clean
        pass


@pytest.fixture()
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_an_http_error_is_an_answer_and_no_answer_is_an_oserror(server: str) -> None:
    ok = http_request(f"{server}/ok")
    assert (ok.status, ok.json(), ok.url) == (200, {"path": "/ok"}, f"{server}/ok")
    missing = http_request(f"{server}/missing")
    assert missing.status == 404 and missing.json() == {"path": "/missing"}  # the server's own text
    followed = http_request(f"{server}/redirect")
    assert followed.status == 200 and followed.url == f"{server}/ok"
    posted = http_request(f"{server}/echo", data=b"payload")  # data: POST by default
    assert (posted.status, posted.body) == (201, b"payload")
    closed = f"http://127.0.0.1:{free_port()}/"
    with pytest.raises(OSError):
        http_request(closed, timeout=2)
    assert answers(f"{server}/ok") and not answers(f"{server}/missing")
    assert answers(f"{server}/missing", ok=None)  # any answer, as moto's probe (403 with IAM on)
    assert not answers(closed, ok=None) and not answers("not a url")


def test_a_redirect_to_another_host_goes_without_the_authorization_header(server: str) -> None:
    """The token stays with the host it was meant for (a presign link's 303 to a bucket): the
    same server under another name (localhost, 127.0.0.1) is another host to a client."""
    port = server.rsplit(":", 1)[1]
    other = f"http://localhost:{port}"
    token = {"Authorization": "Token secret"}
    same = http_request(f"{server}/to/{server}/auth", headers=token).json()
    assert same == {"host": f"127.0.0.1:{port}", "auth": "Token secret"}  # same host: kept
    moved = http_request(f"{server}/to/{other}/auth", headers=token)
    assert moved.url == f"{other}/auth"
    assert moved.json() == {"host": f"localhost:{port}", "auth": None}  # another host: dropped
    limited = http_request(f"{server}/ok", limit=4)  # a caller that refuses large bodies
    assert limited.status == 200 and limited.body == b'{"pa'


def test_a_listening_port_is_not_free(server: str) -> None:
    port = int(server.rsplit(":", 1)[1])
    assert not port_is_free(port)
    assert port_is_free(free_port())


def test_wait_until_checks_at_once_then_until_the_timeout() -> None:
    calls: list[float] = []
    assert wait_until(lambda: calls.append(time.monotonic()) or True, 0)
    assert len(calls) == 1
    calls.clear()
    t0 = time.monotonic()
    assert not wait_until(lambda: calls.append(time.monotonic()), 0.5, interval=0.1)
    waited = time.monotonic() - t0
    assert 0.5 <= waited < 2.0 and 4 <= len(calls) <= 8  # every ~0.1 s, and not past the timeout
    t0 = time.monotonic()
    assert wait_until(lambda: time.monotonic() - t0 > 0.3, 10, interval=0.05)
    assert time.monotonic() - t0 < 1.0  # returns as soon as the condition holds


def test_wait_until_gives_up_without_waiting_out_the_timeout() -> None:
    t0 = time.monotonic()
    assert not wait_until(lambda: False, 30, give_up=lambda: time.monotonic() - t0 > 0.2, interval=0.05)
    assert time.monotonic() - t0 < 2.0
    assert not wait_until(lambda: True, 30, give_up=lambda: True)  # asked before each check


def test_backoff_doubles_up_to_its_cap_with_jitter_below_each_pause() -> None:
    assert list(Backoff(attempts=5, first=0.5, cap=2.0).pauses()) == [0.5, 1.0, 2.0, 2.0]
    assert list(Backoff(attempts=1).pauses()) == []
    jittered = list(Backoff(attempts=4, first=1.0, jitter=0.5).pauses())
    assert all(lo <= p <= hi for p, lo, hi in zip(jittered, [0.5, 1.0, 2.0], [1.0, 2.0, 4.0], strict=True))


def test_retry_retries_what_is_transient_and_lets_the_rest_through() -> None:
    tries: list[int] = []
    seen: list[tuple[int, str, float]] = []

    def flaky() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise ConnectionError(f"reset {len(tries)}")
        return "done"

    backoff = Backoff(attempts=4, first=0.01)
    assert retry(flaky, backoff, on_retry=lambda n, e, p: seen.append((n, str(e), p))) == "done"
    assert [(n, e) for n, e, _ in seen] == [(1, "reset 1"), (2, "reset 2")]

    tries.clear()
    with pytest.raises(ConnectionError, match="reset 2"):  # the last failure, unchanged
        retry(flaky, Backoff(attempts=2, first=0.01))

    def refused() -> None:
        tries.append(1)
        raise ValueError("bad request")

    tries.clear()
    with pytest.raises(ValueError, match="bad request"):
        retry(refused, backoff, retryable=lambda e: isinstance(e, ConnectionError))
    assert len(tries) == 1  # not retryable: one try

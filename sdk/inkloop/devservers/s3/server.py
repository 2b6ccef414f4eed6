"""Start and stop moto's standalone S3 server (``moto_server``) on 127.0.0.1.

Why moto's server and not its in-process mock: the server is a real HTTP endpoint, so the code under
test goes through s3fs, aiobotocore and the network exactly as against AWS or MinIO, and a CLI in a
subprocess reaches it too. It keeps everything in memory: stopping it forgets every bucket.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from inkloop.devservers.spawn import start_server
from inkloop.net import HOST, free_port
from inkloop.processes import stop_group

START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
#: Credentials a client of the dev server uses (moto accepts any unless IAM emulation is on).
ACCESS_KEY = "inkloop-dev"
SECRET_KEY = "inkloop-dev-secret"
REGION = "us-east-1"


class S3ServerError(RuntimeError):
    """The S3 server could not be started or did not become ready."""


@dataclass
class S3Handle:
    """A started server: its endpoint URL, its process (group leader) and its log."""

    url: str
    pid: int
    log_file: Path
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    def client_env(self) -> dict[str, str]:
        """The environment a client sets to reach this server (what users set for any endpoint)."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
        }

    def storage_options(self) -> dict[str, object]:
        """The same as fsspec storage options for ``s3://`` (no environment needed)."""
        return {
            "endpoint_url": self.url,
            "key": ACCESS_KEY,
            "secret": SECRET_KEY,
        }


def _moto_executable() -> str:
    exe = Path(sys.executable).with_name("moto_server")
    if exe.is_file():
        return str(exe)
    found = shutil.which("moto_server")
    if found:
        return found
    raise S3ServerError("moto_server is not installed (pip install 'moto[server]', in inkloop[dev])")


def start(
    *,
    port: int | None = None,
    log_dir: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = START_TIMEOUT,
) -> S3Handle:
    """Start ``moto_server -H 127.0.0.1 -p PORT`` in its own process group; return once it answers.

    ``env``: extra variables for the server, e.g. ``{"INITIAL_NO_AUTH_ACTION_COUNT": "5"}`` for
    moto's IAM emulation (credentials and policies checked after the first 5 requests). The log
    goes to ``log_dir/moto.log`` (default: a new temporary folder).
    """
    port = port or free_port()
    url = f"http://{HOST}:{port}"
    logs = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="inkloop-s3-"))
    logs.mkdir(parents=True, exist_ok=True)
    log_file = logs / "moto.log"
    # any HTTP answer counts: with IAM emulation on, an anonymous request gets 403
    proc = start_server(
        [_moto_executable(), "-H", HOST, "-p", str(port)],
        url=url,
        probe="/moto-api/",
        ok=None,
        log_file=log_file,
        env={**os.environ, **dict(env or {})},
        timeout=timeout,
        stop_timeout=STOP_TIMEOUT,
        what="moto_server",
        error=S3ServerError,
        interval=0.2,
    )
    return S3Handle(url=url, pid=proc.pid, log_file=log_file, process=proc, env=dict(env or {}))


def stop(handle: S3Handle, *, timeout: float = STOP_TIMEOUT) -> bool:
    """SIGTERM the server's process group (SIGKILL after ``timeout``); True if it was running."""
    return stop_group(handle.pid, handle.process, timeout=timeout, what="moto_server")


class S3Server:
    """``with S3Server() as handle: ...``: an S3 endpoint for the duration of a block."""

    def __init__(self, **kwargs: object) -> None:
        self.kwargs = kwargs
        self.handle: S3Handle | None = None

    def __enter__(self) -> S3Handle:
        self.handle = start(**self.kwargs)  # type: ignore[arg-type]
        return self.handle

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.handle is not None:
            stop(self.handle)

"""Start a Triton server for a model reference in its own process group, wait until it is ready,
stop it by PID (SIGTERM, then SIGKILL): ``inkloop serve`` and the tests.

The server process itself is :mod:`inkloop.serving.triton_server`, run by the Triton venv's python
(:mod:`inkloop.serving.triton_venv`); this module runs in the SDK's environment.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import inkloop
from inkloop.models.references import ModelError, ModelRef
from inkloop.models.resolve import resolve_model
from inkloop.net import HOST, answers, free_port
from inkloop.processes import stop_group
from inkloop.retry import wait_until
from inkloop.serving.triton_venv import ensure_venv
from inkloop.serving.venvs import clean_python_env, venv_python

PAGES_SUFFIX = "-pages"  # inkloop.serving.triton_server.PAGES_SUFFIX (that module runs in the other venv)
EXIT_MODEL = 4


class TritonStartError(RuntimeError):
    """The server did not become ready; the message carries the end of its log."""


@dataclass
class TritonServer:
    """``with TritonServer("bundled") as s: s.ref`` → ``triton://127.0.0.1:<port>/signature-detector``."""

    model: str | ModelRef | None = None
    host: str = HOST
    http_port: int = 0  # 0: a free port
    grpc_port: int = 0
    metrics_port: int = 0
    name: str | None = None
    venv: Path | None = None
    max_batch_size: int = 8
    startup_timeout: float = 120.0
    quiet_setup: bool = True
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    log_file: Path | None = field(default=None, init=False)
    #: The server's scratch folder (its card, and its log unless given one); removed when the
    #: server stops. (Triton itself copies each model it loads into /tmp/folderXXXXXX and removes
    #: the copy when the model unloads: a graceful stop leaves nothing, a SIGKILL leaves those.)
    work: Path | None = field(default=None, init=False)
    _last_log: str = field(default="", init=False, repr=False)

    def __post_init__(self) -> None:
        self.resolved = self.model if isinstance(self.model, ModelRef) else resolve_model(self.model)
        self.name = self.name or self.resolved.card.name
        for attr in ("http_port", "grpc_port", "metrics_port"):
            if not getattr(self, attr):
                setattr(self, attr, free_port(self.host))

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def ref(self) -> str:
        """The ``triton://`` reference of the served network (the pipeline's model input)."""
        return f"triton://{self.host}:{self.http_port}/{self.name}"

    # the same network over gRPC, and where Prometheus scrapes
    grpc_ref = property(lambda self: f"triton+grpc://{self.host}:{self.grpc_port}/{self.name}")
    metrics_url = property(lambda self: f"http://{self.host}:{self.metrics_port}/metrics")

    def python(self) -> Path:
        """The Triton venv's python, the venv synced first (:func:`ensure_venv`): one check per start."""
        return venv_python(ensure_venv(self.venv, quiet=self.quiet_setup))

    def command(self, card_path: Path, python: Path) -> list[str]:
        return [
            str(python),
            "-m",
            "inkloop.serving.triton_server",
            "--onnx",
            str(self.resolved.path),
            "--card",
            str(card_path),
            "--name",
            str(self.name),
            "--host",
            self.host,
            "--http-port",
            str(self.http_port),
            "--grpc-port",
            str(self.grpc_port),
            "--metrics-port",
            str(self.metrics_port),
            "--max-batch-size",
            str(self.max_batch_size),
        ]

    def environment(self, python: Path) -> dict[str, str]:
        env = clean_python_env(os.environ)
        libdir = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout.strip()
        # trap 1: the Python backend stub would load the system's libpython instead of this one
        env["LD_LIBRARY_PATH"] = ":".join(p for p in (libdir, env.get("LD_LIBRARY_PATH", "")) if p)
        env["PYTHONPATH"] = str(Path(inkloop.__file__).resolve().parents[1])  # inkloop, not installed there
        env.setdefault("ORT_DISABLE_TELEMETRY", "1")
        return env

    def start(self, log_file: Path | None = None, foreground: bool = False) -> TritonServer:
        python = self.python()  # before the scratch folder: a venv that cannot be set up leaves none
        work = self.work = Path(tempfile.mkdtemp(prefix="inkloop-triton-"))
        card_path = work / "card.json"
        card_path.write_text(json.dumps(self.resolved.card.to_dict()))
        cmd, env = self.command(card_path, python), self.environment(python)
        self.log_file = log_file or work / "server.log"
        out = None if foreground else open(self.log_file, "wb")  # noqa: SIM115 (the child owns it)
        self.process = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT if out else None, start_new_session=True
        )
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        """Return once both models answer ``ready``; raise (the log's tail in the message) when the
        server exits first (:class:`ModelError` for a model it cannot load) or the timeout passes."""
        process = self.process
        assert process is not None
        probes = [f"{self.url}/v2/models/{m}/ready" for m in (self.name, f"{self.name}{PAGES_SUFFIX}")]

        def exited() -> bool:
            return process.poll() is not None

        if wait_until(lambda: all(answers(p) for p in probes), self.startup_timeout, give_up=exited):
            return
        code = process.poll()
        if code is None:
            self.stop()
            raise TritonStartError(
                f"the Triton server was not ready after {self.startup_timeout:.0f} s:\n{self.log_tail()}"
            )
        tail = self.log_tail()
        self.cleanup()
        if code == EXIT_MODEL:
            raise ModelError(f"Triton could not load {self.resolved.ref}: {tail}")
        raise TritonStartError(f"the Triton server exited with code {code}:\n{tail}")

    def log_tail(self, lines: int = 20) -> str:
        if self.log_file is None or not self.log_file.is_file():
            return "\n".join(self._last_log.splitlines()[-lines:]) or "(no log)"
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def cleanup(self) -> None:
        """Remove the scratch folder (keeping the log's tail for :meth:`log_tail`); call once the
        server's process group is gone."""
        if self.work is None:
            return
        self._last_log = self.log_tail(200)
        shutil.rmtree(self.work, ignore_errors=True)
        self.work = None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM to the server's process group (it stops Triton and its model processes), then
        whatever the group leaves behind (a Python backend stub once outlived its server by hours)."""
        p = self.process
        if p is None or p.returncode is not None:  # reaped before: its group id may name others now
            self.cleanup()
            return None if p is None else p.returncode
        stop_group(p.pid, p, timeout=timeout)
        self.cleanup()
        return p.returncode

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def run_foreground(server: TritonServer) -> int:
    """``inkloop serve``: start, print the references, wait; SIGTERM/SIGINT stop it gracefully."""
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if server.process is not None and server.process.poll() is None:
            os.killpg(server.process.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    server.start(foreground=True)
    print(
        f"ready: {server.ref} (page bytes in, page boxes out: model {server.name}{PAGES_SUFFIX}); "
        f"gRPC {server.grpc_ref}; metrics {server.metrics_url}",
        file=sys.stderr,
        flush=True,
    )
    assert server.process is not None
    code = server.process.wait()
    stop_group(server.process.pid, None, timeout=5)  # whatever of its group outlived it (stubs)
    server.cleanup()
    return 0 if stopping else code

"""Start and stop ``mlflow server`` (SQLite backend, local artifact store) on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from inkloop.devservers.spawn import start_server
from inkloop.models.mlflow_registry import offline_mlflow_env
from inkloop.net import HOST, free_port
from inkloop.processes import stop_group

START_TIMEOUT = 180.0
STOP_TIMEOUT = 30.0


class MlflowServerError(RuntimeError):
    """The MLflow server could not be started or did not become ready."""


@dataclass
class MlflowHandle:
    """A started server: where it listens, its process (group leader) and its files."""

    url: str
    pid: int
    data_dir: Path
    log_file: Path
    process: subprocess.Popen[bytes] | None = None


def _mlflow_executable() -> list[str]:
    exe = Path(sys.executable).with_name("mlflow")
    if exe.is_file():
        return [str(exe)]
    found = shutil.which("mlflow")
    if found:
        return [found]
    raise MlflowServerError("mlflow is not installed (pip install 'inkloop[experiments]')")


def start(
    data_dir: str | os.PathLike[str], *, port: int | None = None, timeout: float = START_TIMEOUT
) -> MlflowHandle:
    """Start ``mlflow server`` on 127.0.0.1 with ``<data_dir>/mlflow.db`` and ``<data_dir>/artifacts``.

    Returns once ``/health`` answers (about 10 s; 30 s on a busy machine); raises
    :class:`MlflowServerError` with the end of the server's log otherwise.
    """
    data = Path(data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    url = f"http://{HOST}:{port}"
    log_file = data / "server.log"
    cmd = [
        *_mlflow_executable(),
        "server",
        "--backend-store-uri",
        f"sqlite:///{data / 'mlflow.db'}",
        "--artifacts-destination",
        str(data / "artifacts"),
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = offline_mlflow_env(dict(os.environ))
    env.pop("MLFLOW_TRACKING_URI", None)
    # MLflow's job runner (a second process, for its GenAI jobs) is nothing tracking or the registry
    # needs: without it the server starts in about half the time and idles without a consumer.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    proc = start_server(
        cmd,
        url=url,
        probe="/health",
        log_file=log_file,
        env=env,
        timeout=timeout,
        stop_timeout=STOP_TIMEOUT,
        what="mlflow server",
        error=MlflowServerError,
    )
    (data / "server.pid").write_text(f"{proc.pid}\n")
    return MlflowHandle(url=url, pid=proc.pid, data_dir=data, log_file=log_file, process=proc)


def stop(handle: MlflowHandle, *, timeout: float = STOP_TIMEOUT) -> bool:
    """SIGTERM the server's process group, SIGKILL it after ``timeout`` (its gunicorn/uvicorn
    workers too, should they outlive it); True if it was running."""
    if not stop_group(handle.pid, handle.process, timeout=timeout):
        return False
    (handle.data_dir / "server.pid").unlink(missing_ok=True)
    return True


class MlflowServer:
    """``with MlflowServer(tmp) as url: ...``: a server for the duration of a block."""

    def __init__(self, data_dir: str | os.PathLike[str], port: int | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.port = port
        self.handle: MlflowHandle | None = None

    def __enter__(self) -> str:
        self.handle = start(self.data_dir, port=self.port)
        return self.handle.url

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.handle is not None:
            stop(self.handle)

"""Starting a local server the way every dev server does: in its own process group, its output
appended to a log file (:func:`spawn`, Label Studio's too), returned once its readiness URL
answers (:func:`start_server`).

Why one helper: the MLflow and the S3 (moto) servers started, waited and failed the same way, line
for line; a fix to one (a server that exits at once, the log's tail in the error) belongs to both.
A server that exits first or does not answer in time has its group stopped (nothing left behind)
and the error carries the end of its log, the only place that says why.
"""

from __future__ import annotations

import subprocess
from collections.abc import Container, Mapping, Sequence
from pathlib import Path

from inkloop.net import answers
from inkloop.processes import stop_group
from inkloop.retry import wait_until


def log_tail(log_file: Path | None, lines: int = 30) -> str:
    """The last ``lines`` lines of a server's log; ``""`` when there is none (or it cannot be read)."""
    if log_file is None:
        return ""
    try:
        return "\n".join(log_file.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def spawn(
    cmd: Sequence[str],
    *,
    log_file: Path,
    env: Mapping[str, str],
    cwd: Path | None = None,
    banner: str = "",
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own process group (stopped as a whole by
    :func:`inkloop.processes.stop_group`, never by name), no stdin, stdout and stderr appended to
    ``log_file`` after ``banner`` (a line that tells one start from the next in a kept log)."""
    with open(log_file, "ab") as log:
        if banner:
            log.write(banner.encode())
            log.flush()
        return subprocess.Popen(
            list(cmd),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )


def start_server(
    cmd: Sequence[str],
    *,
    url: str,
    probe: str,
    log_file: Path,
    env: Mapping[str, str],
    timeout: float,
    stop_timeout: float,
    what: str,
    error: type[Exception],
    ok: Container[int] | None = (200,),
    interval: float = 0.5,
) -> subprocess.Popen[bytes]:
    """:func:`spawn` ``cmd`` and return its process once ``url + probe`` answers with a status in
    ``ok`` (``None``: any HTTP answer). If it exits first or ``timeout`` passes, its group is
    stopped and ``error`` raised, naming ``what``, ``url``, the exit code and the end of the log."""
    proc = spawn(cmd, log_file=log_file, env=env)
    exited = lambda: proc.poll() is not None  # noqa: E731 (a one-line predicate)
    if wait_until(lambda: answers(url + probe, ok=ok), timeout, interval=interval, give_up=exited):
        return proc
    stop_group(proc.pid, proc, timeout=stop_timeout, what=what)
    raise error(f"{what} on {url} did not become ready (exit {proc.returncode}):\n{log_tail(log_file)}")

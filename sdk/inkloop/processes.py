"""Stopping a child started in its own process group (``start_new_session=True``), all of it.

inkloop runs its long work in such groups: a training run (``inkloop.lifecycle.retrain``) and the
local servers (``inkloop.devservers``: Label Studio, Triton, MLflow). A leader exiting is not the
end of its group: workers and helpers can outlive it. One test run left a Triton Python backend
stub running for hours after its server had stopped gracefully (parent gone, a defunct child,
SIGTERM ignored). So a stop waits for the leader, then gives the rest of the group a moment and
kills what is left. Zombies count as gone: they have exited and only wait for a parent (an init
that never reaps would otherwise make every stop wait out its timeout).

Process states come from psutil (Linux and macOS alike; no ``/proc`` parsing of our own), the
waits from :func:`inkloop.retry.wait_until`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
from typing import Any

import psutil

from inkloop.retry import wait_until

logger = logging.getLogger(__name__)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has exited already; it only waits for its parent)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # it exists; someone else's


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:  # gone meanwhile (ProcessLookupError), or not ours to ask about
        return None


def group_members(pgid: int) -> list[int]:
    """PIDs in process group ``pgid`` (the server and any helper it spawned), zombies included."""
    return [pid for pid in psutil.pids() if _pgid(pid) == pgid]


def group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies, which only wait for a parent that
    may never reap them, do not count)."""
    return any(pid_alive(pid) for pid in group_members(pgid))


def stop_group(
    pid: int,
    process: subprocess.Popen[Any] | None = None,
    *,
    timeout: float,
    grace: float = 5.0,
    what: str = "process group",
) -> bool:
    """SIGTERM the process group that ``pid`` leads; SIGKILL it if its leader (``process``, when
    this process started it; else the whole group) has not ended after ``timeout`` seconds; then
    give the rest of the group ``grace`` seconds and SIGKILL whatever is left. A ``pid`` that leads
    no group (one read from a pid file that another start wrote) is stopped alone, the same way:
    its group is someone else's. True if it was running. ``what`` names it in the warning logged
    when SIGTERM was not enough.
    """
    try:
        leads = os.getpgid(pid) == pid
    except ProcessLookupError:
        leads = True  # the leader has gone: whatever is left of its group
    send = os.killpg if leads else os.kill

    def gone() -> bool:
        return not (group_alive(pid) if leads else pid_alive(pid))

    try:
        send(pid, signal.SIGTERM)
    except ProcessLookupError:
        if process is not None:
            process.poll()
        return False

    def leader_ended() -> bool:  # the leader we started; else (a pid file's server) all of it
        return process.poll() is not None if process is not None else gone()

    if not wait_until(leader_ended, timeout, interval=0.1):
        logger.warning("%s %d ignored SIGTERM for %g s; killing it", what, pid, timeout)
        with contextlib.suppress(ProcessLookupError):
            send(pid, signal.SIGKILL)
    if process is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
    if not wait_until(gone, grace, interval=0.1):
        with contextlib.suppress(ProcessLookupError):
            send(pid, signal.SIGKILL)
        wait_until(gone, grace, interval=0.1)
    return True

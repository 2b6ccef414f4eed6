"""Processes: whether a PID is our Label Studio, where its group listens (psutil), pid files."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import psutil

from inkloop.devservers.labelstudio.settings import STATE_FILE_NAME
from inkloop.processes import group_members


def _cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:  # gone, a zombie, or not ours to read
        return []


def _is_label_studio(pid: int) -> bool:
    """Whether ``pid`` is a ``label-studio start`` process, so a reused PID is never killed."""
    cmd = _cmdline(pid)
    return any("label-studio" in part or "label_studio" in part for part in cmd) and "start" in cmd


def listening_addresses(pid: int) -> list[tuple[str, int]]:
    """TCP (address, port) pairs that ``pid``'s process group listens on.

    Why not just connect: a connect to 127.0.0.1 cannot tell "bound to 127.0.0.1" from "bound to
    0.0.0.0", and only the latter exposes the server to the network.
    """
    found: set[tuple[str, int]] = set()
    for member in group_members(pid) or [pid]:
        try:
            connections = psutil.Process(member).net_connections(kind="tcp")
        except psutil.Error:
            continue
        found.update((c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN)
    return sorted(found)


def _read_pid_file(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _remove_runtime_files(pid_file: Path, pid: int) -> None:
    """Remove the pid file (and state file) only if they still name ``pid``."""
    if _read_pid_file(pid_file) == pid:
        with contextlib.suppress(OSError):
            pid_file.unlink()
        state_file = pid_file.with_name(STATE_FILE_NAME)
        with contextlib.suppress(OSError):
            if json.loads(state_file.read_text()).get("pid") == pid:
                state_file.unlink()

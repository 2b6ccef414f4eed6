"""Processes and ports: free ports, whether a PID is our Label Studio, where it listens, pid files."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path

from inkloop.devservers.labelstudio.settings import STATE_FILE_NAME
from inkloop.processes import group_members


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _is_label_studio(pid: int) -> bool:
    """Whether ``pid`` is a ``label-studio start`` process, so a reused PID is never killed."""
    cmd = _cmdline(pid)
    return any("label-studio" in part or "label_studio" in part for part in cmd) and "start" in cmd


def _decode_proc_addr(hex_addr: str) -> tuple[str, int]:
    ip_hex, port_hex = hex_addr.split(":")
    raw = bytes.fromhex(ip_hex)
    if len(raw) == 4:
        ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:  # four little-endian 32-bit words
        words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
        ip = socket.inet_ntop(socket.AF_INET6, words)
    return ip, int(port_hex, 16)


def listening_addresses(pid: int) -> list[tuple[str, int]]:
    """TCP (address, port) pairs that ``pid``'s process group listens on, read from /proc.

    Why not just connect: a connect to 127.0.0.1 cannot tell "bound to 127.0.0.1" from "bound to
    0.0.0.0", and only the latter exposes the server to the network.
    """
    inodes: set[str] = set()
    for member in group_members(pid) or [pid]:
        fd_dir = Path(f"/proc/{member}/fd")
        try:
            fds = list(fd_dir.iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found: list[tuple[str, int]] = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == "0A" and cols[9] in inodes:  # 0A = LISTEN
                found.append(_decode_proc_addr(cols[1]))
    return sorted(set(found))


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

"""A network monitor for tests: run a command (or attach to a process) under strace, list what left.

``strace -f -e trace=connect,sendto,sendmsg`` records every socket address a process tree talks
to. An address counts as leaving the machine when it is AF_INET/AF_INET6 outside 127.0.0.0/8 and
``::1``; anything on port 53 is a DNS look-up and counts too, wherever the resolver is (a look-up
of a public name is the first step of phoning home). Unix sockets and netlink are local.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

STRACE = shutil.which("strace") or "/usr/bin/strace"
TRACE = ["-f", "-qq", "-s", "256", "-e", "trace=connect,sendto,sendmsg,execve,clone,clone3,fork,vfork"]

_PID = re.compile(r"^(?:\[pid\s+)?(\d+)\]?\s+(.*)$")
_INET = re.compile(r'sa_family=AF_INET,\s*sin_port=htons\((\d+)\),\s*sin_addr=inet_addr\("([^"]+)"\)')
_INET6 = re.compile(r'sa_family=AF_INET6,\s*sin6_port=htons\((\d+)\).*?inet_pton\(AF_INET6,\s*"([^"]+)"')
_CALL = re.compile(r"^(connect|sendto|sendmsg)\(")
_EXEC = re.compile(r'^execve\("[^"]*", \[((?:"(?:\\.|[^"\\])*"(?:, )?)+)')
_SPAWN = re.compile(r"^(?:clone3?|v?fork)\(.*= (\d+)$")
# A DNS query's payload names the host (sendto's buffer): "\3www\6google\3com".
_QNAME = re.compile(r'"(?:\\[0-7]{1,3}|[^"])*"')


@dataclass(frozen=True)
class Leak:
    pid: int
    process: str
    call: str
    family: str
    address: str
    port: int
    query: str

    def __str__(self) -> str:
        what = f"DNS look-up of {self.query!r} via" if self.port == 53 and self.query else "to"
        return f"pid {self.pid} ({self.process}) {self.call} {what} {self.address}:{self.port}"


def _local(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


_ESC = re.compile(r"\\([0-7]{1,3})|\\(.)|(.)", re.S)
_SIMPLE = {"n": 10, "t": 9, "r": 13, "v": 11, "f": 12, "a": 7, "b": 8}


def _unescape(literal: str) -> bytes:
    """strace's C-style string (octal escapes, ``\\t`` …) back to bytes."""
    out = bytearray()
    for octal, char, plain in _ESC.findall(literal):
        if octal:
            out.append(int(octal, 8) & 0xFF)
        elif char:
            out.append(_SIMPLE.get(char, ord(char)))
        else:
            out.extend(plain.encode("latin-1", "replace"))
    return bytes(out)


def _qname(line: str) -> str:
    """The host name a DNS query asks for, from the payload strace printed (best effort)."""
    for literal in _QNAME.findall(line):
        data, labels, i = _unescape(literal[1:-1]), [], 12  # 12-byte DNS header
        while i < len(data) and 0 < data[i] < 64:
            labels.append(data[i + 1 : i + 1 + data[i]].decode("ascii", "replace"))
            i += 1 + data[i]
        if labels and i < len(data) and data[i] == 0:
            return ".".join(labels)
    return ""


def parse(log: str | Path) -> list[Leak]:
    """Every connect/sendto/sendmsg in an ``strace -f`` log that leaves the machine.

    Process names come from the log itself (``execve`` argv, inherited over ``clone``/``fork``),
    as the processes are usually gone when it is read; a DNS query sent on a connected socket
    lends its host name to the look-up.
    """
    names: dict[int, str] = {}
    leaks: list[Leak] = []
    for line in Path(log).read_text(errors="replace").splitlines():
        m = _PID.match(line)
        pid, rest = (int(m.group(1)), m.group(2)) if m else (0, line)
        if (e := _EXEC.match(rest)) and not rest.rstrip().endswith(("ENOENT (No such file or directory)",)):
            argv = re.findall(r'"((?:\\.|[^"\\])*)"', e.group(1))
            names[pid] = " ".join(a.split("\\n", 1)[0] for a in argv)[:100]
            continue
        if sp := _SPAWN.match(rest):
            names[int(sp.group(1))] = names.get(pid, "?")
            continue
        call = _CALL.match(rest)
        if not call:
            continue
        found = False
        for family, pattern in (("AF_INET", _INET), ("AF_INET6", _INET6)):
            a = pattern.search(rest)
            if a is None:
                continue
            found = True
            port, address = int(a.group(1)), a.group(2)
            if port == 53 or not _local(address):
                leak = Leak(pid, names.get(pid, "?"), call.group(1), family, address, port, _qname(rest))
                leaks.append(leak)
        if not found and call.group(1) != "connect" and (q := _qname(rest)):
            for i in range(len(leaks) - 1, -1, -1):  # the look-up this query belongs to
                if leaks[i].pid == pid and leaks[i].port == 53 and not leaks[i].query:
                    leaks[i] = replace(leaks[i], query=q)
                    break
    return leaks


@dataclass
class Monitored:
    returncode: int
    stdout: str
    stderr: str
    leaks: list[Leak]
    log: Path


def run(
    cmd: Sequence[str],
    log: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
    cwd: str | Path | None = None,
) -> Monitored:
    """``cmd`` under strace; its result and the calls that left the machine.

    What ``cmd`` starts is traced too (``-f``), but strace would also wait for a daemon that
    outlives it: FiftyOne's database service, started by its first client, runs on while other
    clients (other tests) use it. So once ``cmd`` has exited, strace gets a few seconds to finish
    and is then detached (SIGINT); the service runs on, untraced from then on.
    """
    rc_file, out, err = (log.with_name(f"{log.name}.{x}") for x in ("rc", "out", "err"))
    rc_file.unlink(missing_ok=True)
    wrapped = ["sh", "-c", '"$@"; echo $? > "$0"', str(rc_file), *cmd]  # cmd's exit status, on exit
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen(
            [STRACE, *TRACE, "-o", str(log), *wrapped],
            env=dict(env) if env is not None else None,
            stdout=fo,
            stderr=fe,
            cwd=cwd,
        )
        deadline = time.monotonic() + timeout
        while _exit_status(rc_file) is None and proc.poll() is None:
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise subprocess.TimeoutExpired(cmd, timeout)
            time.sleep(0.2)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)  # strace detaches from what is still running
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                # Detaching waits for every thread of what runs on to stop; on a loaded machine a
                # database starting its threads kept strace at it for over 30 s (one CI-like run).
                # A killed tracer is detached by the kernel, and what it traced runs on; the log
                # already holds everything the command did, which ended before the detach began.
                proc.kill()
                proc.wait()
    rc = _exit_status(rc_file)
    return Monitored(proc.returncode if rc is None else rc, out.read_text(), err.read_text(), parse(log), log)


def _exit_status(rc_file: Path) -> int | None:
    try:
        return int(rc_file.read_text())
    except (OSError, ValueError):  # not yet written (or half written)
        return None


class Attached:
    """``strace -p PID -f`` on a running process (a server) for the duration of a ``with`` block."""

    def __init__(self, pid: int, log: Path) -> None:
        self.pid, self.log = pid, log
        self.leaks: list[Leak] = []
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Attached:
        self._proc = subprocess.Popen([STRACE, *TRACE, "-o", str(self.log), "-p", str(self.pid)])
        deadline = time.monotonic() + 10  # strace writes nothing until attached; give it a moment
        while time.monotonic() < deadline and self._proc.poll() is None:
            time.sleep(0.5)
            if self.log.exists():
                break
        time.sleep(1.0)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGINT)  # detaches; the traced server keeps running
        try:
            self._proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self.leaks = parse(self.log)

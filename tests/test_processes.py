"""Stopping a child's whole process group (inkloop.processes): what training runs and the local
servers rely on to leave nothing running."""

from __future__ import annotations

import logging
import subprocess
import sys

import psutil
import pytest

from inkloop.processes import group_alive, group_members, pid_alive, stop_group
from inkloop.retry import wait_until

# A leader that stops on SIGTERM, and a child of it that ignores SIGTERM (as a Triton Python backend
# stub once did: it outlived its stopped server by hours).
STRAGGLER = """
import signal, subprocess, sys, time
code = "import signal as s, time; s.signal(s.SIGTERM, s.SIG_IGN); print(1, flush=True); time.sleep(99)"
child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
child.stdout.readline()  # it ignores SIGTERM from now on
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print(child.pid, flush=True)
time.sleep(120)
"""

# A leader that ignores SIGTERM itself (a training step stuck in native code).
STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print(1, flush=True)
time.sleep(120)
"""


def _start(code: str) -> tuple[subprocess.Popen[str], str]:
    p = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert p.stdout is not None
    return p, p.stdout.readline().strip()


def test_stopping_a_group_leaves_no_straggler() -> None:
    p, line = _start(STRAGGLER)
    child = int(line)
    assert stop_group(p.pid, p, timeout=10, grace=1)
    assert p.returncode == 0  # the leader stopped on SIGTERM
    assert not pid_alive(child)  # and the child that ignored it was killed (gone, or a zombie)
    assert not group_alive(p.pid)


def test_a_leader_that_ignores_sigterm_is_killed_after_the_timeout(caplog: pytest.LogCaptureFixture) -> None:
    p, _ = _start(STUBBORN)
    with caplog.at_level(logging.WARNING, logger="inkloop.processes"):
        assert stop_group(p.pid, p, timeout=0.5, grace=1, what="training process")
    assert p.returncode == -9  # SIGKILL, after SIGTERM was ignored for the timeout
    assert f"training process {p.pid} ignored SIGTERM for 0.5 s; killing it" in caplog.text
    assert not group_alive(p.pid)


def test_stopping_a_group_that_is_gone_says_so() -> None:
    p, _ = _start("print(1, flush=True)")
    p.wait()
    assert not stop_group(p.pid, p, timeout=1)


def test_a_group_is_its_leader_and_every_child_the_leader_started() -> None:
    p, line = _start(STRAGGLER)
    try:
        assert sorted(group_members(p.pid)) == sorted([p.pid, int(line)])
        assert group_alive(p.pid)
    finally:
        stop_group(p.pid, p, timeout=10, grace=1)
    # the child, killed, may stay a zombie where init does not reap it: a member, but gone
    assert not group_alive(p.pid) and not any(pid_alive(m) for m in group_members(p.pid))


def test_a_zombie_counts_as_gone_but_stays_a_member_until_reaped() -> None:
    """A zombie has exited; an init that never reaps must not make every stop wait its timeout."""
    p = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    try:
        assert wait_until(lambda: psutil.Process(p.pid).status() == psutil.STATUS_ZOMBIE, 30)
        assert not pid_alive(p.pid) and not group_alive(p.pid)
        assert group_members(p.pid) == [p.pid]
    finally:
        p.wait(5)
    assert not pid_alive(p.pid) and group_members(p.pid) == []


def test_a_pid_that_leads_no_group_is_stopped_alone() -> None:
    """A pid file may name a process another start made, in someone else's group (here: this
    test's own): that process alone is stopped, never the group it belongs to."""
    p = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "1"
    assert stop_group(p.pid, None, timeout=0.5, grace=1)
    assert p.wait(5) == -9 and not pid_alive(p.pid)  # and we, in the group it sat in, still run

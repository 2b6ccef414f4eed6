"""How every dev server starts (inkloop.devservers.spawn): returned once it answers; a server that
exits first or never answers leaves nothing running, and the error carries its log's tail."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from inkloop.devservers.spawn import log_tail, start_server
from inkloop.net import HOST, answers, free_port
from inkloop.processes import group_alive, stop_group


class Boom(RuntimeError):
    pass


def _start(cmd: list[str], tmp_path: Path, url: str, timeout: float = 30.0) -> subprocess.Popen[bytes]:
    return start_server(
        cmd,
        url=url,
        probe="/",
        log_file=tmp_path / "server.log",
        env={"PYTHONUNBUFFERED": "1"},
        timeout=timeout,
        stop_timeout=5.0,
        what="test server",
        error=Boom,
        interval=0.1,
    )


def test_a_server_that_answers_is_returned_running(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://{HOST}:{port}"
    proc = _start([sys.executable, "-m", "http.server", "--bind", HOST, str(port)], tmp_path, url)
    try:
        assert proc.poll() is None and answers(url + "/")
    finally:
        assert stop_group(proc.pid, proc, timeout=5.0)
    assert not group_alive(proc.pid)


def test_a_server_that_exits_first_raises_with_its_log(tmp_path: Path) -> None:
    url = f"http://{HOST}:{free_port()}"
    code = "import sys; print('no such option: --frobnicate'); sys.exit(3)"
    with pytest.raises(Boom) as info:
        _start([sys.executable, "-c", code], tmp_path, url)
    message = str(info.value)
    assert f"test server on {url} did not become ready (exit 3)" in message
    assert "no such option: --frobnicate" in message


def test_a_server_that_never_answers_is_stopped(tmp_path: Path) -> None:
    url = f"http://{HOST}:{free_port()}"  # nothing listens there
    pid_file = tmp_path / "pid"
    code = (
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
        "print('warming up', flush=True); time.sleep(120)"
    )
    with pytest.raises(Boom) as info:
        _start([sys.executable, "-c", code], tmp_path, url, timeout=1.0)
    assert "warming up" in str(info.value)
    assert not group_alive(int(pid_file.read_text()))  # its whole group stopped: nothing left
    assert log_tail(tmp_path / "server.log") == "warming up"
    assert log_tail(tmp_path / "missing.log") == "" and log_tail(None) == ""

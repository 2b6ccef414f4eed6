"""The local Label Studio server, the labeling config and the reviewer instructions.

Server tests run against a real Label Studio (the session fixture ``labelstudio``); they check
what matters for safety and for the review loop: loopback only, the token works (and only it),
the generated labeling config is one the server accepts, the token never leaks into errors, and
``stop`` never touches a process that is not a Label Studio server.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import psutil
import pytest
import requests

from inkloop.devservers import ports
from inkloop.devservers.labelstudio import processes, readiness, server, settings
from inkloop.devservers.labelstudio.server import LabelStudioHandle
from inkloop.review import labeling

ROOT = Path(__file__).resolve().parents[1]
SECRET = "do-not-leak-this-token-4711"


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Token {token}"}


# --------------------------------------------------------------------------------------------
# Labeling config and instructions (no server)


def test_labeling_config_structure() -> None:
    root = ET.fromstring(labeling.labeling_config(["signature", "initials"]))
    image = root.find("Image")
    rects = root.find("RectangleLabels")
    assert root.find("Header") is not None
    assert image is not None and rects is not None
    assert image.attrib["name"] == "image" and image.attrib["value"] == "$image"
    assert image.attrib["zoom"] == "true"
    assert rects.attrib["name"] == "label" and rects.attrib["toName"] == "image"
    assert [label.attrib["value"] for label in rects.findall("Label")] == ["signature", "initials"]


def test_labeling_config_escapes_and_validates_names() -> None:
    odd = ["a&b", 'say "hi"', "<x>"]
    root = ET.fromstring(labeling.labeling_config(odd))
    assert [label.attrib["value"] for label in root.iter("Label")] == odd
    with pytest.raises(ValueError):
        labeling.labeling_config([])
    with pytest.raises(ValueError):
        labeling.labeling_config(["signature", "signature"])
    with pytest.raises(ValueError):
        labeling.labeling_config(["  "])


def test_committed_config_is_the_generated_one() -> None:
    """labeling/config.xml is what the code generates for the reference model's one class."""
    assert (ROOT / "labeling" / "config.xml").read_text() == labeling.labeling_config(["signature"])


def test_markdown_to_html() -> None:
    md = "# Title\n\nSome **bold**, *em* and `code` <b>.\n\n1. one\n   continued\n2. two\n\n- a\n- b\n"
    out = labeling.markdown_to_html(md)
    assert "<h1>Title</h1>" in out
    assert "<p>Some <strong>bold</strong>, <em>em</em> and <code>code</code> &lt;b&gt;.</p>" in out
    assert "<ol><li>one continued</li><li>two</li></ol>" in out
    assert "<ul><li>a</li><li>b</li></ul>" in out


def test_instructions_html_reads_the_file_and_has_a_fallback(tmp_path: Path) -> None:
    out = labeling.instructions_html()
    assert "<h1>" in out and "valuable negative" in out and "Skip" in out
    fallback = labeling.instructions_html(tmp_path / "missing.md")
    assert "<li>" in fallback and "negative" in fallback


# --------------------------------------------------------------------------------------------
# Errors never carry the token; stop never kills a stranger (no server needed)


def test_wait_ready_on_closed_port_does_not_leak_token() -> None:
    port = ports.free_port()  # nothing listens there once the probe socket is closed
    with pytest.raises(settings.ServerNotReadyError) as info:
        readiness.wait_ready(f"http://127.0.0.1:{port}", timeout=1.0, token=SECRET, interval=0.2)
    assert isinstance(info.value, TimeoutError)
    _assert_no_secret(info.value)


def test_start_errors_do_not_leak_token(tmp_path: Path) -> None:
    with pytest.raises(settings.SetupError) as info:
        server.start(ports.free_port(), tmp_path / "data", SECRET, venv=tmp_path / "no-venv")
    _assert_no_secret(info.value)
    with pytest.raises(settings.LabelStudioServerError) as short:
        server.start(ports.free_port(), tmp_path / "data", "abc", venv=tmp_path / "no-venv")
    assert "abc" not in str(short.value)


def test_private_venv_pythons_cache_their_bytecode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server venvs are installed without byte-compiling (setup time); their pythons must be
    free to write the caches, else every start recompiles Django where a machine sets this."""
    from inkloop.devservers.venvs import clean_python_env

    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    env = server._child_env(
        data_dir=tmp_path / "data",
        document_root=tmp_path,
        username="u@example.com",
        password="pw",
        token="t" * 40,
        venv=tmp_path / "venv",
        extra_env=None,
    )
    assert "PYTHONDONTWRITEBYTECODE" not in env
    assert "PYTHONDONTWRITEBYTECODE" not in clean_python_env({"PYTHONDONTWRITEBYTECODE": "1", "HOME": "/h"})


def test_stop_leaves_a_foreign_pid_alone(tmp_path: Path) -> None:
    """A stale pid file naming a process that is not Label Studio must not get it killed."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / settings.PID_FILE_NAME).write_text(f"{other.pid}\n")
        assert server.stop(tmp_path) is False
        assert other.poll() is None
        assert not (tmp_path / settings.PID_FILE_NAME).exists()
    finally:
        other.kill()
        other.wait()


def _assert_no_secret(exc: BaseException) -> None:
    seen: BaseException | None = exc
    while seen is not None:
        assert SECRET not in str(seen) and SECRET not in repr(seen)
        seen = seen.__cause__ or seen.__context__


# --------------------------------------------------------------------------------------------
# The real server


@pytest.mark.labelstudio
@pytest.mark.slow
def test_listens_only_on_loopback(labelstudio: LabelStudioHandle) -> None:
    port = labelstudio.port
    assert labelstudio.url == f"http://127.0.0.1:{port}"
    # Our own /proc reading and psutil's must agree: one listener, on 127.0.0.1:port.
    assert processes.listening_addresses(labelstudio.pid) == [("127.0.0.1", port)]
    proc = psutil.Process(labelstudio.pid)
    procs = [proc, *proc.children(recursive=True)]
    listening = {
        (c.laddr.ip, c.laddr.port)
        for p in procs
        for c in p.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    }
    assert listening == {("127.0.0.1", port)}
    # And from the outside: no other address of this machine answers on that port.
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family == socket.AF_INET and not addr.address.startswith("127."):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.settimeout(1.0)
                    assert s.connect_ex((addr.address, port)) != 0, addr.address


@pytest.mark.labelstudio
def test_the_servers_id_file_stays_in_its_data_dir(labelstudio: LabelStudioHandle) -> None:
    """Label Studio writes an id file in its config dir even with analytics off: not in ~/.config."""
    assert (labelstudio.data_dir / "config" / "label-studio" / "user_id").is_file()


@pytest.mark.labelstudio
@pytest.mark.slow
def test_token_works_and_is_required(labelstudio: LabelStudioHandle) -> None:
    assert labelstudio.token not in repr(labelstudio)
    ok = requests.get(f"{labelstudio.url}/api/projects", headers=_auth(labelstudio.token), timeout=30)
    assert ok.status_code == 200, ok.text[:300]
    assert "results" in ok.json()
    anonymous = requests.get(f"{labelstudio.url}/api/projects", timeout=30)
    assert anonymous.status_code == 401
    wrong = requests.get(f"{labelstudio.url}/api/projects", headers=_auth(SECRET), timeout=30)
    assert wrong.status_code == 401


@pytest.mark.labelstudio
@pytest.mark.slow
def test_wrong_token_is_reported_without_leaking(labelstudio: LabelStudioHandle) -> None:
    with pytest.raises(settings.TokenRejectedError) as info:
        readiness.wait_ready(labelstudio.url, timeout=30, token=SECRET)
    _assert_no_secret(info.value)
    readiness.wait_ready(labelstudio.url, timeout=30, token=labelstudio.token)


@pytest.mark.labelstudio
@pytest.mark.slow
def test_busy_port_fails_loudly(labelstudio: LabelStudioHandle, tmp_path: Path) -> None:
    """Label Studio would silently take the next port; start() must refuse instead."""
    assert not ports.port_is_free(labelstudio.port)
    with pytest.raises(settings.PortInUseError) as info:
        server.start(labelstudio.port, tmp_path / "other", SECRET)
    _assert_no_secret(info.value)
    assert not (tmp_path / "other" / settings.PID_FILE_NAME).exists()


@pytest.mark.labelstudio
@pytest.mark.slow
def test_generated_config_and_instructions_accepted(labelstudio: LabelStudioHandle) -> None:
    headers = _auth(labelstudio.token)
    api = f"{labelstudio.url}/api/projects"
    created = requests.post(
        api,
        headers=headers,
        json={
            "title": "inkloop test: labeling config",
            "label_config": labeling.labeling_config(["signature", "initials"]),
            "expert_instruction": labeling.instructions_html(),
            "show_instruction": True,
        },
        timeout=60,
    )
    assert created.status_code == 201, created.text[:500]
    project_id = created.json()["id"]
    try:
        got = requests.get(f"{api}/{project_id}", headers=headers, timeout=30).json()
        parsed = got["parsed_label_config"]["label"]
        assert parsed["type"] == "RectangleLabels"
        assert parsed["to_name"] == ["image"]
        assert sorted(parsed["labels"]) == ["initials", "signature"]
        assert "valuable negative" in got["expert_instruction"]
    finally:
        deleted = requests.delete(f"{api}/{project_id}", headers=headers, timeout=60)
        assert deleted.status_code == 204, deleted.text[:300]
    assert requests.get(f"{api}/{project_id}", headers=headers, timeout=30).status_code == 404
    # The check has teeth: a broken config is refused.
    bad = requests.post(
        api,
        headers=headers,
        json={"title": "inkloop test: bad config", "label_config": "<View><Image name='x'/>"},
        timeout=60,
    )
    assert bad.status_code == 400, bad.text[:300]

"""The local Label Studio server, the labeling config and the reviewer instructions.

Server tests run against a real Label Studio (the session fixture ``labelstudio``); they check
what matters for safety and for the review loop: loopback only, Label Studio's own auth defaults
(legacy tokens off) and the admin's Personal Access Token (it works, and only it), the generated
labeling config is one the server accepts, the token never leaks into errors, and ``stop`` never
touches a process that is not a Label Studio server.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import psutil
import pytest
import requests

from inkloop import net
from inkloop.devservers.labelstudio import processes, readiness, server, settings, tokens
from inkloop.devservers.labelstudio.server import LabelStudioHandle
from inkloop.review import labeling
from inkloop.review.auth import LabelStudioAuth, is_personal_access_token, jwt_claims, server_detail

ROOT = Path(__file__).resolve().parents[1]
SECRET = "do-not-leak-this-token-4711"


def _auth(handle: LabelStudioHandle) -> dict[str, str]:
    """The headers a hand-made call sends with the server's Personal Access Token (Bearer access)."""
    return LabelStudioAuth(handle.url, handle.token).headers()


def _jwt(claims: dict) -> str:
    """A JWT-shaped string with ``claims`` and a signature the server cannot have made."""

    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.{'x' * 43}"


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
    port = net.free_port()  # nothing listens there once the probe socket is closed
    with pytest.raises(settings.ServerNotReadyError) as info:
        readiness.wait_ready(f"http://127.0.0.1:{port}", timeout=1.0, token=SECRET, interval=0.2)
    assert isinstance(info.value, TimeoutError)
    _assert_no_secret(info.value)


def test_start_errors_do_not_leak_the_password(tmp_path: Path) -> None:
    with pytest.raises(settings.SetupError) as info:
        server.start(net.free_port(), tmp_path / "data", password=SECRET, venv=tmp_path / "no-venv")
    _assert_no_secret(info.value)


def test_token_kinds_and_server_texts() -> None:
    """A PAT is a JWT refresh token; anything else (an access token, a legacy key) is not one."""
    refresh = _jwt({"token_type": "refresh", "exp": 8103803972, "user_id": "1"})
    assert is_personal_access_token(refresh) and jwt_claims(refresh)["user_id"] == "1"
    assert not is_personal_access_token(_jwt({"token_type": "access", "exp": 1}))
    for legacy in ("inkloop-dev-token", "0" * 40, "a.b.c", ""):
        assert not is_personal_access_token(legacy)
    assert server_detail(b'{"detail": "Invalid token.", "status_code": 401}') == "Invalid token."
    assert server_detail(b'{"validation_errors": {"file": ["bad"]}}') == "file: bad"
    both = {
        "detail": "Validation error",
        "validation_errors": {"non_field_errors": [".tif is not supported"]},
    }
    assert server_detail(json.dumps(both)) == "Validation error: .tif is not supported"
    assert server_detail(b"<!DOCTYPE html><html>...").startswith("an HTML page")
    assert server_detail(b"") == "(empty answer)"


def test_saved_token_is_private(tmp_path: Path) -> None:
    token = _jwt({"token_type": "refresh", "exp": 8103803972})
    path = tokens.save_token(tmp_path, token)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert tokens.read_token(tmp_path) == token
    path.write_text("not-a-pat\n")
    assert tokens.read_token(tmp_path) is None  # only a PAT counts; the server mints a new one


def test_the_signing_key_is_written_once_privately_and_a_lost_one_is_named(tmp_path: Path) -> None:
    """The key that signs the PAT is the data dir's, written before the first start and kept."""
    tokens.ensure_signing_key(tmp_path)
    env_file = tmp_path / settings.ENV_FILE_NAME
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    key = tokens.signing_key(tmp_path)
    assert key is not None and len(key) >= 50 and tokens.signing_key_is_readable(key)
    tokens.ensure_signing_key(tmp_path)  # a second start keeps it
    assert tokens.signing_key(tmp_path) == key and env_file.read_text().count("SECRET_KEY=") == 1
    # a key Label Studio itself wrote starting with '$' (1 in 50): the data dir is named, not a 401 later
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / settings.ENV_FILE_NAME).write_text("\nSECRET_KEY=$x(k3y)#@\n")
    lost = r"broken/\.env: its SECRET_KEY starts with '\$'"
    with pytest.raises(settings.LabelStudioServerError, match=lost):
        tokens.ensure_signing_key(broken)


def test_a_template_whose_key_reads_back_empty_is_not_used(tmp_path: Path) -> None:
    """Every copy of such a template would hold a token its server refuses: it is rebuilt instead."""
    from inkloop.devservers.labelstudio import template

    fingerprint = template._fingerprint(settings.LABEL_STUDIO_VERSION, "u@example.com", "pw")
    (tmp_path / settings.DB_FILE_NAME).write_bytes(b"")
    (tmp_path / settings.TEMPLATE_META_NAME).write_text(json.dumps({"fingerprint": fingerprint}))
    (tmp_path / settings.ENV_FILE_NAME).write_text("\nSECRET_KEY=ok-key_1\n")
    assert template._template_usable(tmp_path, fingerprint)
    (tmp_path / settings.ENV_FILE_NAME).write_text("\nSECRET_KEY=$bad-key\n")
    assert not template._template_usable(tmp_path, fingerprint)


def test_private_venv_pythons_cache_their_bytecode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server venvs are installed without byte-compiling (setup time); their pythons must be
    free to write the caches, else every start recompiles Django where a machine sets this."""
    from inkloop.serving.venvs import clean_python_env

    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    # a caller's own Label Studio settings never reach the child: it runs with Label Studio's
    # defaults (legacy tokens off), whatever the shell that started it has set
    monkeypatch.setenv("LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN", "true")
    monkeypatch.setenv("LABEL_STUDIO_USER_TOKEN", SECRET)
    monkeypatch.setenv("SECRET_KEY", SECRET)  # would override the data dir's key the PAT is signed with
    env = server._child_env(
        data_dir=tmp_path / "data",
        document_root=tmp_path,
        username="u@example.com",
        password="pw",
        venv=tmp_path / "venv",
        extra_env=None,
    )
    assert "PYTHONDONTWRITEBYTECODE" not in env
    assert "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN" not in env and "LABEL_STUDIO_USER_TOKEN" not in env
    assert "SECRET_KEY" not in env
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
def test_label_studio_reads_the_signing_key_back_as_written(
    labelstudio: LabelStudioHandle, tmp_path: Path
) -> None:
    """Label Studio's own reader (django-environ, in its venv) on the key inkloop writes, and on a key
    starting with '$' as Django's generator makes one time in fifty: the first reads back as
    written; the second reads back empty (the 1-in-50 "Token is invalid" after a restart)."""
    tokens.ensure_signing_key(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / settings.ENV_FILE_NAME).write_text("\nSECRET_KEY=$x(k3y)#@\n")
    read = (
        "import os, sys, environ; environ.Env.read_env(os.path.join(sys.argv[1], '.env')); "
        "print(environ.Env().str('SECRET_KEY', ''))"
    )
    python = str(settings.default_venv() / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}

    def label_studio_reads(data_dir: Path) -> str:
        cmd = [python, "-c", read, str(data_dir)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        return out.stdout.strip()

    assert label_studio_reads(tmp_path) == tokens.signing_key(tmp_path)
    assert label_studio_reads(broken) == ""
    # the running server's own data dir holds a key it reads back (its PAT works: the fixture checked)
    assert label_studio_reads(labelstudio.data_dir) == tokens.signing_key(labelstudio.data_dir)


@pytest.mark.labelstudio
def test_the_servers_id_file_stays_in_its_data_dir(labelstudio: LabelStudioHandle) -> None:
    """Label Studio writes an id file in its config dir even with analytics off: not in ~/.config."""
    assert (labelstudio.data_dir / "config" / "label-studio" / "user_id").is_file()


@pytest.mark.labelstudio
@pytest.mark.slow
def test_token_works_and_is_required(labelstudio: LabelStudioHandle) -> None:
    """The server runs as Label Studio ships (PATs on, legacy tokens off) and the dev server's token
    is the admin's Personal Access Token: exchanged, it works as ``Bearer``; as ``Token`` (the
    legacy scheme) it is refused, and so is the admin's own legacy key."""
    assert labelstudio.token not in repr(labelstudio)
    assert is_personal_access_token(labelstudio.token)
    api = f"{labelstudio.url}/api/projects"
    ok = requests.get(api, headers=_auth(labelstudio), timeout=30)
    assert ok.status_code == 200, ok.text[:300]
    assert "results" in ok.json()
    jwt_settings = requests.get(f"{labelstudio.url}/api/jwt/settings", headers=_auth(labelstudio), timeout=30)
    assert jwt_settings.json() == {"api_tokens_enabled": True, "legacy_api_tokens_enabled": False}
    anonymous = requests.get(api, timeout=30)
    assert anonymous.status_code == 401
    as_legacy = requests.get(api, headers={"Authorization": f"Token {labelstudio.token}"}, timeout=30)
    assert as_legacy.status_code == 401 and as_legacy.json()["detail"] == "Invalid token."
    key = requests.get(f"{labelstudio.url}/api/current-user/token", headers=_auth(labelstudio), timeout=30)
    legacy = key.json()["token"]
    refused = requests.get(api, headers={"Authorization": f"Token {legacy}"}, timeout=30)
    assert refused.status_code == 401 and "legacy token authentication has been disabled" in refused.text
    wrong = requests.get(api, headers={"Authorization": f"Token {SECRET}"}, timeout=30)
    assert wrong.status_code == 401


@pytest.mark.labelstudio
def test_the_token_is_kept_in_the_data_dir_and_printed_by_token_sh(labelstudio: LabelStudioHandle) -> None:
    """What users are told to run (``export INKLOOP_LS_TOKEN="$(labeling/token.sh)"``) prints the
    server's PAT; the file it reads is the owner's only."""
    path = tokens.token_file(labelstudio.data_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    p = subprocess.run(
        ["bash", str(ROOT / "labeling" / "token.sh"), "--data-dir", str(labelstudio.data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "INKLOOP_REPO": str(ROOT)},
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == labelstudio.token


@pytest.mark.labelstudio
def test_an_access_token_refused_midway_is_exchanged_again(labelstudio: LabelStudioHandle) -> None:
    """A 401 on a cached access token (cut short, or a server restarted with a new key) gets one
    fresh exchange of the PAT and the call goes through; no access token is fetched per call."""
    auth = LabelStudioAuth(labelstudio.url, labelstudio.token)
    assert auth.whoami()["email"] == labelstudio.username and auth.exchanges == 1
    assert auth.whoami()["email"] == labelstudio.username and auth.exchanges == 1
    auth._access = _jwt({"token_type": "access", "exp": 8103803972, "user_id": "1"})  # the server refuses it
    assert auth.whoami()["email"] == labelstudio.username and auth.exchanges == 2


@pytest.mark.labelstudio
@pytest.mark.slow
def test_wrong_token_is_reported_without_leaking(labelstudio: LabelStudioHandle) -> None:
    """Refusals carry the server's own reason, for either kind of token, never the token."""
    with pytest.raises(settings.TokenRejectedError) as info:
        readiness.wait_ready(labelstudio.url, timeout=30, token=SECRET)
    _assert_no_secret(info.value)
    assert "legacy token" in str(info.value) and "Invalid token." in str(info.value)
    forged = _jwt({"token_type": "refresh", "exp": 8103803972, "user_id": "1", "note": SECRET})
    with pytest.raises(settings.TokenRejectedError) as forged_info:
        readiness.check_token(labelstudio.url, forged)
    assert "personal access token" in str(forged_info.value)
    assert "Token is invalid" in str(forged_info.value)
    assert forged not in str(forged_info.value)
    readiness.wait_ready(labelstudio.url, timeout=30, token=labelstudio.token)


@pytest.mark.labelstudio
@pytest.mark.slow
def test_busy_port_fails_loudly(labelstudio: LabelStudioHandle, tmp_path: Path) -> None:
    """Label Studio would silently take the next port; start() must refuse instead."""
    assert not net.port_is_free(labelstudio.port)
    with pytest.raises(settings.PortInUseError) as info:
        server.start(labelstudio.port, tmp_path / "other", password=SECRET)
    _assert_no_secret(info.value)
    assert not (tmp_path / "other" / settings.PID_FILE_NAME).exists()


@pytest.mark.labelstudio
@pytest.mark.slow
def test_generated_config_and_instructions_accepted(labelstudio: LabelStudioHandle) -> None:
    headers = _auth(labelstudio)
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

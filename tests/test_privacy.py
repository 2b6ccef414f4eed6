"""Nothing leaves the machine: inkloop's stages run under a network monitor (strace) with no
connection or DNS look-up outside loopback, because of the defaults in :mod:`inkloop.privacy`.

Each stage runs in its own child process whose environment has none of the usage-data switches
(the test harness's own offline settings are removed too), so what keeps it quiet is inkloop's
defaults alone. The monitor itself is checked on a deliberate look-up.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import netmonitor
import pytest

import inkloop
from inkloop import privacy

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "tests" / "fixtures" / "documents"
BUNDLED = Path(inkloop.__file__).parent / "assets" / "signature-detector"

pytestmark = pytest.mark.skipif(not Path(netmonitor.STRACE).exists(), reason="strace is not installed")

#: Switches a harness or a shell might already have set; none may reach the children.
_PRESET = {*privacy.DEFAULTS, privacy.ALLOW_ENV, "YOLO_OFFLINE", "HF_HUB_OFFLINE", "CI"}


def bare_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _PRESET}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def monitored(script: str, log: Path, *args: str, env: dict[str, str] | None = None) -> netmonitor.Monitored:
    m = netmonitor.run([sys.executable, "-c", textwrap.dedent(script), *args], log, env=env or bare_env())
    assert m.returncode == 0, m.stderr[-3000:]
    return m


def report(leaks: list[netmonitor.Leak]) -> str:
    return "calls leaving the machine:\n" + "\n".join(f"  {leak}" for leak in leaks)


# ------------------------------------------------------------------------------------ the module


def test_defaults_are_set_without_overriding_the_user() -> None:
    env = {"FIFTYONE_DO_NOT_TRACK": "false"}
    added = privacy.apply(env)
    assert env["FIFTYONE_DO_NOT_TRACK"] == "false" and "FIFTYONE_DO_NOT_TRACK" not in added
    assert env["ORT_DISABLE_TELEMETRY"] == "1" and added["ORT_DISABLE_TELEMETRY"] == "1"
    allowed = {privacy.ALLOW_ENV: "1"}
    assert privacy.apply(allowed) == {} and allowed == {privacy.ALLOW_ENV: "1"}
    child = privacy.child_env({"PATH": "/bin"})
    assert child["PATH"] == "/bin" and child["GRADIO_ANALYTICS_ENABLED"] == "False"


def test_import_inkloop_applies_the_defaults() -> None:
    code = "import os, inkloop; print(os.environ['ORT_DISABLE_TELEMETRY'], os.environ.get('CI'))"
    out = subprocess.run([sys.executable, "-c", code], env=bare_env(), capture_output=True, text=True)
    assert out.stdout.split() == ["1", "None"], out.stderr


def test_quiet_openvino_scope_restores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv(privacy.ALLOW_ENV, raising=False)
    with privacy.quiet_openvino():
        assert os.environ["CI"] == "true"
    assert "CI" not in os.environ
    monkeypatch.setenv("CI", "false")  # the user's own value is left alone
    with privacy.quiet_openvino():
        assert os.environ["CI"] == "false"


# ------------------------------------------------------------------------------------ the monitor


def test_monitor_reports_a_lookup_and_a_connection(tmp_path: Path) -> None:
    script = """
        import socket
        try:
            socket.getaddrinfo("example.com", 443)
        except OSError:
            pass
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(b"x", ("192.0.2.1", 9))  # TEST-NET-1: never routed, but the call is the leak
        l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen()
        socket.create_connection(l.getsockname()).close()  # loopback: not a leak
    """
    m = monitored(script, tmp_path / "strace.log")
    text = report(m.leaks)
    assert any(leak.port == 53 for leak in m.leaks), text
    assert any(leak.address == "192.0.2.1" and leak.call == "sendto" for leak in m.leaks), text
    assert not any(leak.address.startswith("127.") and leak.port != 53 for leak in m.leaks), text
    assert "python" in m.leaks[0].process


def test_parse_names_the_host_and_ignores_loopback(tmp_path: Path) -> None:
    log = tmp_path / "s.log"
    log.write_text(
        "12 connect(3, {sa_family=AF_INET, sin_port=htons(53), "
        'sin_addr=inet_addr("10.255.255.53")}, 16) = 0\n'
        '12 sendto(3, "\\253\\1\\1\\0\\0\\1\\0\\0\\0\\0\\0\\0'
        '\\6mobile\\6events\\4data\\tmicrosoft\\3com\\0", 48, '
        "MSG_NOSIGNAL, NULL, 0) = 48\n"
        '13 connect(5, {sa_family=AF_INET, sin_port=htons(8080), sin_addr=inet_addr("127.0.0.1")}, 16) = 0\n'
        "13 connect(6, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), "
        'inet_pton(AF_INET6, "2001:db8::1", &sin6_addr), sin6_scope_id=0}, 28) = -1\n'
        "13 connect(7, {sa_family=AF_INET6, sin6_port=htons(80), sin6_flowinfo=htonl(0), "
        'inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}, 28) = 0\n'
        '14 connect(8, {sa_family=AF_UNIX, sun_path="/tmp/mongodb-27017.sock"}, 110) = 0\n'
    )
    leaks = netmonitor.parse(log)
    assert [(x.pid, x.address, x.port) for x in leaks] == [
        (12, "10.255.255.53", 53),
        (13, "2001:db8::1", 443),
    ]


# ------------------------------------------------------------------------------------ the stages

DETECT = """
    import sys, time
    from inkloop import detect
    summary = detect([sys.argv[1]], sys.argv[2], verdict=False)
    time.sleep(8)  # onnxruntime's telemetry fires seconds after a session ran
"""


@pytest.fixture(scope="module")
def detected(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, netmonitor.Monitored]:
    tmp = tmp_path_factory.mktemp("privacy-detect")
    return tmp / "results", monitored(DETECT, tmp / "strace.log", str(DOCS), str(tmp / "results"))


def test_detection_in_a_long_lived_process_stays_local(detected: tuple[Path, netmonitor.Monitored]) -> None:
    results, m = detected
    assert (results / "results.jsonl").is_file()
    assert m.leaks == [], report(m.leaks)


CURATE = """
    import sys, uuid
    from inkloop.curation.cycle import import_results
    from inkloop.curation.store import CurationStore
    store = CurationStore("inkloop-privacy-" + uuid.uuid4().hex[:8])
    try:
        summary = import_results(store, sys.argv[1], images_dir=sys.argv[2])
        assert summary["added"] > 0, summary
    finally:
        store.delete()
"""


def test_curation_in_fiftyone_stays_local(
    detected: tuple[Path, netmonitor.Monitored], tmp_path: Path
) -> None:
    results, _ = detected
    env = bare_env(
        FIFTYONE_DATABASE_DIR=os.environ.get("FIFTYONE_DATABASE_DIR", str(ROOT / ".cache" / "fiftyone-db"))
    )
    m = monitored(CURATE, tmp_path / "strace.log", str(results), str(tmp_path / "images"), env=env)
    assert m.leaks == [], report(m.leaks)


REVIEW = """
    import sys
    from inkloop.routing import RoutingConfig
    from inkloop.review.labelstudio import LabelStudioReview, pull_to_file, push_results
    client = LabelStudioReview(sys.argv[1], sys.argv[2], project_title="privacy")
    routing = RoutingConfig(max_review_fraction=1.0, review_min_uncertainty=0.0)
    pushed = push_results(client, sys.argv[3], routing)
    assert pushed["pushed"] + pushed["already_present"] > 0, pushed
    pull_to_file(client, sys.argv[4])
"""


@pytest.mark.labelstudio
def test_review_push_and_pull_stay_local(
    labelstudio, detected: tuple[Path, netmonitor.Monitored], tmp_path: Path
) -> None:
    """The SDK side (a child under strace) and the server (strace attached to its process)."""
    results, _ = detected
    with netmonitor.Attached(labelstudio.pid, tmp_path / "server.log") as server:
        m = monitored(
            REVIEW,
            tmp_path / "client.log",
            labelstudio.url,
            labelstudio.token,
            str(results),
            str(tmp_path / "r.jsonl"),
        )
    assert m.leaks == [], report(m.leaks)
    assert server.leaks == [], report(server.leaks)


EXPORT = """
    import sys
    from pathlib import Path
    from inkloop.lifecycle.variants import _ultralytics_export
    out = _ultralytics_export(Path(sys.argv[1]), "openvino", int(sys.argv[2]))
    assert any(Path(out).glob("*.xml")), out
"""


NO_OPENVINO = importlib.util.find_spec("openvino") is None  # never imported here: its import sends


@pytest.mark.skipif(not (BUNDLED / "model.pt").exists(), reason="no bundled .pt")
@pytest.mark.skipif(NO_OPENVINO, reason="openvino is not installed")
def test_openvino_export_stays_local(tmp_path: Path) -> None:
    import json

    pt = tmp_path / "model.pt"
    shutil.copy(BUNDLED / "model.pt", pt)
    imgsz = int(json.loads((BUNDLED / "card.json").read_text()).get("input_size", 640))
    env = bare_env(YOLO_CONFIG_DIR=str(tmp_path / "yolo"), HOME=str(tmp_path))  # no consent file
    m = monitored(EXPORT, tmp_path / "strace.log", str(pt), str(imgsz), env=env)
    assert m.leaks == [], report(m.leaks)
    assert not (tmp_path / "intel").exists()  # no OpenVINO client id in the home


OPENVINO_DETECT = """
    import sys, time
    from inkloop import DetectOptions, detect
    detect([sys.argv[1]], sys.argv[2], DetectOptions(device="openvino"), verdict=False)
    time.sleep(3)  # OpenVINO's telemetry sends from a thread
"""


@pytest.mark.skipif(NO_OPENVINO, reason="openvino is not installed")
def test_detection_on_openvino_stays_local_and_writes_nothing_home(tmp_path: Path) -> None:
    """``import openvino`` itself makes OpenVINO's telemetry object and sends an ``import`` event
    (and writes ``~/intel/openvino_ga_cid``) unless it sees a CI: inkloop imports it in a scope."""
    home = tmp_path / "home"
    home.mkdir()
    env = bare_env(HOME=str(home))
    page, out = str(DOCS / "letter.jpg"), str(tmp_path / "out")
    m = monitored(OPENVINO_DETECT, tmp_path / "strace.log", page, out, env=env)
    assert (tmp_path / "out" / "results.jsonl").is_file()
    assert m.leaks == [], report(m.leaks)
    assert not (home / "intel").exists(), sorted(p.name for p in (home / "intel").iterdir())


def test_importing_onnxruntime_before_inkloop_is_called_out(tmp_path: Path) -> None:
    """onnxruntime decides about usage data when it is imported (``import pymupdf`` imports it), so
    inkloop's switch set afterwards is too late: measured under strace, such a process still
    looks up Microsoft's collector. inkloop says so instead of staying silent."""
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env["HOME"] = str(tmp_path)  # the late process writes onnxruntime's device id there
    late = subprocess.run(
        [sys.executable, "-W", "default", "-c", "import pymupdf, inkloop"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert late.returncode == 0, late.stderr
    assert "RuntimeWarning: onnxruntime was imported before inkloop" in late.stderr
    first = subprocess.run(
        [sys.executable, "-W", "default", "-c", "import inkloop, pymupdf"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert first.returncode == 0 and "onnxruntime was imported" not in first.stderr, first.stderr

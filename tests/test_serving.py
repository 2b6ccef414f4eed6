"""Serving: ``inkloop serve`` (a real PyTriton server in its own venv), ``triton://`` references,
the model repository for a stock Triton, and the browser demo (gradio_client and a real browser).

The server tests share one server (about 10 s to start); the venv is created from
requirements/triton.lock on first use (about 20 s with uv). What a stock Triton would do with the
exported repository is not tested here: this machine's tritonserver has no onnxruntime backend.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from inkloop.detection.detector import Detector
from inkloop.detection.pipeline import DetectionRun, DetectOptions
from inkloop.models.references import ModelError, ModelRef
from inkloop.models.resolve import resolve_model
from parity import TRITON_BOX, TRITON_PAGES_BOX

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server() -> Iterator[object]:
    from inkloop.serving.launcher import TritonServer

    srv = TritonServer("bundled")
    srv.start()
    work = srv.work
    assert work is not None and (work / "card.json").is_file()
    yield srv
    assert srv.stop() == 0, f"the server did not stop cleanly on SIGTERM:\n{srv.log_tail()}"
    assert not work.exists()  # its scratch folder is gone with the server


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.read().decode()


def _pages(out: Path) -> dict[tuple[str, int], list[dict]]:
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return {(Path(r["source"]).name, r["page"]["index"]): r["detections"] for r in rows}


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    worst = 0.0
    for key in a:
        assert len(a[key]) == len(b[key]), key
        for da, db in zip(a[key], b[key], strict=True):
            assert da["label"] == db["label"]
            worst = max(worst, abs(da["score"] - db["score"]), *np.abs(np.subtract(da["xyxy"], db["xyxy"])))
    return worst


def test_triton_reference_gives_the_local_detections(server, documents_dir: Path, tmp_path: Path) -> None:
    local = DetectionRun(tmp_path / "local", DetectOptions()).run([str(documents_dir)])
    assert local.detections > 0
    for name, ref in (("http", server.ref), ("grpc", server.grpc_ref)):
        det = Detector(ref)
        assert det.card.to_dict() == resolve_model(None).card.to_dict()  # the card came from the server
        assert det.session.get_providers() == ["Triton"]
        remote = DetectionRun(tmp_path / name, DetectOptions(model=ref)).run([str(documents_dir)])
        assert (remote.documents, remote.pages, remote.quarantined) == (local.documents, local.pages, 0)
        TRITON_BOX.check(_max_diff(_pages(tmp_path / "local"), _pages(tmp_path / name)), name)


def test_evaluate_through_triton_gives_the_local_report(server, pages_dir: Path) -> None:
    from inkloop.evaluation.evaluator import evaluate

    local = evaluate(None, pages_dir, plot=False).to_dict()
    remote = evaluate(server.ref, pages_dir, plot=False).to_dict()
    assert remote["model_ref"] == server.ref and local["n_images"] == remote["n_images"] == 4
    for key in ("tp", "fp", "fn", "map50", "map50_95", "precision", "recall"):
        assert remote[key] == pytest.approx(local[key], abs=1e-6), key


def test_bench_measures_a_served_model_against_its_local_copy(server, tmp_path: Path) -> None:
    """``inkloop bench --model triton://…``: the pipeline through the server beside the same pipeline
    inferring locally, in one run, with the same detections; the report says the server serves the
    local model's weights (same SHA-256), so the ratio measures serving, not two models."""
    report_path = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "inkloop", "bench", "--model", server.ref, "--quick", "--pages", "2"]
    cmd += ["--no-alternative", "--no-memory", "--out", str(report_path)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout + p.stderr
    report = json.loads(report_path.read_text())
    served = report["triton"]
    assert served["ref"] == server.ref and served["same_model"], served
    assert report["model"]["version"] == resolve_model(None).card.model_version  # the local copy: bundled
    for kind in ("images", "scanned", "digital"):
        row = served[kind]
        assert row["pipeline_triton_pages_per_second"] > 0 and row["ratio_triton_vs_local"] > 0
        assert row["agreement"]["pages_agree"] == row["agreement"]["pages"] > 0, (kind, row["agreement"])
    assert "through " + server.ref in p.stdout


def test_bench_served_model_options_fail_clearly() -> None:
    import typer

    from inkloop.cli.bench import served_contender

    assert served_contender("triton://h:1/m", None, None) == (None, "triton://h:1/m")
    assert served_contender("triton://h:1/m", None, "local.onnx") == ("local.onnx", "triton://h:1/m")
    assert served_contender("x.onnx", "triton://h:1/m", None) == ("x.onnx", "triton://h:1/m")
    with pytest.raises(typer.BadParameter, match="both name a served model"):
        served_contender("triton://h:1/m", "triton://h:2/m", None)
    with pytest.raises(typer.BadParameter, match="only goes with"):
        served_contender("x.onnx", None, "y.onnx")


def test_server_health_metrics_and_config(server) -> None:
    assert _get(f"{server.url}/v2/health/ready")[0] == 200
    assert _get(f"{server.url}/v2/health/live")[0] == 200
    config = json.loads(_get(f"{server.url}/v2/models/{server.name}/config")[1])
    assert config["max_batch_size"] == 8 and "dynamic_batching" in config
    assert {"inkloop-card", "inkloop-onnx-metadata"} <= set(config["parameters"])
    Detector(server.ref).detect([np.full((600, 400, 3), 255, np.uint8)])
    metrics = _get(server.metrics_url)[1]
    assert f'nv_inference_request_success{{model="{server.name}",version="1"}}' in metrics
    assert "nv_inference_queue_duration_us" in metrics


def test_page_bytes_model_returns_boxes_in_page_pixels(
    server, pages_dir: Path, documents_dir: Path, tmp_path
):
    import tritonclient.http as tc

    files = [documents_dir / "letter.jpg", *sorted(pages_dir.glob("tobacco800_*.png"))]
    DetectionRun(tmp_path / "local", DetectOptions()).run([str(f) for f in files])
    expected = _pages(tmp_path / "local")
    client = tc.InferenceServerClient(server.url.removeprefix("http://"))
    worst = 0.0
    for f in files:
        inp = tc.InferInput("page", [1, 1], "BYTES")
        inp.set_data_from_numpy(np.array([[f.read_bytes()]], dtype=object))
        res = client.infer(f"{server.name}-pages", [inp])
        boxes, scores = res.as_numpy("boxes")[0], res.as_numpy("scores")[0]
        labels = [x.decode() for x in res.as_numpy("labels")[0]]
        width, height = res.as_numpy("page_size")[0]
        want = expected[(f.name, 0)]
        assert len(boxes) == len(want) > 0, f.name
        assert labels == [d["label"] for d in want]
        assert boxes[:, 2].max() <= width and boxes[:, 3].max() <= height
        # page pixels, not network pixels: the page's own size, upright as inkloop reads it
        assert (int(width), int(height)) == ImageOps.exif_transpose(Image.open(f)).size
        for b, s, d in zip(boxes, scores, want, strict=True):
            worst = max(worst, float(np.abs(b - np.array(d["xyxy"])).max()))
            assert abs(float(s) - d["score"]) < 1e-3
    TRITON_PAGES_BOX.check(worst)


def test_server_down_mid_run_quarantines_the_batch_naming_the_server(documents_dir, pages_dir, tmp_path):
    from inkloop.detection.triton_backend import Retry
    from inkloop.serving.launcher import TritonServer

    files = [
        *sorted(documents_dir.iterdir()),
        *sorted(pages_dir.glob("*.png")),
        *sorted(pages_dir.glob("*.jpg")),
    ]
    unique = {hashlib.sha256(f.read_bytes()).hexdigest(): f for f in reversed(files)}  # letter.jpg is a page
    inputs = [str(f) for f in files if f in unique.values()]
    srv = TritonServer("bundled").start()
    try:
        det = Detector(srv.ref)
        det.session.retry = Retry(attempts=3, backoff=0.1, timeout=5)

        def progress(event: str, info: dict) -> None:
            if event == "document" and srv.process is not None and srv.process.poll() is None:
                assert srv.stop() == 0  # SIGTERM: a graceful stop

        opts = DetectOptions(batch_size=1, inference_workers=1)
        summary = DetectionRun(tmp_path / "out", opts, detector=det).run(inputs, progress)
    finally:
        srv.stop()
    done = {Path(k[0]).name for k in _pages(tmp_path / "out")}
    quarantined = [
        json.loads(line) for line in (tmp_path / "out" / "quarantine.jsonl").read_text().splitlines()
    ]
    assert summary.documents >= 1 and summary.quarantined >= 3
    assert done | {Path(q["source"]).name for q in quarantined} == {Path(i).name for i in inputs}  # none lost
    for q in quarantined:
        assert q["error"] == "inference_unavailable"
        assert f"127.0.0.1:{srv.http_port}" in q["reason"] and "did not answer" in q["reason"]
    from inkloop.detection.results import ResultStore

    with ResultStore(tmp_path / "out") as store:  # the next run tries them again
        assert not any(store.is_done(q["doc_id"]) for q in quarantined)


def test_a_model_that_cannot_load_is_a_clear_model_error(tmp_path: Path) -> None:
    from inkloop.serving.launcher import TritonServer

    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not an onnx file" * 100)
    srv = TritonServer(ModelRef(path=bad, card=resolve_model(None).card, ref=str(bad)), startup_timeout=60)
    with pytest.raises(ModelError, match=r"cannot load model .*broken\.onnx"):
        srv.start()
    assert srv.process is not None and srv.process.returncode == 4


def test_triton_references_parse_and_fail_clearly() -> None:
    from inkloop.detection.triton_backend import InferenceUnavailable, Retry, TritonSession, parse_triton_ref

    assert parse_triton_ref("triton://h:8000/m").server == "http://h:8000"
    assert parse_triton_ref("triton+grpc://h:8001/m").protocol == "grpc"
    for bad in ("triton://h:8000", "triton:///m", "triton://h:1/a/b"):
        with pytest.raises(ModelError, match="bad Triton reference"):
            parse_triton_ref(bad)
    with pytest.raises(ModelError, match="served by Triton"):
        resolve_model("triton://h:8000/m")
    with pytest.raises(InferenceUnavailable, match=r"127\.0\.0\.1:9 unavailable"):
        TritonSession("triton://127.0.0.1:9/m", retry=Retry(attempts=2, backoff=0.01, timeout=1))


def test_model_repository_for_a_stock_triton(tmp_path: Path) -> None:
    import onnxruntime as ort
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from inkloop.cli import main
    from inkloop.detection.triton_backend import _decode_parameter

    with pytest.raises(SystemExit) as exit_:
        main(["serve", "--write-repo", str(tmp_path / "repo")])
    assert exit_.value.code in (None, 0)
    folder = tmp_path / "repo" / "signature-detector"
    config = text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    sess = ort.InferenceSession(str(folder / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert config.backend == "onnxruntime" and config.max_batch_size == 8
    assert config.HasField("dynamic_batching")
    for ours, theirs in ((config.input, sess.get_inputs()), (config.output, sess.get_outputs())):
        assert [t.name for t in ours] == [t.name for t in theirs]
        for t, o in zip(ours, theirs, strict=True):
            assert o.shape[0] not in (1,) and not isinstance(o.shape[0], int)  # dynamic batch
            assert list(t.dims) == [d if isinstance(d, int) else -1 for d in o.shape[1:]]
            assert t.data_type == model_config_pb2.TYPE_FP32
    params = {k: {"string_value": v.string_value} for k, v in config.parameters.items()}
    card = json.loads((folder / "card.json").read_text())
    assert _decode_parameter(params, "inkloop-card") == card == resolve_model(None).card.to_dict()


def test_inkloop_serve_command_starts_and_stops_on_sigterm(tmp_path: Path) -> None:
    import signal
    import time

    from inkloop.net import free_port

    ports = [free_port("127.0.0.1") for _ in range(3)]
    inkloop = str(Path(sys.executable).with_name("inkloop"))
    cmd = [inkloop, "serve", "--http-port", str(ports[0]), "--grpc-port", str(ports[1])]
    log = tmp_path / "serve.log"
    scratch = tmp_path / "tmp"  # the command's TMPDIR: nothing may be left in it
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*cmd, "--metrics-port", str(ports[2])], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        deadline = time.monotonic() + 120
        while b"ready: triton://127.0.0.1" not in log.read_bytes():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        assert _get(f"http://127.0.0.1:{ports[0]}/v2/models/signature-detector-pages/ready")[0] == 200
        assert "nv_inference" in _get(f"http://127.0.0.1:{ports[2]}/metrics")[1]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "inkloop serve: stopping" in log.read_text()
    assert not list(scratch.iterdir())

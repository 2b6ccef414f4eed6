"""The public API: ``import inkloop`` stays light and exports what a Python user needs, and
``inkloop.detect`` is the one entry point (the command line writes exactly what it writes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import inkloop
from inkloop import api
from inkloop.detection.results import read_quarantine, read_results
from inkloop.routing import read_routing
from inkloop.verdict import read_verdicts

#: What ``import inkloop`` may load: the data model and the privacy switches, nothing heavy.
HEAVY = ("numpy", "onnxruntime", "pymupdf", "fitz", "cv2", "PIL", "fsspec", "yaml")


def test_import_inkloop_loads_no_stage_and_no_heavy_library() -> None:
    code = "import json, sys, inkloop; print(json.dumps(sorted(sys.modules)))"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    loaded = json.loads(p.stdout)
    ours = {m for m in loaded if m == "inkloop" or m.startswith("inkloop.")}
    assert ours == {"inkloop", "inkloop.privacy", "inkloop.types"}
    assert not [m for m in loaded if m.split(".")[0] in HEAVY]


def test_every_public_name_resolves_to_the_api_module() -> None:
    for name in api.__all__:
        assert getattr(inkloop, name) is getattr(api, name), name
    data_model = {"SCHEMA_VERSION", "Detection", "Document", "Page", "PageResult", "QuarantineRecord"}
    assert set(inkloop.__all__) == set(api.__all__) | data_model | {"__version__"}  # the lists agree
    assert {"detect", "DetectOptions", "read_results", "Registry", "ModelError"} <= set(api.__all__)
    assert {"detect", "PageResult", "__version__"} <= set(dir(inkloop))
    assert inkloop.PageResult is inkloop.types.PageResult  # the data model is the package's own
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        inkloop.nope  # noqa: B018


def _boxes(page: inkloop.PageResult) -> list[tuple[str, float, list[float]]]:
    return [(d.label, round(d.score, 4), [round(v, 1) for v in d.xyxy]) for d in page.detections]


def _folder(out: Path) -> dict[str, object]:
    """What a run wrote, without what differs between two runs (run ids, timings)."""
    pages = sorted((r.page_key, r.source, _boxes(r)) for r in read_results(out))
    routing = {k: (v.decision, round(v.uncertainty, 3)) for k, v in read_routing(out).items()}
    verdicts = sorted((v.source, v.verdict, v.config.get("threshold")) for v in read_verdicts(out))
    return {
        "pages": pages,
        "routing": routing,
        "verdicts": verdicts,
        "quarantine": sorted(q.source for q in read_quarantine(out)),
    }


def test_the_command_line_and_the_sdk_run_the_same_detection(tmp_path: Path, documents_dir: Path) -> None:
    """``inkloop detect --route`` and ``inkloop.detect(routing=...)``: one entry point, one default
    for verdicts (on), the same files."""
    inputs = [str(documents_dir / n) for n in ("unsigned form.pdf", "letter.jpg", "contract-signed.pdf")]
    cli_out, sdk_out = tmp_path / "cli", tmp_path / "sdk"
    p = subprocess.run(
        [sys.executable, "-m", "inkloop", "detect", *inputs, "--out", str(cli_out), "--route", "--no-tta"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    events: list[str] = []
    summary = inkloop.detect(
        inputs,
        sdk_out,
        routing=inkloop.RoutingConfig(tta=False),
        progress=lambda event, info: events.append(event),
    )
    assert summary.documents == 3 and summary.verdicts is not None and sum(summary.verdicts.values()) == 3
    assert events[0] == "start" and events[-1] == "end"
    assert _folder(sdk_out) == _folder(cli_out)
    assert len(read_routing(sdk_out)) == summary.pages


def test_without_verdicts_the_run_is_routed_once_and_says_so(tmp_path: Path, documents_dir: Path) -> None:
    events: list[tuple[str, dict[str, object]]] = []
    summary = inkloop.detect(
        [str(documents_dir / "letter.jpg")],
        tmp_path / "out",
        inkloop.DetectOptions(conf=0.3),
        routing=inkloop.RoutingConfig(tta=False, max_review_fraction=None),
        verdict=False,
        progress=lambda event, info: events.append((event, info)),
    )
    assert summary.verdicts is None and not (tmp_path / "out" / "verdicts.jsonl").exists()
    assert [e for e, _ in events][-2:] == ["routing", "end"]  # decisions first, then the end
    assert sum(events[-2][1].values()) == summary.pages == len(read_routing(tmp_path / "out"))


def test_a_model_error_is_raised_before_any_input_is_read(tmp_path: Path) -> None:
    with pytest.raises(inkloop.ModelError):
        inkloop.detect(["nowhere/"], tmp_path / "out", inkloop.DetectOptions(model=str(tmp_path / "no.onnx")))
    assert not (tmp_path / "out").exists()

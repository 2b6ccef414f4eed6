"""The throughput benchmark: it runs end to end and reports every field; detections agree.

No timing is asserted here: speeds depend on the machine and its load, and the targets are printed
by the benchmark itself. What is tested is that the benchmark measures what it says it measures,
and that the pipeline's detections match the obvious alternative's (pymupdf + ultralytics).
"""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from inkloop.benchmarks import agreement, bench, config, corpus
from inkloop.cli import app


def test_quick_bench_reports_every_field(tmp_path):
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(
        app, ["bench", "--quick", "--pages", "3", "--memory-pages", "2,4", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "pages/hour per worker" in res.output
    r = json.loads(out.read_text())
    assert set(r) >= {
        "config",
        "machine",
        "corpus",
        "model",
        "timings",
        "ratios",
        "agreement",
        "memory",
        "targets",
    }
    batch, workers = r["config"]["batch_size"], r["config"]["workers"]
    for kind in config.KINDS:
        assert r["corpus"][kind]["pages"] == 3
        t = r["timings"][kind]
        assert {"model_b1", f"model_b{batch}", "pipeline", "alternative"} <= set(t)
        assert any(name.endswith(f"_x{workers}") for name in t)  # the pipeline's own threading
        for row in t.values():
            assert row["pages"] > 0 and row["pages_per_second"] > 0 and row["cpu_ms_per_page"] > 0
            assert len(row["seconds"]) == r["config"]["rounds"]
        ratios = r["ratios"][kind]
        for key in ("pipeline_vs_model", "pipeline_vs_model_best", "pipeline_vs_alternative"):
            assert ratios[key] > 0
        a = r["agreement"][kind]
        assert a["pages"] == 3 and 0 <= a["agreement"] <= 1
        assert r["model"]["input_shapes"][kind]
    mem = r["memory"]
    assert mem["pages_2"]["pages"] == 2 and mem["pages_4"]["pages"] == 4
    assert mem["pages_2"]["peak_rss_mb"] >= mem["pages_2"]["rss_ready_mb"] > 0
    assert mem["ratio"] > 0
    for target in r["targets"].values():
        assert isinstance(target["met"], bool)


@pytest.fixture(scope="module")
def fixture_corpus(tmp_path_factory):
    """The four fixture pages as image files, as a scanned PDF (both writers) and born-digital."""
    root = tmp_path_factory.mktemp("corpus")
    pages = corpus.fixture_pages()
    jpegs = corpus.scan_jpegs(pages)
    return {
        "images": corpus.make_images(root / "images", len(pages), pages),
        "scanned": [
            corpus.make_scanned_pdf(root / "scanner.pdf", len(pages), jpegs),
            corpus.make_scanned_pdf(root / "pymupdf.pdf", len(pages), jpegs, style="pymupdf"),
        ],
        "digital": [
            corpus.make_digital_pdf(
                root / "digital.pdf", len(pages), [corpus._signature_crop(p) for p in pages]
            )
        ],
    }


def test_pipeline_and_alternative_agree_on_fixture_pages(tmp_path, fixture_corpus):
    """Same boxes as pymupdf at 150 dpi + ultralytics' predict, in page pixels.

    Images and born-digital pages reach the model through the same pixels as the alternative's,
    so they must agree exactly. Scans are decoded by DCT scaling, not MuPDF's image scaler, so a
    box may move a little or one near the threshold may flip; nothing more.
    """
    from inkloop.detection.pipeline import DetectionRun, DetectOptions
    from inkloop.models.resolve import resolve_model

    # one threshold for every page: the alternative knows no page domains
    run = DetectionRun(tmp_path / "x", DetectOptions(conf=resolve_model(None).card.conf_threshold))
    det = run.detector
    alt = agreement.Alternative(det.model.path, det.card.input_size, det.conf, det.iou)
    for kind, files in fixture_corpus.items():
        out = tmp_path / kind
        bench.pipeline_run(run, files, out)
        agree = agreement.compare(agreement.pipeline_boxes(out), alt.run(files), 4.0, det.conf, margin=0.1)
        assert agree["pages"] == sum(1 for _ in agreement.pipeline_boxes(out)) > 0
        if kind in ("images", "digital"):
            assert agree["agreement"] == 1.0, agree
        else:
            for m in agree["mismatches"]:
                assert m["threshold_flip"] or (
                    m["pipeline_boxes"] == m["alternative_boxes"] and m["min_paired_iou"] >= 0.7
                ), m


def test_scanned_corpus_takes_the_dct_fast_path(fixture_corpus):
    """Both ways of writing a scan (bare DeviceGray/RGB, pymupdf's ICC-based) are decoded by DCT
    scaling, never rendered: the benchmark measures the path real scans take."""
    import inkloop.documents.opening as documents

    calls = []
    real = documents._embedded_jpeg_view

    def spy(*args):
        view = real(*args)
        calls.append(view is not None)
        return view

    documents._embedded_jpeg_view = spy
    try:
        for pdf in fixture_corpus["scanned"]:
            with documents.open_document(pdf) as d:
                views = list(d.model_views(416))
            assert all(max(v.image.shape[:2]) == 416 and v.image.shape[2] == 3 for v in views)
    finally:
        documents._embedded_jpeg_view = real
    assert calls and all(calls)


def test_corpus_files_are_unique_but_show_the_same_pixels(tmp_path):
    pages = corpus.fixture_pages()
    files = corpus.make_images(tmp_path, len(pages) * 2, pages)
    digests = {hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    assert len(digests) == len(files)  # the pipeline would skip duplicates by content hash
    for f in files:
        src = pages[int(f.stem.split("-")[1]) % len(pages)]
        assert np.array_equal(np.asarray(Image.open(f)), np.asarray(Image.open(src)))
    jpeg = corpus.scan_jpegs(pages[:1])[0]
    assert Image.open(io.BytesIO(jpeg.data)).size == corpus.SCAN_PX


def test_compare_counts_threshold_flips_and_moves():
    box = (100.0, 100.0, 200.0, 150.0)
    ours = {
        ("a", 0): [(box, 0.9)],
        ("a", 1): [(box, 0.9), ((300, 300, 400, 350), 0.26)],
        ("a", 2): [(box, 0.9)],
    }
    theirs = {
        ("a", 0): [((101, 100, 201, 150), 0.88)],
        ("a", 1): [(box, 0.9)],
        ("a", 2): [((110, 100, 210, 150), 0.9)],
    }
    r = agreement.compare(ours, theirs, tolerance_px=4.0, conf=0.25)
    assert (r["pages"], r["pages_agree"], r["threshold_flips"]) == (3, 1, 1)
    moved = next(m for m in r["mismatches"] if m["page"] == 2)
    assert moved["max_deviation_px"] == 10 and not moved["threshold_flip"]

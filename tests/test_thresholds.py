"""Per-domain operating thresholds: a card may cut born-digital pages and scans at different scores.

Why it matters: the bundled detector's scores are not calibrated alike on the two domains, so
one threshold either drops digital signatures or floods scans with false boxes. These tests
check that every place that cuts boxes at the operating threshold (the detection run, the
verdict's ambiguous band, the evaluator, the card itself) cuts each page at its own domain's
threshold, and exactly where a one-threshold run at that value would.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import inkloop  # noqa: F401  (first: usage-data switches before onnxruntime loads)
from inkloop.api import DetectOptions, detect
from inkloop.detection.results import read_results
from inkloop.evaluation.report import ImagePredictions, compute_metrics
from inkloop.models.references import ModelCard, ModelError, Thresholds, bundled_model_path
from inkloop.types import Detection, Page, PageResult
from inkloop.verdict import VerdictConfig
from inkloop.verdict.judge import ink_from_results

DOCS = Path(__file__).parent / "fixtures" / "documents"
SIGNED = DOCS / "contract-signed.pdf"  # born digital: one placed signature (scores ≈ 0.8)
SCANS = DOCS / "scanned letters.pdf"  # four scanned pages with boxes from 0.01 to 0.9


def test_thresholds_per_domain_and_floor() -> None:
    th = Thresholds(0.3, {"digital": 0.15})
    assert th.of("digital") == 0.15
    assert th.of("scan") == 0.3 and th.of(None) == 0.3 and th.of("fax") == 0.3
    assert th.floor == 0.15
    assert Thresholds.of_value(0.4) == Thresholds(0.4) and Thresholds.of_value(th) is th
    assert Thresholds(0.25).floor == 0.25


def test_card_round_trip_and_validation(tmp_path: Path) -> None:
    card = ModelCard("m", "1", ["signature"], conf_threshold=0.3, domain_thresholds={"digital": 0.15})
    again = ModelCard.from_dict(json.loads(json.dumps(card.to_dict())))
    assert again.thresholds == Thresholds(0.3, {"digital": 0.15})
    old = ModelCard.from_dict({"name": "old", "version": "3", "class_names": ["s"]})
    assert old.thresholds.by_domain == {}
    for bad in ({"digital": 1.5}, {"digital": "low"}, ["digital", 0.1]):
        with pytest.raises(ModelError, match="card of m: domain_thresholds"):
            ModelCard.from_dict({**card.to_dict(), "domain_thresholds": bad})


def _model(folder: Path, conf: float, by_domain: dict[str, float]) -> str:
    """The bundled weights with a card that cuts pages at ``conf`` unless their domain says otherwise."""
    folder.mkdir(parents=True)
    shutil.copy(bundled_model_path(), folder / "model.onnx")
    card = json.loads((bundled_model_path().parent / "card.json").read_text())
    card.update(version="test", conf_threshold=conf, domain_thresholds=by_domain)
    (folder / "card.json").write_text(json.dumps(card))
    return str(folder / "model.onnx")


def _boxes(results: Path) -> dict[tuple[str, int], list[tuple[float, tuple[float, ...]]]]:
    return {
        (Path(r.source).name, r.page.index): [(d.score, d.xyxy) for d in r.detections]
        for r in read_results(results)
    }


def test_detection_cuts_each_page_at_its_domains_threshold(tmp_path: Path) -> None:
    """A card with thresholds per domain gives each page exactly the boxes of a one-threshold run
    at its domain's value; pages record their domain; the verdict's band follows the page."""
    model = _model(tmp_path / "m", 0.9, {"scan": 0.1, "digital": 0.5})
    inputs = [str(SIGNED), str(SCANS)]
    detect(inputs, tmp_path / "card", DetectOptions(model=model))
    detect(inputs, tmp_path / "at-0.1", DetectOptions(model=model, conf=0.1), verdict=False)
    detect(inputs, tmp_path / "at-0.5", DetectOptions(model=model, conf=0.5), verdict=False)
    detect(inputs, tmp_path / "at-0.9", DetectOptions(model=model, conf=0.9))
    got, low, mid = _boxes(tmp_path / "card"), _boxes(tmp_path / "at-0.1"), _boxes(tmp_path / "at-0.5")
    domains = {(Path(r.source).name, r.page.index): r.page.domain for r in read_results(tmp_path / "card")}
    assert domains == {(SIGNED.name, 0): "digital", **{(SCANS.name, i): "scan" for i in range(4)}}
    for key, domain in domains.items():
        assert got[key] == (low if domain == "scan" else mid)[key], key
    # the cut matters on both domains: scans keep boxes under 0.5, the digital page keeps its
    # signature, which one threshold at the card's default (0.9) drops
    assert any(s < 0.5 for p in range(4) for s, _ in got[(SCANS.name, p)])
    assert got[(SIGNED.name, 0)] and not _boxes(tmp_path / "at-0.9")[(SIGNED.name, 0)]
    verdicts = {
        Path(v["source"]).name: v for v in map(json.loads, (tmp_path / "card" / "verdicts.jsonl").open())
    }
    assert verdicts[SIGNED.name]["verdict"] == "signed"
    assert verdicts[SIGNED.name]["config"]["domain_thresholds"] == {"scan": 0.1, "digital": 0.5}
    at_09 = (tmp_path / "at-0.9" / "verdicts.jsonl").read_text().splitlines()
    one = {Path(v["source"]).name: v for v in map(json.loads, at_09)}
    # no box left on the line, but the signature image placed there: review, never `unsigned`
    assert one[SIGNED.name]["verdict"] == "needs_review"
    assert "an image placed on the place" in one[SIGNED.name]["places"][0]["reasons"][0]
    assert "domain_thresholds" not in one[SIGNED.name]["config"]


def _page_result(domain: str | None, score: float) -> PageResult:
    page = Page("d" * 64, 0, 1240, 1754, dpi=150.0, pdf_size=(595.0, 842.0), domain=domain)
    return PageResult(page, [Detection("signature", score, (100.0, 100.0, 300.0, 160.0))], "m@1")


def test_verdict_band_sits_on_the_pages_threshold() -> None:
    config = VerdictConfig.at(Thresholds(0.3, {"digital": 0.1}))
    assert config.threshold_of("digital") == 0.1 and config.threshold_of("scan") == 0.3
    # 0.3 is above the digital band (0.1 + 0.15) but inside the scan band (0.3 + 0.15)
    (digital,) = ink_from_results([_page_result("digital", 0.3)], config)
    (scan,) = ink_from_results([_page_result("scan", 0.3)], config)
    (unknown,) = ink_from_results([_page_result(None, 0.3)], config)
    assert not digital.ambiguous and scan.ambiguous and unknown.ambiguous
    assert "domain_thresholds" not in VerdictConfig(threshold=0.3).to_dict()


def _image(name: str, domain: str, scores: list[float]) -> ImagePredictions:
    """One ground-truth box; the first prediction on it, the others elsewhere."""
    boxes = [[10, 10, 50, 50]] + [[200 + 60 * i, 200, 250 + 60 * i, 250] for i in range(len(scores) - 1)]
    return ImagePredictions(
        path=name,
        gt_boxes=np.array([[10, 10, 50, 50]], float),
        gt_classes=np.array([0]),
        boxes=np.array(boxes, float),
        scores=np.array(scores, float),
        classes=np.zeros(len(scores), int),
        domain=domain,
    )


def test_evaluation_cuts_each_image_at_its_domains_threshold() -> None:
    images = [_image("d.png", "digital", [0.2, 0.12]), _image("s.png", "scan", [0.6, 0.2])]
    one, errors_one = compute_metrics(images, ["signature"], 0.3)
    per, errors_per = compute_metrics(images, ["signature"], Thresholds(0.3, {"digital": 0.15}))
    assert (one.tp, one.fp, one.fn) == (1, 0, 1)  # the digital signature (0.2) is under 0.3
    assert (per.tp, per.fp, per.fn) == (2, 0, 0)  # … and over the digital threshold; 0.12 is not
    assert per.operating_threshold == 0.3 and per.domain_thresholds == {"digital": 0.15}
    assert per.domains["digital"]["operating_threshold"] == 0.15
    assert per.domains["scan"]["operating_threshold"] == 0.3
    assert per.domains["digital"]["recall"] == 1.0 and one.domains["digital"]["recall"] == 0.0
    assert [len(e.missed) for e in errors_one] == [1, 0] and [len(e.missed) for e in errors_per] == [0, 0]
    assert per.to_dict()["domain_thresholds"] == {"digital": 0.15}
    assert "operating_threshold" not in one.domains["digital"]  # one threshold: nothing per domain

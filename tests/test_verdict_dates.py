"""Ink on a date line is a date, not a signature: from the text layer, and by real OCR on scans.

The scans here are made at test time: a memo page drawn with pymupdf (prose, a handwritten
signature crop from the fixture pages above a printed label), rendered to pixels and saved as an
image-only PDF or a PNG, so the verdict sees what a scanner gives it (no text layer) and RapidOCR
reads the printed label from the pixels.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pymupdf
import pytest

import verdict_corpus as vc
from inkloop.documents import ocr
from inkloop.types import Detection, Page, PageResult
from inkloop.verdict import VerdictConfig, analyze_document, verdict_for_document
from inkloop.verdict.dates import CROP, crop_box, on_date_line
from inkloop.verdict.rules import DATE_LINE

DPI = 150.0
K = DPI / 72.0
PROSE = (
    "Thank you for the figures on the second trial. The costs for the whole project are within the "
    "budget we agreed in March, and the results will be presented at the next meeting."
)
#: where the handwriting goes on the memo page, in points: above a rule, with the label under it
INK = (300.0, 420.0, 460.0, 470.0)


def _memo(path: Path, label: str, scan: bool, png: bool = False) -> None:
    """A one-page memo with handwriting on a rule labelled ``label``; a scan has no text layer."""
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    page.insert_textbox((72, 90, 523, 300), PROSE, fontsize=11, fontname="cour")
    page.draw_line((INK[0], INK[3]), (INK[2], INK[3]), width=0.8)
    page.insert_text((INK[0] + 20, INK[3] + 13), label, fontsize=10, fontname="cour")
    crop = vc.signature_crops()[0]
    buf = io.BytesIO()
    crop.save(buf, format="PNG")
    page.insert_image(pymupdf.Rect(*INK), stream=buf.getvalue(), keep_proportion=True)
    if not scan:
        vc._save(doc, path)
        return
    pix = page.get_pixmap(matrix=pymupdf.Matrix(K, K), colorspace=pymupdf.csGRAY, alpha=False)
    if png:
        pix.save(path)
        return
    out = pymupdf.open()
    out.new_page(width=595, height=842).insert_image(pymupdf.Rect(0, 0, 595, 842), stream=pix.tobytes("png"))
    vc._save(out, path)


def _result(path: Path, score: float = 0.9, raster: bool = False) -> PageResult:
    """The detector's box on the handwriting, as the pipeline writes it (pixels at 150 dpi)."""
    box = (INK[0] * K, INK[1] * K, INK[2] * K, INK[3] * K)
    page = (
        Page("doc", 0, round(595 * K), round(842 * K))
        if raster
        else Page("doc", 0, round(595 * K), round(842 * K), dpi=DPI, pdf_size=(595.0, 842.0))
    )
    return PageResult(page, [Detection("signature", score, box)], model_version="test@1", source=str(path))


def test_date_labels_are_whole_lines_in_several_languages() -> None:
    for text in (
        "Date",
        "Date:",
        "DATE",
        "Dated: ______",
        "Datum",
        "Data:",
        "Fecha",
        "Ort, Datum",
        "Place and date:",
        "Lieu et date :",
        "PlaceandDate",
        "date.....",
    ):
        assert DATE_LINE.match(text), text
    for text in ("Signature and date", "the date of this agreement", "Update", "Dates", "Signature:"):
        assert not DATE_LINE.match(text), text


def test_a_label_labels_ink_beside_or_under_it_not_right_of_or_above_it() -> None:
    ink = (100.0, 100.0, 200.0, 130.0)  # 30 high
    assert on_date_line(ink, (140.0, 128.0, 165.0, 140.0))  # under the rule it is written on
    assert on_date_line(ink, (50.0, 118.0, 95.0, 130.0))  # "Date:" just left of it, on its baseline
    assert not on_date_line(ink, (50.0, 98.0, 95.0, 112.0))  # left of its top: the line above's
    assert not on_date_line(ink, (230.0, 112.0, 260.0, 126.0))  # right: the next field's label
    assert not on_date_line(ink, (140.0, 70.0, 165.0, 82.0))  # above: another line's
    assert not on_date_line(ink, (140.0, 160.0, 165.0, 172.0))  # more than 0.8 heights below
    assert not on_date_line(ink, (20.0, 118.0, 40.0, 130.0))  # ends 60 before it: 2 heights
    # the crop read around a box holds a label at the reach on the left, and stays on the page
    x0, _y0, _x1, y1 = crop_box(ink, 10_000, 10_000)
    assert x0 == int(100 - CROP[0] * 30) and y1 >= 130 + 0.8 * 30
    assert crop_box(ink, 210, 150) == (10, 91, 210, 150)


def test_text_layer_date_lines_make_ink_on_them_ambiguous(tmp_path: Path) -> None:
    """A born-digital memo with no signing place: a confident box on its 'Date' line is a date
    (review), the same box on an 'Approved' line is ink-only evidence of signing."""
    dated, other = tmp_path / "dated.pdf", tmp_path / "other.pdf"
    _memo(dated, "Date", scan=False)
    _memo(other, "Approved", scan=False)
    ev = analyze_document(dated)
    assert ev.pages[0].text_layer and len(ev.date_lines[0]) == 1 and not ev.places
    v = verdict_for_document(dated, [_result(dated)], VerdictConfig())
    assert v.verdict == "needs_review", v.reasons
    assert v.ink[0].ambiguous and any("date line" in r for r in v.reasons)
    v = verdict_for_document(other, [_result(other)], VerdictConfig())
    assert v.verdict == "signed", v.reasons
    assert not v.ink[0].ambiguous


@pytest.mark.parametrize("png", [False, True], ids=["scanned_pdf", "png"])
def test_ocr_reads_the_date_label_of_a_scan(tmp_path: Path, png: bool) -> None:
    """No text layer: RapidOCR reads the printed label under the box from the page's pixels."""
    suffix = ".png" if png else ".pdf"
    dated, other = tmp_path / f"dated{suffix}", tmp_path / f"other{suffix}"
    _memo(dated, "Date", scan=True, png=png)
    _memo(other, "Approved", scan=True, png=png)
    assert not analyze_document(dated).pages[0].text_layer
    v = verdict_for_document(dated, [_result(dated, raster=png)], VerdictConfig())
    assert v.verdict == "needs_review", v.reasons
    assert v.reasons[0] == "only ambiguous ink and no place"
    assert any("1 box(es) of ink on a date line" in r for r in v.reasons)
    v = verdict_for_document(other, [_result(other, raster=png)], VerdictConfig())
    assert v.verdict == "signed", v.reasons
    assert not any("date line" in r for r in v.reasons)


def test_ocr_lines_come_back_in_the_images_pixels(tmp_path: Path) -> None:
    p = tmp_path / "memo.png"
    _memo(p, "Date", scan=True, png=True)
    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(p).convert("RGB"))
    lines = ocr.read_lines(img)
    label = [ln for ln in lines if DATE_LINE.match(ln.text)]
    assert len(label) == 1 and label[0].score > 0.8
    x0, _y0, x1, y1 = label[0].box  # printed at (320, 483) pt, 10 pt Courier: "Date" is 24 pt wide
    assert abs(x0 - 320 * K) < 10 and abs(y1 - 483 * K) < 12 and 30 < x1 - x0 < 70
    assert any("budget" in ln.text for ln in lines)  # the prose too, top to bottom
    assert lines == sorted(lines, key=lambda t: (t.box[1], t.box[0]))


def test_without_ocr_a_scan_is_judged_on_ink_alone_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RapidOCR not installed (its import fails): the verdict is the ink-only one, with the reason."""
    dated = tmp_path / "dated.pdf"
    _memo(dated, "Date", scan=True)
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)  # what `import` sees uninstalled
    ocr._engine.cache_clear()
    try:
        v = verdict_for_document(dated, [_result(dated)], VerdictConfig())
    finally:
        ocr._engine.cache_clear()
    assert v.verdict == "signed"
    assert any("not read for date lines (OcrUnavailable: OCR needs RapidOCR" in r for r in v.reasons), (
        v.reasons
    )

"""Rendering sees what a reader sees: ink that exists only as an Ink annotation or as vector paths
reaches the pixels the detector reads, on every path a page takes (the general render, the fast
scan path, people's rendering); form fields are drawn as PDF viewers draw them.

Every PDF is built here with pymupdf; the signatures are real ones (crops of the val split in
tests/fixtures/pages, traced into strokes by inkloop.documents.ink).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pymupdf
import pytest
from PIL import Image

import verdict_corpus as vc
from inkloop.detection.preprocess import prepare
from inkloop.documents.ink import draw_strokes, ink_mask, trace_strokes
from inkloop.documents.opening import open_document
from inkloop.documents.rendering import _embedded_jpeg_view

SIZE = 416
SIG = (120.0, 560.0, 330.0, 620.0)  # where the signature goes, PDF points (top-left origin)


@pytest.fixture(scope="module")
def crop() -> Image.Image:
    """A real signature from the val split (never trained on): the widest committed one."""
    return max(vc.signature_crops(), key=lambda c: c.width * c.height)


@pytest.fixture(scope="module")
def dark_crop() -> Image.Image:
    """A real signature in dark ink (a Tobacco800 val scan): still dark when the model shrinks it."""
    return min(vc.signature_crops(), key=lambda c: float(np.percentile(np.asarray(c.convert("L")), 5)))


def _text_contract(doc: pymupdf.Document) -> pymupdf.Page:
    page = doc.new_page(width=595, height=842)
    page.insert_text((72, 80), "SERVICE AGREEMENT", fontsize=16)
    page.insert_textbox((72, 110, 523, 330), vc.BODY["en"], fontsize=11)
    page.insert_text((72, 635), "Signature: " + "_" * 40, fontsize=10)
    return page


def _scan_page(doc: pymupdf.Document) -> pymupdf.Page:
    """A scanned page: one full-page JPEG of paper with printed lines, nothing else."""
    rng = np.random.default_rng(0)
    paper = (rng.normal(232, 6, (1100, 850, 3))).clip(0, 255).astype(np.uint8)
    for y in range(120, 500, 28):  # printed text lines, away from the signature
        paper[y : y + 6, 100:750] = 40
    buf = io.BytesIO()
    Image.fromarray(paper).save(buf, "JPEG", quality=85)
    page = doc.new_page(width=612, height=792)
    page.insert_image(page.rect, stream=buf.getvalue())
    return page


def _model_patch(path: Path, box: tuple[float, float, float, float]) -> np.ndarray:
    """The darkest channel of the model's input tensor (the detector's preprocessing) inside ``box``."""
    with open_document(path) as d:
        v = d.model_view(0, SIZE, "letterbox")
    chw, t = prepare(v.image, SIZE, "letterbox")
    k = v.page.dpi / 72.0

    def to_input(x: float, y: float) -> tuple[int, int]:
        ix = (x * k - v.offset[0]) / v.scale[0]
        iy = (y * k - v.offset[1]) / v.scale[1]
        return round(ix * t.gain_x + t.pad_x), round(iy * t.gain_y + t.pad_y)

    x0, y0 = to_input(box[0], box[1])
    x1, y1 = to_input(box[2], box[3])
    return chw[:, y0:y1, x0:x1].min(axis=0)


def _people_patch(path: Path, box: tuple[float, float, float, float], dpi: float = 150.0) -> np.ndarray:
    with open_document(path, people_dpi=dpi) as d:
        img = d.render_for_people(0)
    k = dpi / 72.0
    x0, y0, x1, y1 = (round(c * k) for c in box)
    return img[y0:y1, x0:x1].min(axis=2).astype(np.float32) / 255.0


def _ink_pixels(patch: np.ndarray) -> int:
    return int((patch < 0.45).sum())


def _build(path: Path, page_maker, ink: str, strokes=None) -> tuple[float, float, float, float]:
    doc = pymupdf.open()
    page = page_maker(doc)
    box = SIG
    if ink in ("annotation", "paths"):
        box = draw_strokes(page, strokes, SIG, as_annotation=ink == "annotation")
    doc.save(str(path))
    doc.close()
    return box


# -- vector ink reaches the model -------------------------------------------------------------------
@pytest.mark.parametrize("page_maker", [_text_contract, _scan_page], ids=["text", "scan"])
@pytest.mark.parametrize("ink", ["annotation", "paths"])
def test_vector_ink_reaches_the_model_and_people(
    tmp_path: Path, crop: Image.Image, page_maker, ink: str
) -> None:
    strokes = trace_strokes(crop)
    signed, blank = tmp_path / "signed.pdf", tmp_path / "blank.pdf"
    box = _build(signed, page_maker, ink, strokes)
    _build(blank, page_maker, "none")
    with pymupdf.open(str(signed)) as doc:
        page = doc[0]
        pix = page.get_pixmap(dpi=150, clip=pymupdf.Rect(box), annots=False)  # the content alone
        in_content = _ink_pixels(np.frombuffer(pix.samples, np.uint8).reshape(-1, pix.n).min(axis=1) / 255)
        if ink == "annotation":  # the ink exists only as an annotation, not in the page content
            assert [a.type[1] for a in page.annots()] == ["Ink"]
            assert in_content == 0
        else:
            assert page.first_annot is None and in_content >= 150
    # the model's input and people's rendering both carry the ink; the same page without it none
    assert _ink_pixels(_model_patch(signed, box)) >= 15, "the model's input has no ink in the box"
    assert _ink_pixels(_model_patch(blank, box)) == 0
    assert _ink_pixels(_people_patch(signed, box)) >= 150
    assert _ink_pixels(_people_patch(blank, box)) == 0


def test_the_fast_scan_path_steps_aside_for_annotations_and_drawings(
    tmp_path: Path, crop: Image.Image
) -> None:
    """A plain scan still takes the DCT-scaled path; ink drawn over the scan sends it to a full render."""
    strokes = trace_strokes(crop)
    for ink, fast_expected in (("none", True), ("annotation", False), ("paths", False)):
        p = tmp_path / f"scan-{ink}.pdf"
        _build(p, _scan_page, ink, strokes)
        with open_document(p) as d:
            view = d.model_view(0, SIZE)  # loads the page as the pipeline does
            page = d._pdf[0]
            fast = _embedded_jpeg_view(d._pdf, page, view.page, view.image.shape[1::-1])
        assert (fast is not None) is fast_expected, ink


# -- form fields as viewers draw them ---------------------------------------------------------------
def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def _orange(img: np.ndarray) -> int:
    """MuPDF's own "SIGN" tab (orange) that it paints on unsigned signature fields."""
    r, g, b = (img[:, :, i].astype(int) for i in range(3))
    return int(((r > 200) & (g > 60) & (g < 150) & (b < 100)).sum())


def _unsigned_signature_field(doc: pymupdf.Document) -> int:
    """A contract page with an unsigned signature field on ``SIG``; returns the widget's xref."""
    page = _text_contract(doc)
    w = pymupdf.Widget()
    w.field_type = pymupdf.PDF_WIDGET_TYPE_SIGNATURE
    w.field_name = "Signature1"
    w.rect = pymupdf.Rect(*SIG)
    page.add_widget(w)
    return next(iter(page.widgets())).xref


def _people(path: Path) -> np.ndarray:
    with open_document(path) as d:
        return d.render_for_people(0)


def test_a_signature_in_an_unsigned_signature_field_is_drawn_as_viewers_draw_it(
    tmp_path: Path, dark_crop: Image.Image
) -> None:
    """MuPDF paints its own "SIGN" tab over an unsigned signature field (over the first strokes of a
    signature placed in it) and ignores the field's appearance from the file; viewers (PDFium, as
    Chrome shows it) draw the file's appearance, or nothing. The renderings follow the viewers."""
    p = tmp_path / "field.pdf"
    boxes = vc.field_contract(p, "en", 1)  # pyHanko's field: an empty appearance
    x0, y0, x1, y1 = boxes[0]
    doc = pymupdf.open(str(p))
    doc[0].insert_image(pymupdf.Rect(x0, y0, x1, y1), stream=_png(dark_crop))  # the signature, in the field
    doc.save(str(tmp_path / "signed-in-field.pdf"))
    doc.close()
    signed = tmp_path / "signed-in-field.pdf"

    raw = pymupdf.open(str(signed))  # MuPDF as it is: its tab is on the page
    pix = raw[0].get_pixmap(dpi=150)
    before = np.frombuffer(pix.samples, np.uint8).reshape(pix.height, pix.width, 3)
    content = raw[0].get_pixmap(dpi=150, annots=False)  # the page content alone
    content_img = np.frombuffer(content.samples, np.uint8).reshape(content.height, content.width, 3)
    raw.close()
    assert _orange(before) > 200

    after = _people(signed)
    assert _orange(after) == 0
    # what remains of the field is its empty appearance: the page shows exactly its content
    k = 150 / 72
    fy0, fy1, fx0, fx1 = round(y0 * k), round(y1 * k), round(x0 * k), round(x1 * k)
    assert np.abs(after[fy0:fy1, fx0:fx1].astype(int) - content_img[fy0:fy1, fx0:fx1].astype(int)).max() <= 2
    assert _ink_pixels(_model_patch(signed, (x0, y0, x1, y1))) >= 15
    with pymupdf.open(str(signed)) as check:  # the file itself is untouched
        assert [w.field_type_string for w in check[0].widgets()] == ["Signature"]


def test_an_unsigned_signature_fields_own_appearance_is_drawn(tmp_path: Path) -> None:
    """A field whose file gives it an appearance (a blue box here) shows it, as viewers do."""
    p = tmp_path / "appearance.pdf"
    doc = pymupdf.open()
    xref = _unsigned_signature_field(doc)
    ap = doc.get_new_xref()
    doc.update_object(ap, "<< /Type /XObject /Subtype /Form /BBox [0 0 210 60] >>")
    doc.update_stream(ap, b"0 0 1 rg 0 0 50 30 re f")
    doc.xref_set_key(xref, "AP", f"<< /N {ap} 0 R >>")
    doc.save(str(p))
    doc.close()
    img = _people(p)
    blue = (img[:, :, 2] > 200) & (img[:, :, 0] < 60) & (img[:, :, 1] < 60)
    k = 150 / 72
    assert blue.sum() == pytest.approx(round(50 * k) * round(30 * k), rel=0.1)
    ys, xs = np.nonzero(blue)  # at the field's bottom-left corner, as the appearance says
    assert xs.min() == pytest.approx(SIG[0] * k, abs=2) and ys.max() == pytest.approx(SIG[3] * k, abs=2)
    assert _orange(img) == 0


def test_an_opaque_text_field_over_a_signature_hides_it_as_in_viewers(
    tmp_path: Path, crop: Image.Image
) -> None:
    """A text field whose own appearance paints white over an image hides it in viewers too (PDFium,
    measured): a reader sees no signature there, so neither does the model."""
    p = tmp_path / "covered.pdf"
    doc = pymupdf.open()
    page = _text_contract(doc)
    page.insert_image(pymupdf.Rect(*SIG), stream=_png(crop))
    w = pymupdf.Widget()
    w.field_type = pymupdf.PDF_WIDGET_TYPE_TEXT
    w.field_name = "name"
    w.field_value = ""
    w.fill_color = (1, 1, 1)
    w.rect = pymupdf.Rect(*SIG)
    page.add_widget(w)
    doc.save(str(p))
    doc.close()
    assert _ink_pixels(_model_patch(p, SIG)) == 0
    assert _ink_pixels(_people_patch(p, SIG)) == 0


# -- tracing real strokes ---------------------------------------------------------------------------
def test_traced_strokes_follow_the_signatures_ink(crop: Image.Image) -> None:
    """Redrawn at the crop's size, the strokes cover the crop's ink and add little beside it."""
    import cv2

    strokes = trace_strokes(crop)
    assert len(strokes.paths) >= 5 and strokes.size == crop.size
    mask = ink_mask(crop)
    drawn = np.zeros(mask.shape, np.uint8)
    for path in strokes.paths:
        cv2.polylines(drawn, [np.round(path).astype(np.int32)], False, 1, max(1, round(strokes.width)))
    near = cv2.dilate(drawn, np.ones((5, 5), np.uint8)).astype(bool)
    assert (mask & near).sum() / mask.sum() > 0.9  # the ink is traced
    near_ink = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert (drawn.astype(bool) & near_ink).sum() / drawn.sum() > 0.95  # and nothing invented
    with pytest.raises(ValueError, match="no ink"):
        trace_strokes(Image.new("RGB", (120, 40), "white"))


@pytest.mark.parametrize("ink", ["annotation", "paths"])
def test_the_box_draw_strokes_returns_is_the_ink_drawn_with_a_scaled_pen(crop: Image.Image, ink: str) -> None:
    """Thinner or thicker than traced, the returned box is where the rendered ink lies (a label)."""
    strokes = trace_strokes(crop)
    for width_scale in (0.3, 3.0):
        with pymupdf.open() as doc:
            page = doc.new_page(width=595, height=842)
            box = draw_strokes(page, strokes, SIG, as_annotation=ink == "annotation", width_scale=width_scale)
            pix = page.get_pixmap(dpi=288)  # 0.25 pt a pixel
        grey = np.frombuffer(pix.samples, np.uint8).reshape(pix.h, pix.w, pix.n).min(axis=2)
        ys, xs = np.nonzero(grey < 250)
        rendered = (xs.min() / 4, ys.min() / 4, (xs.max() + 1) / 4, (ys.max() + 1) / 4)
        assert np.allclose(box, rendered, atol=0.3), (width_scale, box, rendered)


def test_a_broken_signature_field_never_costs_the_page(tmp_path: Path) -> None:
    """A field whose appearance points nowhere is left to MuPDF: the page still renders."""
    p = tmp_path / "broken.pdf"
    doc = pymupdf.open()
    doc.xref_set_key(_unsigned_signature_field(doc), "AP", "<< /N 99999 0 R >>")
    doc.save(str(p))
    doc.close()
    with open_document(p) as d:
        view = d.model_view(0, SIZE)
        people = d.render_for_people(0)
    assert view.image.shape[2] == 3 and people.shape[:2] == (view.page.height, view.page.width)

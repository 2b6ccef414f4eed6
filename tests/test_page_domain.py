"""``inkloop.documents.domain``: which incoming pages are scans and which are born digital.

Each case is a real PDF built here with pymupdf the way the software that makes it would: a
scanner's full-page raster (with and without an invisible OCR layer, signed in a viewer with an
Ink annotation), a text contract with a placed signature image, a raster page with vector ink
drawn on it, an empty page; plus the committed fixture documents.
"""

from __future__ import annotations

import io
from pathlib import Path

import pymupdf
from domain_data import DIGITAL_PAGES, contract_pdf

import inkloop  # noqa: F401  (privacy switches before pymupdf)
from inkloop.documents.domain import DIGITAL, SCAN, document_page_domains, pdf_page_domains
from inkloop.documents.opening import open_document

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _scan_png(pages_dir: Path) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    with Image.open(pages_dir / "tobacco800_31.png") as im:
        im.convert("L").save(buf, "PNG")
    return buf.getvalue()


def test_pdf_pages_by_what_they_hold(tmp_path: Path, pages_dir: Path) -> None:
    png = _scan_png(pages_dir)
    doc = pymupdf.open()
    full = pymupdf.Rect(0, 0, 612, 792)
    doc.new_page(width=612, height=792).insert_image(
        full, stream=png, keep_proportion=False
    )  # 0: a scanner's page
    p = doc.new_page(width=612, height=792)  # 1: the same with an OCR layer (invisible text)
    p.insert_image(full, stream=png, keep_proportion=False)
    p.insert_text((72, 100), "MEMORANDUM to all staff", fontsize=12, render_mode=3)
    p = doc.new_page(width=612, height=792)  # 2: a scan signed in a viewer (an Ink annotation)
    p.insert_image(full, stream=png, keep_proportion=False)
    p.add_ink_annot([[(100, 600), (140, 580), (180, 610), (220, 590)]])
    p = doc.new_page(width=612, height=792)  # 3: a raster with vector ink drawn on the page itself
    p.insert_image(full, stream=png, keep_proportion=False)
    p.draw_polyline([(100, 600), (140, 580), (180, 610)], color=(0, 0, 0.6), width=1.5)
    p = doc.new_page(width=612, height=792)  # 4: a photo pasted in a corner of a text page
    p.insert_image(pymupdf.Rect(300, 400, 560, 700), stream=png)
    p.insert_text((72, 100), "Exhibit B", fontsize=12)
    doc.new_page(width=612, height=792)  # 5: empty, as software makes a blank page
    contract, _ = contract_pdf(pages_dir, DIGITAL_PAGES[0])  # 6: text contract, placed signature
    doc.insert_pdf(contract)
    path = tmp_path / "mixed.pdf"
    doc.save(path)
    assert pdf_page_domains(path) == [SCAN, SCAN, SCAN, DIGITAL, DIGITAL, DIGITAL, DIGITAL]


def test_documents_as_the_pipeline_opens_them() -> None:
    """Images and TIFF frames are scans; the fixture PDFs are a scanned batch and a text form."""
    docs = FIXTURES / "documents"
    got = {}
    for name in ("scanned letters.pdf", "unsigned form.pdf", "fax-batch.tiff", "letter.jpg"):
        with open_document(docs / name) as d:
            got[name] = document_page_domains(d.kind, d.path, d.document.page_count)
    assert got["scanned letters.pdf"] == [SCAN] * 4
    assert got["unsigned form.pdf"] == [DIGITAL]
    assert set(got["fax-batch.tiff"]) == {SCAN} and len(got["fax-batch.tiff"]) > 1
    assert got["letter.jpg"] == [SCAN]

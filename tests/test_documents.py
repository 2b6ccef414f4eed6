"""Opening documents: formats, page geometry, the two renderings, and every kind of bad input."""

from __future__ import annotations

import numpy as np
import pytest

from badfiles import make_all
from inkloop.documents.inputs import expand_inputs, sniff_media_type
from inkloop.documents.limits import DocumentError, Limits
from inkloop.documents.opening import open_document


def test_pdf_pages_geometry_and_model_size(documents_dir):
    with open_document(documents_dir / "scanned letters.pdf", people_dpi=150) as d:
        assert d.document.media_type == "application/pdf"
        assert d.document.page_count == 4
        views = list(d.model_views(416))
    for i, v in enumerate(views):
        assert v.page.index == i
        assert v.page.pdf_size == (612.0, 792.0)
        assert (v.page.width, v.page.height) == (1275, 1650)  # letter at 150 dpi, as MuPDF renders it
        assert max(v.image.shape[:2]) <= 416 * 1.05  # the model never gets more than it needs
        # the map from model pixels to page pixels covers the whole page
        assert v.to_page((0, 0, v.image.shape[1], v.image.shape[0])) == pytest.approx(
            (0, 0, 1275, 1650), abs=2
        )


def test_embedded_jpeg_fast_path_matches_rendering(documents_dir):
    """The DCT-scaled decode and pymupdf's rendering give the model the same picture."""
    import pymupdf

    with open_document(documents_dir / "scanned letters.pdf") as d:
        fast = d.model_view(0, 416)
        page = d._pdf[0]
        zoom = 416 / 792
        pix = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), colorspace=pymupdf.csRGB, alpha=False)
        slow = np.frombuffer(pix.samples, np.uint8).reshape(pix.height, pix.width, 3)
    assert abs(fast.image.shape[0] - slow.shape[0]) <= 2 and abs(fast.image.shape[1] - slow.shape[1]) <= 2
    h, w = min(fast.image.shape[0], slow.shape[0]), min(fast.image.shape[1], slow.shape[1])
    diff = np.abs(fast.image[:h, :w].astype(int) - slow[:h, :w].astype(int)).mean()
    assert diff < 12, diff


def test_multipage_tiff_and_images(documents_dir):
    with open_document(documents_dir / "fax-batch.tiff") as d:
        assert d.document.page_count == 2
        views = list(d.model_views(416))
        assert all(v.page.dpi is None and v.page.pdf_size is None for v in views)
        assert views[0].page.width == 1000
        assert views[0].image.shape[2] == 3
    with open_document(documents_dir / "letter.jpg") as d:
        v = d.model_view(0, 416)
        assert (v.page.width, v.page.height) == (480, 642) or v.page.width == 480
    with open_document(documents_dir / "contrat signé 2.png") as d:
        v = d.model_view(0, 416)
        assert max(v.image.shape[:2]) == 416
        sx, _sy = v.scale
        assert sx == pytest.approx(v.page.width / v.image.shape[1])


def test_doc_id_is_content_hash(tmp_path, documents_dir):
    import hashlib

    src = documents_dir / "letter.jpg"
    copy = tmp_path / "renamed.jpeg"
    copy.write_bytes(src.read_bytes())
    with open_document(src) as a, open_document(copy) as b:
        assert a.doc_id == b.doc_id == hashlib.sha256(src.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "kind,expected_error,words",
    [
        ("corrupt", "corrupt", "corrupt PDF"),
        ("empty", "empty", "empty file"),
        ("encrypted", "encrypted", "password"),
        ("bomb", "too_large", "decompression bomb"),
        ("unsupported", "unsupported", "unsupported file type"),
        ("truncated_pdf", "corrupt", "damaged"),
        ("truncated_jpeg", "corrupt", "truncated"),
    ],
)
def test_bad_inputs_raise_clear_errors(tmp_path, documents_dir, kind, expected_error, words):
    bad = make_all(tmp_path, documents_dir)[kind]
    with pytest.raises(DocumentError) as ei, open_document(bad) as d:
        for _ in d.model_views(416):
            pass
    assert ei.value.kind == expected_error
    assert words in ei.value.reason
    assert str(bad) in str(ei.value)  # the message names the file


def test_limits(documents_dir):
    with pytest.raises(DocumentError, match=r"4 pages, over the limit of 3"):
        open_document(documents_dir / "scanned letters.pdf", Limits(max_pages=3))
    with pytest.raises(DocumentError, match="over the limit"):
        open_document(documents_dir / "contrat signé 2.png", Limits(max_pixels=1000))


def test_fsspec_urls_and_folder_expansion(documents_dir):
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/inbox/a/letter.jpg", (documents_dir / "letter.jpg").read_bytes())
    fs.pipe("/inbox/b.pdf", (documents_dir / "unsigned form.pdf").read_bytes())
    fs.pipe("/inbox/.hidden", b"x")
    found = expand_inputs(["memory://inbox"])
    assert sorted(found) == ["memory:///inbox/a/letter.jpg", "memory:///inbox/b.pdf"]
    with open_document(found[0]) as d:
        assert d.document.page_count == 1 and d.document.url == found[0]
    local = expand_inputs([str(documents_dir)])
    assert len(local) == 7 and any("signé" in p for p in local)
    assert expand_inputs(["/does/not/exist.pdf"]) == ["/does/not/exist.pdf"]


def test_sniffing_ignores_names():
    assert sniff_media_type(b"%PDF-1.4 ...") == "pdf"
    assert sniff_media_type(b"\x89PNG\r\n\x1a\n....") == "png"
    assert sniff_media_type(b"\xff\xd8\xff\xe0") == "jpeg"
    assert sniff_media_type(b"II*\x00") == "tiff"
    assert sniff_media_type(b"PK\x03\x04") is None


def test_people_rendering_matches_page_pixels(documents_dir):
    with open_document(documents_dir / "unsigned form.pdf") as d:
        v = d.model_view(0, 416)
        img = d.render_for_people(0)
        assert img.shape[:2] == (v.page.height, v.page.width)
        assert "Signature" in d.page_text(0)


def test_exif_orientation_gives_the_upright_page(tmp_path, pages_dir):
    """A page stored sideways with an EXIF orientation tag is detected as the upright page."""
    from PIL import Image

    from inkloop.api import detect
    from inkloop.detection.results import read_results

    src = next(p for p in sorted(pages_dir.iterdir()) if p.suffix == ".png")
    with Image.open(src) as im:
        upright = im.convert("RGB")
    upright.save(tmp_path / "upright.jpg", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": the pixels are stored turned left
    upright.rotate(90, expand=True).save(tmp_path / "sideways.jpg", quality=95, exif=exif)

    with open_document(tmp_path / "sideways.jpg") as d:
        view = d.model_view(0, 416)
        people = d.render_for_people(0)
    assert (view.page.width, view.page.height) == upright.size
    assert people.shape[:2] == (upright.size[1], upright.size[0])

    detect([str(tmp_path / "upright.jpg"), str(tmp_path / "sideways.jpg")], tmp_path / "out", verdict=False)
    results = {r.source.rsplit("/", 1)[-1]: r for r in read_results(tmp_path / "out")}
    a, b = results["upright.jpg"].detections, results["sideways.jpg"].detections
    assert a, "the fixture page has a signature the bundled model finds"
    assert len(a) == len(b)
    for da, db in zip(sorted(a, key=lambda d: d.xyxy), sorted(b, key=lambda d: d.xyxy), strict=True):
        assert np.allclose(da.xyxy, db.xyxy, atol=6)  # JPEG re-encoding of a turned image: a few px

"""Is a page a scan or born digital? The rule that gives every incoming page its ``domain``.

Why it matters: a detector trained on scans can miss half the signatures on born-digital pages
(a signature image placed on a clean text PDF, ink drawn in a viewer), so datasets record each
page's domain and every evaluation and gate scores the two apart
(:mod:`inkloop.evaluation.domains`). Curation sets the domain of each imported page with this rule.

The rule, from what the file holds rather than from how the page looks:

- an image file (PNG, JPEG, a TIFF frame) is a ``scan``: a picture of paper, or a photo;
- a PDF page that is one raster covering (almost) the whole page, with no visible text and no
  vector drawing, is a ``scan`` (what a scanner or a scan-to-PDF app writes; an OCR text layer is
  invisible text and does not change that);
- any other PDF page is ``digital``: it has a text layer, vector content, or was made empty by
  software. Annotations (a signature drawn in a viewer) do not decide: a scanned page signed in a
  viewer is still a scan.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: The two domains inkloop knows (datasets may record others: ``photo``, ``fax``, …).
SCAN, DIGITAL = "scan", "digital"
#: The share of the page a single raster must cover for the page to be a scan. Scanners and
#: scan-to-PDF apps place the image edge to edge (1.0); 0.9 leaves room for a cropped margin.
FULL_PAGE_RASTER = 0.9
#: pymupdf's text trace type of invisible text (render mode 3: OCR layers over scans).
_INVISIBLE_TEXT = 3


def _raster_coverage(page: Any) -> float:
    """The largest share of the page one image covers (0 without images)."""
    area = abs(page.rect)
    best = 0.0
    for info in page.get_image_info():
        r = page.rect & type(page.rect)(info["bbox"])
        if area > 0 and not r.is_empty:
            best = max(best, abs(r) / area)
    return best


def _has_visible_text(page: Any) -> bool:
    return any(span.get("type") != _INVISIBLE_TEXT and span.get("chars") for span in page.get_texttrace())


def pymupdf_rect_grown(rect: Any, by: float = 1.0) -> Any:
    """``rect`` grown by ``by`` points on every side (a drawing's bounds may pass its annotation's)."""
    return type(rect)(rect.x0 - by, rect.y0 - by, rect.x1 + by, rect.y1 + by)


def _has_page_drawings(page: Any) -> bool:
    """Vector paths in the page's own content. pymupdf also lists annotations' appearances, which
    are left out here: ink added in a viewer does not make a scanned page born digital."""
    annots = [pymupdf_rect_grown(a.rect) for a in page.annots()]
    return any(not any(r.contains(d["rect"]) for r in annots) for d in page.get_drawings())


def pdf_page_domain(page: Any) -> str:
    """``scan`` or ``digital`` for one pymupdf page (the module docstring gives the rule)."""
    if (
        _raster_coverage(page) >= FULL_PAGE_RASTER
        and not _has_visible_text(page)
        and not _has_page_drawings(page)
    ):
        return SCAN
    return DIGITAL


def pdf_page_domains(path: str | os.PathLike[str]) -> list[str]:
    """The domain of every page of a local PDF file, in page order."""
    import pymupdf

    with pymupdf.open(str(Path(path)), filetype="pdf") as doc:
        return [pdf_page_domain(page) for page in doc]


def document_page_domains(kind: str, path: str | os.PathLike[str], page_count: int) -> list[str]:
    """The domain of every page of a document already opened and sniffed (``kind``: ``pdf``,
    ``png``, ``jpeg``, ``tiff``): PDFs page by page, images and TIFF frames ``scan``."""
    if kind == "pdf":
        return pdf_page_domains(path)
    return [SCAN] * page_count

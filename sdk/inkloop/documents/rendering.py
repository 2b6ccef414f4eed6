"""Rendering pages for two readers: the model's view at the resolution it needs (a scanned page's
embedded JPEG decoded with DCT scaling) and people's view at reading resolution, lazily; EXIF
orientation; MuPDF's store kept small; form fields drawn as PDF viewers draw them.

Both views show what a reader sees in a viewer: the page content *and* its annotations (an Ink
annotation drawn with a stylus, a stamp, a filled form field). MuPDF renders annotations by
default, and every rendering here keeps them (``annots=True``, said explicitly); the fast scan path
is only taken when the page has no annotation and nothing drawn over its image.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from inkloop.types import Page

#: MuPDF caches what it decodes (images, fonts) in a global store of up to 256 MB; pages are
#: rendered once each here, so the cache only grows RSS on long documents. Emptied every this
#: many rendered pages, and when a PDF is closed.
STORE_TRIM_PAGES = 16


def _trim_mupdf_store() -> None:
    import pymupdf

    pymupdf.TOOLS.store_shrink(100)


@dataclass
class PageView:
    """A page rendered for the model, and how its pixels map onto the page's pixels.

    ``page_px = offset + scale * image_px`` per axis.
    """

    page: Page
    image: np.ndarray
    scale: tuple[float, float]
    offset: tuple[float, float] = (0.0, 0.0)

    def to_page(self, xyxy: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        sx, sy = self.scale
        ox, oy = self.offset
        x0, y0, x1, y1 = xyxy
        return (
            min(max(ox + sx * x0, 0.0), self.page.width),
            min(max(oy + sy * y0, 0.0), self.page.height),
            min(max(ox + sx * x1, 0.0), self.page.width),
            min(max(oy + sy * y1, 0.0), self.page.height),
        )


def upright(source: Any, frame: Any) -> Any:
    """``frame`` (decoded from ``source``) turned the way its EXIF orientation says.

    Phones and some scanners store pages sideways with an orientation tag; viewers, ultralytics
    (``cv2.imread``) and the training labels all use the upright picture, so the pipeline does
    too: the page's width, height and boxes are those of the upright image.
    """
    from PIL import Image

    try:
        orientation = source.getexif().get(0x0112, 1)
    except Exception:  # an unreadable EXIF block is not a reason to lose the page
        return frame
    if not isinstance(orientation, int) or not 2 <= orientation <= 8:
        return frame
    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }[orientation]
    return frame.transpose(method)


_REF = re.compile(r"(\d+) 0 R")


def _field_key(doc: Any, xref: int, key: str) -> tuple[str, str]:
    """``key`` of a form field's widget, inherited from its parents as PDF form fields inherit."""
    for prefix in ("", "Parent/", "Parent/Parent/", "Parent/Parent/Parent/"):
        kind, value = doc.xref_get_key(xref, prefix + key)
        if kind != "null":
            return kind, value
    return "null", "null"


def show_fields_as_viewers_do(doc: Any, index: int) -> int:
    """Make page ``index`` of the open PDF ``doc`` draw its form fields as PDF viewers draw them.

    Why: MuPDF does not draw an *unsigned signature field* from the file. It replaces the field's
    appearance with one of its own, an orange "SIGN" tab over the field's top-left corner, and
    ignores the appearance the file gives the field (measured with pymupdf 2.0 / MuPDF 1.28 against
    PDFium, the renderer of Chrome, which draws the file's appearance, or nothing when it is empty
    or missing). A signature image placed in such a field, as e-signing tools and ``inkloop
    synth`` place them, had that tab painted over its first strokes, a mark no reader sees; and a
    field whose own appearance covers what is under it was not drawn at all. Here, in memory only
    (the file is never written), such a widget is hidden when the file gives it no appearance or
    an empty one (viewers draw nothing), and otherwise drawn as an annotation with the file's own
    appearance (``/Subtype /Stamp``: MuPDF keeps the appearance of a stamp that has one).

    Every other field is left to MuPDF, whose drawing matches the viewers': text and choice
    fields with their own appearance (an opaque background hides what is under it in Chrome too,
    so the model does not see a signature a reader cannot see), fields without one (MuPDF and
    PDFium both synthesize it), signed signature fields (their appearance from the file), hidden
    and no-view flags. Call it before the page is loaded (``doc[index]``): MuPDF reads a page's
    annotations when it loads the page. Cheap (a few dictionary reads); calling it again changes
    nothing. Returns how many widgets it changed; a malformed annotation array or field is left
    as MuPDF draws it (a cosmetic difference is never a reason to lose the page).
    """
    try:
        return _show_fields_as_viewers_do(doc, index)
    except Exception:  # broken /Annots or field dictionaries: MuPDF renders what it can
        return 0


def _show_fields_as_viewers_do(doc: Any, index: int) -> int:
    kind, value = doc.xref_get_key(doc.page_xref(index), "Annots")
    if kind == "xref":  # the array is an object of its own
        value = doc.xref_object(int(value.split()[0]))
    elif kind != "array":
        return 0
    changed = 0
    for ref in _REF.findall(value):
        xref = int(ref)
        if doc.xref_get_key(xref, "Subtype") != ("name", "/Widget"):
            continue
        if _field_key(doc, xref, "FT") != ("name", "/Sig") or _field_key(doc, xref, "V")[0] != "null":
            continue  # not a signature field, or a signed one: MuPDF draws the file's appearance
        ap_kind, ap = doc.xref_get_key(xref, "AP/N")
        if ap_kind == "xref" and doc.xref_is_stream(int(ap.split()[0])):
            has_ap = bool(doc.xref_stream(int(ap.split()[0])).strip())
        else:
            has_ap = ap_kind == "dict"  # appearance states: drawn as the file says
        if has_ap:
            doc.xref_set_key(xref, "Subtype", "/Stamp")
        else:
            flags_kind, flags = doc.xref_get_key(xref, "F")
            flags_n = int(flags) if flags_kind == "int" else 0
            if flags_n & 2:
                continue
            doc.xref_set_key(xref, "F", str(flags_n | 2))  # Hidden: nothing to draw, as in viewers
        changed += 1
    return changed


#: What may be on a scanned page besides its one image: invisible OCR text does not change pixels.
_SCAN_EXTRA_OK = {"ignore-text"}


def _embedded_jpeg_view(doc: object, page: object, pg: Page, size: tuple[int, int]) -> PageView | None:
    """Fast path for scanned pages: one JPEG covering the page, decoded with DCT scaling.

    A 300-dpi scan is decoded at 1/2 scale (libjpeg's scaled IDCT, as MuPDF does when it renders
    the page at 150 dpi) straight to reading resolution, then resized bilinearly to ``size``: the
    pixels ultralytics gets from a 150-dpi rendering, for a fraction of its cost (about 7 ms
    instead of 120 ms for a 2550×3300 scan). Only taken when it is safe: exactly one image, drawn
    once, JPEG with 1 or 3 components (DeviceGray/DeviceRGB or an ICC space of that size),
    axis-aligned and upright, covering the page, nothing else drawn (invisible OCR text aside),
    no annotation or form field (a signature drawn as an Ink annotation over a scan must reach the
    model: MuPDF's rendering draws it, the JPEG alone does not), no decode inversion or mask;
    anything else renders normally. Every check is cheap (well under
    a millisecond): the placement comes from ``get_image_info`` without hashes
    (``get_image_rects`` hashes the decoded image, 150 ms for a 300-dpi scan).
    """
    import io

    import pymupdf
    from PIL import Image

    assert isinstance(doc, pymupdf.Document) and isinstance(page, pymupdf.Page)
    if page.first_annot is not None or page.first_widget is not None:
        return None  # annotations are drawn over the page: only a full render shows them
    images = page.get_images(full=True)
    if len(images) != 1 or page.rotation:
        return None
    xref, smask, iw, ih, _bpc, cs, _alt, _name, filt, *_ = images[0]
    if filt != "DCTDecode" or smask or cs not in ("DeviceRGB", "DeviceGray", "ICCBased"):
        return None
    obj = doc.xref_object(xref)
    if "/Decode" in obj or "/Mask" in obj or "/ImageMask true" in obj:
        return None
    infos = page.get_image_info()
    if len(infos) != 1 or infos[0].get("colorspace") not in (1, 3) or infos[0].get("has-mask"):
        return None
    a, b, c, d, _e, _f = infos[0]["transform"]
    if abs(b) > 1e-6 or abs(c) > 1e-6 or a <= 0 or d <= 0:
        return None
    rect = pymupdf.Rect(infos[0]["bbox"])
    prect = page.rect
    if rect.width * rect.height < 0.97 * prect.width * prect.height:
        return None
    kinds = [k for k, _bbox in page.get_bboxlog()]
    if kinds.count("fill-image") != 1 or any(k not in _SCAN_EXTRA_OK for k in kinds if k != "fill-image"):
        return None
    raw = doc.xref_stream_raw(xref)
    with Image.open(io.BytesIO(raw)) as im:  # the header only: size and components
        if im.size != (iw, ih) or im.mode not in ("L", "RGB"):
            return None
        gray = im.mode == "L"
    k = (pg.dpi or 72.0) / 72.0  # points → page pixels
    # the image's own size in page pixels, and in model pixels
    reading = (rect.width * k, rect.height * k)
    fx, fy = size[0] / pg.width, size[1] / pg.height
    target = (max(1, round(reading[0] * fx)), max(1, round(reading[1] * fy)))
    denom = 1  # the largest DCT reduction that still gives at least reading resolution
    while denom < 8 and iw / (denom * 2) >= reading[0] - 0.5 and ih / (denom * 2) >= reading[1] - 0.5:
        denom *= 2
    flags = _CV2_REDUCED[(gray, denom)] | cv2.IMREAD_IGNORE_ORIENTATION  # a PDF ignores EXIF
    arr = cv2.imdecode(np.frombuffer(raw, np.uint8), flags)
    if arr is None:
        return None
    arr = cv2.resize(arr, target, interpolation=cv2.INTER_LINEAR)
    arr = cv2.cvtColor(arr, cv2.COLOR_GRAY2RGB if gray else cv2.COLOR_BGR2RGB)
    scale = (reading[0] / target[0], reading[1] / target[1])
    offset = ((rect.x0 - prect.x0) * k, (rect.y0 - prect.y0) * k)
    return PageView(pg, arr, scale, offset)


_CV2_REDUCED = {
    (True, 1): cv2.IMREAD_GRAYSCALE,
    (True, 2): cv2.IMREAD_REDUCED_GRAYSCALE_2,
    (True, 4): cv2.IMREAD_REDUCED_GRAYSCALE_4,
    (True, 8): cv2.IMREAD_REDUCED_GRAYSCALE_8,
    (False, 1): cv2.IMREAD_COLOR,
    (False, 2): cv2.IMREAD_REDUCED_COLOR_2,
    (False, 4): cv2.IMREAD_REDUCED_COLOR_4,
    (False, 8): cv2.IMREAD_REDUCED_COLOR_8,
}

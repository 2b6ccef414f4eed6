"""Open documents (PDF, TIFF, PNG, JPEG) from paths or storage URLs and yield pages one at a time.

Pages are prepared twice, for two readers (see ARCHITECTURE.md, "Rendering"): for the model at the
resolution it needs and no more, and for people at reading resolution, lazily. Every page view
carries the exact linear map from model-image pixels to page pixels, so boxes found on the small
rendering land exactly on the large one.

Anything that makes a document unreadable raises :class:`DocumentError` with a reason a person
can act on; the pipeline turns it into a quarantine record and carries on with the batch.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import cv2
import numpy as np

from inkloop.documents.hashing import sha256_file
from inkloop.types import Document, Page

MEDIA_TYPES = {
    "pdf": "application/pdf",
    "png": "image/png",
    "jpeg": "image/jpeg",
    "tiff": "image/tiff",
}
DAMAGE_WORDS = re.compile(r"cannot|failed|not a stream|truncated|premature|syntax error|unexpected", re.I)
SUPPORTED_SUFFIXES = {".pdf", ".png", ".jpg", ".jpeg", ".tif", ".tiff"}


#: MuPDF caches what it decodes (images, fonts) in a global store of up to 256 MB; pages are
#: rendered once each here, so the cache only grows RSS on long documents. Emptied every this
#: many rendered pages, and when a PDF is closed.
STORE_TRIM_PAGES = 16


def _trim_mupdf_store() -> None:
    import pymupdf

    pymupdf.TOOLS.store_shrink(100)


class DocumentError(Exception):
    """A document that cannot be processed; ``reason`` is short and meant for people."""

    def __init__(self, source: str, reason: str, kind: str = "unreadable") -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason
        self.kind = kind


@dataclass(frozen=True)
class Limits:
    """Guards against documents that would exhaust a worker."""

    max_pages: int = 2000
    max_pixels: int = 200_000_000  # per page, at its native or reading resolution
    max_bytes: int = 2_000_000_000


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


def sniff_media_type(head: bytes) -> str | None:
    """Identify the format by its magic bytes; file names lie."""
    if head.startswith(b"%PDF-") or b"%PDF-" in head[:1024]:
        return "pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    return None


def is_url(spec: str) -> bool:
    return "://" in spec and not spec.startswith("file://")


def expand_inputs(specs: Iterable[str]) -> list[str]:
    """Files named, folders walked (hidden files skipped), globs expanded; order is stable.

    A spec that matches nothing is returned as is, so the pipeline can quarantine it as
    "not found" instead of forgetting it.
    """
    import fsspec

    out: list[str] = []
    for spec in specs:
        spec = str(spec)
        fs, path = fsspec.core.url_to_fs(spec)
        protocol = spec.split("://", 1)[0] + "://" if is_url(spec) else ""
        if any(c in path for c in "*?["):
            matches = sorted(fs.glob(path))
        elif fs.isdir(path):
            matches = sorted(fs.find(path))
        else:
            out.append(spec)
            continue
        for m in matches:
            if any(part.startswith(".") for part in Path(m).parts[-1:]):
                continue
            if fs.isfile(m):
                out.append(protocol + m if protocol else m)
    seen: set[str] = set()
    return [s for s in out if not (s in seen or seen.add(s))]


class OpenedDocument:
    """A document made local, hashed and validated; iterate ``model_views`` for its pages."""

    def __init__(self, source: str, limits: Limits | None = None, people_dpi: float = 150.0) -> None:
        self.source = source
        self.limits = limits or Limits()
        self.people_dpi = people_dpi
        self._tmpdir: str | None = None
        self.path = self._materialize(source)
        size = self.path.stat().st_size
        if size == 0:
            raise DocumentError(source, "empty file (0 bytes)", "empty")
        if size > self.limits.max_bytes:
            raise DocumentError(source, f"file is {size} bytes, over the limit of {self.limits.max_bytes}")
        with self.path.open("rb") as f:
            head = f.read(2048)
        kind = sniff_media_type(head)
        if kind is None:
            raise DocumentError(
                source,
                "unsupported file type (not a PDF, PNG, JPEG or TIFF by its content)",
                "unsupported",
            )
        self.kind = kind
        self.doc_id = sha256_file(self.path)
        self._pdf = None
        self._tiff = None
        self._renders = 0
        page_count = self._open()
        self.document = Document(
            doc_id=self.doc_id,
            url=source,
            media_type=MEDIA_TYPES[kind],
            page_count=page_count,
            size_bytes=size,
        )

    # -- lifecycle -------------------------------------------------------------------------------
    def _materialize(self, source: str) -> Path:
        """Local files are used in place; remote URLs are copied to a private temp folder."""
        if not is_url(source):
            p = Path(source.removeprefix("file://"))
            if not p.exists():
                raise DocumentError(source, "file not found", "not_found")
            if not p.is_file():
                raise DocumentError(source, "not a regular file", "unsupported")
            return p
        import fsspec

        self._tmpdir = tempfile.mkdtemp(prefix="inkloop-")
        local = Path(self._tmpdir) / (Path(source.split("?", 1)[0]).name or "document")
        try:
            with fsspec.open(source, "rb") as src, local.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except FileNotFoundError as exc:
            raise DocumentError(source, "file not found", "not_found") from exc
        except Exception as exc:
            raise DocumentError(source, f"cannot read from storage: {exc.__class__.__name__}: {exc}") from exc
        return local

    def _open(self) -> int:
        if self.kind == "pdf":
            return self._open_pdf()
        return self._open_raster()

    def _open_pdf(self) -> int:
        import pymupdf

        try:
            doc = pymupdf.open(str(self.path), filetype="pdf")
        except Exception as exc:
            raise DocumentError(self.source, f"corrupt PDF ({_clean(exc)})", "corrupt") from exc
        if doc.needs_pass:
            doc.close()
            raise DocumentError(self.source, "encrypted PDF: a password is required to open it", "encrypted")
        n = doc.page_count
        if n == 0:
            doc.close()
            raise DocumentError(self.source, "PDF has no pages (corrupt or truncated)", "corrupt")
        if n > self.limits.max_pages:
            doc.close()
            raise DocumentError(
                self.source, f"{n} pages, over the limit of {self.limits.max_pages}", "too_large"
            )
        self._pdf = doc
        return n

    def _open_raster(self) -> int:
        from PIL import Image

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                im = Image.open(self.path)
                w, h = im.size
                if w * h > self.limits.max_pixels:
                    raise DocumentError(
                        self.source,
                        f"image is {w}×{h} = {w * h:,} pixels, over the limit of {self.limits.max_pixels:,} "
                        "(possible decompression bomb)",
                        "too_large",
                    )
                n = getattr(im, "n_frames", 1)
        except DocumentError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise DocumentError(
                self.source, f"image too large, possible decompression bomb ({exc})", "too_large"
            ) from exc
        except Exception as exc:
            raise DocumentError(
                self.source, f"corrupt {self.kind.upper()} image ({_clean(exc)})", "corrupt"
            ) from exc
        if n > self.limits.max_pages:
            raise DocumentError(
                self.source, f"{n} pages, over the limit of {self.limits.max_pages}", "too_large"
            )
        self._tiff = im
        return n

    def close(self) -> None:
        if self._pdf is not None:
            self._pdf.close()
            self._pdf = None
            _trim_mupdf_store()
        if self._tiff is not None:
            self._tiff.close()
            self._tiff = None
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> OpenedDocument:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- pages -----------------------------------------------------------------------------------
    def model_views(self, model_size: int, mode: str = "letterbox") -> Iterator[PageView]:
        """Yield each page rendered at the size the model needs; one page in memory at a time."""
        for i in range(self.document.page_count):
            try:
                yield self.model_view(i, model_size, mode)
            except DocumentError:
                raise
            except Exception as exc:
                raise DocumentError(
                    self.source, f"page {i + 1}: cannot render ({_clean(exc)})", "corrupt"
                ) from exc

    def model_view(self, index: int, model_size: int, mode: str = "letterbox") -> PageView:
        if self.kind == "pdf":
            return self._pdf_view(index, model_size, mode)
        return self._raster_view(index, model_size, mode)

    def _pdf_view(self, index: int, model_size: int, mode: str) -> PageView:
        import pymupdf

        assert self._pdf is not None
        page = self._pdf[index]
        rect = page.rect
        w_pt, h_pt = float(rect.width), float(rect.height)
        if w_pt <= 0 or h_pt <= 0:
            raise DocumentError(self.source, f"page {index + 1}: empty page box", "corrupt")
        dpi = self.people_dpi
        ir = (rect * pymupdf.Matrix(dpi / 72.0, dpi / 72.0)).irect  # the size MuPDF renders at dpi
        pw, ph = ir.width, ir.height
        if pw * ph > self.limits.max_pixels:
            raise DocumentError(
                self.source, f"page {index + 1}: {pw}×{ph} px at {dpi:g} dpi, over the limit", "too_large"
            )
        pg = Page(self.doc_id, index, pw, ph, dpi=dpi, pdf_size=(w_pt, h_pt))
        # The model sees what ultralytics' predict (and training) gives it: the page at reading
        # resolution, bilinear-resized to the model's size, so detections match theirs. Made
        # cheaply: a scanned page's JPEG is decoded by DCT scaling straight to reading resolution.
        side = max(pw, ph) if mode == "letterbox" else min(pw, ph)
        r = min(1.0, model_size / side)
        size = (max(1, round(pw * r)), max(1, round(ph * r)))
        pymupdf.TOOLS.mupdf_warnings(reset=True)
        self._renders += 1
        if self._renders % STORE_TRIM_PAGES == 0:  # both paths fill the store (the fast one with
            _trim_mupdf_store()  # each page's compressed image, when it inspects the page)
        fast = _embedded_jpeg_view(self._pdf, page, pg, size)
        if fast is not None:
            return fast
        k = dpi / 72.0
        pix = page.get_pixmap(matrix=pymupdf.Matrix(k, k), colorspace=pymupdf.csRGB, alpha=False)
        self._check_damage(index)
        full = np.frombuffer(pix.samples_mv, dtype=np.uint8).reshape(pix.height, pix.width, pix.n)
        if (pix.width, pix.height) != size:
            img = cv2.resize(full, size, interpolation=cv2.INTER_LINEAR)
        else:
            img = full.copy()
        scale = (pix.width / img.shape[1], pix.height / img.shape[0])
        del full, pix
        return PageView(pg, img, scale)

    def _check_damage(self, index: int) -> None:
        """MuPDF renders what it can of a damaged page and only warns; a half-blank page would
        hide signatures, so such pages quarantine their document instead."""
        import pymupdf

        for line in str(pymupdf.TOOLS.mupdf_warnings(reset=True)).splitlines():
            if DAMAGE_WORDS.search(line):
                repaired = (
                    " (the file was repaired: truncated or corrupt)"
                    if self._pdf and self._pdf.is_repaired
                    else ""
                )
                raise DocumentError(
                    self.source, f"page {index + 1}: damaged content: {line.strip()}{repaired}", "corrupt"
                )

    def _raster_view(self, index: int, model_size: int, mode: str) -> PageView:
        assert self._tiff is not None
        im = self._tiff
        if index:
            im.seek(index)
        w, h = im.size
        if w * h > self.limits.max_pixels:
            raise DocumentError(self.source, f"page {index + 1}: {w}×{h} pixels, over the limit", "too_large")
        # Decoded whole and resized bilinearly, as ultralytics' predict (and training) does with
        # an image file, so detections match theirs; gray pages stay gray until they are small.
        try:
            gray = im.mode in ("1", "LA", "I;16")
            frame = im if im.mode in ("L", "RGB") else im.convert("L" if gray else "RGB")
            frame.load()
            frame = upright(im, frame)
        except Exception as exc:
            raise DocumentError(
                self.source, f"page {index + 1}: corrupt or truncated image ({_clean(exc)})", "corrupt"
            ) from exc
        w, h = frame.size  # a rotated photo's page is its upright size: boxes refer to that
        pg = Page(self.doc_id, index, w, h)
        side = max(w, h) if mode == "letterbox" else min(w, h)
        r = min(1.0, model_size / side)
        arr = np.asarray(frame)
        tw, th = max(1, round(w * r)), max(1, round(h * r))
        if (tw, th) != (w, h):
            arr = cv2.resize(arr, (tw, th), interpolation=cv2.INTER_LINEAR)
        if arr.ndim == 2:
            arr = cv2.cvtColor(arr, cv2.COLOR_GRAY2RGB)
        dh, dw = arr.shape[:2]
        return PageView(pg, np.ascontiguousarray(arr), (w / dw, h / dh))

    def render_for_people(self, index: int, dpi: float | None = None) -> np.ndarray:
        """The page at reading resolution (PDF: ``dpi``; images: native pixels), RGB."""
        if self.kind == "pdf":
            import pymupdf

            assert self._pdf is not None
            z = (dpi or self.people_dpi) / 72.0
            pix = self._pdf[index].get_pixmap(
                matrix=pymupdf.Matrix(z, z), colorspace=pymupdf.csRGB, alpha=False
            )
            return np.frombuffer(pix.samples, dtype=np.uint8).reshape(pix.height, pix.width, pix.n).copy()
        from PIL import Image

        with Image.open(self.path) as im:
            im.seek(index)
            return np.asarray(upright(im, im.convert("RGB"))).copy()

    def page_text(self, index: int) -> str:
        """The PDF text layer of a page ('' for images); used by routing's document cues."""
        if self._pdf is None:
            return ""
        return str(self._pdf[index].get_text("text"))


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
    no decode inversion or mask; anything else renders normally. Every check is cheap (well under
    a millisecond): the placement comes from ``get_image_info`` without hashes
    (``get_image_rects`` hashes the decoded image, 150 ms for a 300-dpi scan).
    """
    import io

    import pymupdf
    from PIL import Image

    assert isinstance(doc, pymupdf.Document) and isinstance(page, pymupdf.Page)
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


def _clean(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    return msg[:200]


def open_document(
    source: str | os.PathLike[str], limits: Limits | None = None, people_dpi: float = 150.0
) -> OpenedDocument:
    """Open, hash and validate a document; raises :class:`DocumentError` with the reason."""
    return OpenedDocument(str(source), limits, people_dpi)


def plan_batches(
    inbox: str | Iterable[str], docs_per_batch: int = 20, max_batches: int | None = None
) -> list[list[str]]:
    """Split an inbox listing into batches for dynamic task mapping (one mapped task per batch)."""
    specs = [inbox] if isinstance(inbox, str) else list(inbox)
    files = expand_inputs(specs)
    if docs_per_batch < 1:
        raise ValueError("docs_per_batch must be at least 1")
    if max_batches and len(files) > docs_per_batch * max_batches:
        docs_per_batch = -(-len(files) // max_batches)
    return [files[i : i + docs_per_batch] for i in range(0, len(files), docs_per_batch)]

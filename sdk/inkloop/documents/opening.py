"""Open documents (PDF, TIFF, PNG, JPEG) from paths or storage URLs and yield pages one at a time.

Inputs are found by :mod:`inkloop.documents.inputs`, pages rendered by
:mod:`inkloop.documents.rendering`, refusals described by :mod:`inkloop.documents.limits`.

Pages are prepared twice, for two readers (docs/architecture.md, "Documents"): for the model at the
resolution it needs and no more, and for people at reading resolution, lazily. Every page view
carries the exact linear map from model-image pixels to page pixels, so boxes found on the small
rendering land exactly on the large one.

Anything that makes a document unreadable raises :class:`DocumentError` with a reason a person
can act on; the pipeline turns it into a quarantine record and carries on with the batch.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from inkloop.documents.domain import SCAN, pdf_page_domain
from inkloop.documents.hashing import sha256_file
from inkloop.documents.inputs import MEDIA_TYPES, is_url, sniff_media_type
from inkloop.documents.limits import DAMAGE_WORDS, DocumentError, Limits, _clean
from inkloop.documents.rendering import (
    STORE_TRIM_PAGES,
    PageView,
    _embedded_jpeg_view,
    _trim_mupdf_store,
    show_fields_as_viewers_do,
    upright,
)
from inkloop.types import Document, Page


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
        from inkloop import storage

        self._tmpdir = tempfile.mkdtemp(prefix="inkloop-")
        try:
            local = Path(storage.download(source, self._tmpdir))
        except storage.StorageError as exc:
            if exc.kind == "not_found":  # listed, then gone (deleted mid-run)
                raise DocumentError(source, "file not found", "not_found") from exc
            raise DocumentError(source, f"cannot read from storage: {exc.reason}") from exc
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
        show_fields_as_viewers_do(self._pdf, index)  # before the page loads its annotations
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
        try:
            domain: str | None = pdf_page_domain(page)
        except Exception:  # a damaged content stream: the page is still read, at the default threshold
            domain = None
        pg = Page(self.doc_id, index, pw, ph, dpi=dpi, pdf_size=(w_pt, h_pt), domain=domain)
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
        pix = page.get_pixmap(  # annotations included: ink drawn in a viewer is a signature too
            matrix=pymupdf.Matrix(k, k), colorspace=pymupdf.csRGB, alpha=False, annots=True
        )
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
        pg = Page(self.doc_id, index, w, h, domain=SCAN)
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
            show_fields_as_viewers_do(self._pdf, index)  # the same page the model saw
            pix = self._pdf[index].get_pixmap(
                matrix=pymupdf.Matrix(z, z), colorspace=pymupdf.csRGB, alpha=False, annots=True
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


def open_document(
    source: str | os.PathLike[str], limits: Limits | None = None, people_dpi: float = 150.0
) -> OpenedDocument:
    """Open, hash and validate a document; raises :class:`DocumentError` with the reason."""
    return OpenedDocument(str(source), limits, people_dpi)

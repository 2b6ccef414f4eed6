"""Building the benchmark's corpus from the committed sample pages: page images, scanned PDFs (one
large embedded JPEG per page, as scanners write them) and born-digital PDFs (text, vector
drawings and a pasted signature image). Each copy of a page is made byte-unique so no cache helps."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from inkloop.benchmarks.config import KINDS, BenchConfig

#: Where the committed sample pages live in a source checkout (the default page source).
FIXTURE_PAGES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "pages"


#: A scanned US-letter page at 300 dpi, the size real scanners produce.
SCAN_PX = (2550, 3300)


LETTER_PT = (612.0, 792.0)


def fixture_pages(pages_dir: str | Path | None = None) -> list[Path]:
    d = Path(pages_dir) if pages_dir else FIXTURE_PAGES
    pages = sorted(p for p in d.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not pages:
        raise FileNotFoundError(
            f"no page images in {d}; pass --pages-dir with PNG/JPEG pages (a source checkout has "
            "tests/fixtures/pages)"
        )
    return pages


def unique_jpeg(data: bytes, tag: str) -> bytes:
    """The same JPEG with a COM segment carrying ``tag``: same pixels, different bytes and hash."""
    assert data[:2] == b"\xff\xd8", "not a JPEG"
    body = tag.encode()
    return data[:2] + b"\xff\xfe" + struct.pack(">H", len(body) + 2) + body + data[2:]


def unique_png(data: bytes, tag: str) -> bytes:
    """The same PNG with a ``tEXt`` chunk carrying ``tag`` right after IHDR."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    ihdr_end = 8 + 4 + 4 + 13 + 4
    payload = b"Comment\x00" + tag.encode()
    chunk = struct.pack(">I", len(payload)) + b"tEXt" + payload
    chunk += struct.pack(">I", zlib.crc32(chunk[4:]) & 0xFFFFFFFF)
    return data[:ihdr_end] + chunk + data[ihdr_end:]


def _signature_crop(page: Path) -> bytes | None:
    """The first labelled signature of a fixture page, as PNG bytes (for born-digital pages)."""
    from PIL import Image

    label = page.with_suffix(".txt")
    if not label.exists():
        return None
    rows = [r.split() for r in label.read_text().splitlines() if r.strip()]
    if not rows:
        return None
    _c, cx, cy, w, h = (float(v) for v in rows[0][:5])
    with Image.open(page) as im:
        W, H = im.size
        box = (
            max(0, int((cx - w / 2 - 0.01) * W)),
            max(0, int((cy - h / 2 - 0.01) * H)),
            min(W, int((cx + w / 2 + 0.01) * W)),
            min(H, int((cy + h / 2 + 0.01) * H)),
        )
        buf = io.BytesIO()
        im.crop(box).convert("L").save(buf, "PNG")
    return buf.getvalue()


def make_images(out: Path, n: int, pages: Sequence[Path]) -> list[Path]:
    """``n`` page images (the fixture PNGs/JPEGs, cycled), each file's bytes unique."""
    out.mkdir(parents=True, exist_ok=True)
    raw = [p.read_bytes() for p in pages]
    files = []
    for i in range(n):
        src, data = pages[i % len(pages)], raw[i % len(pages)]
        tag = f"inkloop-bench page {i}"
        data = unique_png(data, tag) if data[:4] == b"\x89PNG" else unique_jpeg(data, tag)
        f = out / f"page-{i:05d}{src.suffix.lower()}"
        f.write_bytes(data)
        files.append(f)
    return files


@dataclass(frozen=True)
class ScanJpeg:
    data: bytes
    gray: bool


def scan_jpegs(pages: Sequence[Path], quality: int = 80) -> list[ScanJpeg]:
    """Each fixture page upscaled to a 300-dpi letter scan (2550×3300) and JPEG-encoded once."""
    from PIL import Image

    out = []
    for p in pages:
        with Image.open(p) as im:
            mode = "L" if im.mode in ("L", "1", "LA") else "RGB"
            big = im.convert(mode).resize(SCAN_PX, Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        big.save(buf, "JPEG", quality=quality, dpi=(300, 300))
        out.append(ScanJpeg(buf.getvalue(), mode == "L"))
    return out


def make_scanned_pdf(
    path: Path, n: int, jpegs: Sequence[ScanJpeg], start: int = 0, style: str = "scanner"
) -> Path:
    """A PDF of ``n`` letter pages, each exactly one embedded (unique) JPEG covering the page.

    ``style="scanner"`` writes the file the way scanners do (a bare ``/DeviceGray`` or
    ``/DeviceRGB`` DCTDecode image per page, a one-line content stream); ``style="pymupdf"``
    builds it with pymupdf's ``insert_image``, which adds ICC-based colorspaces.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if style == "pymupdf":
        import pymupdf

        doc = pymupdf.open()
        for i in range(n):
            k = start + i
            page = doc.new_page(width=LETTER_PT[0], height=LETTER_PT[1])
            data = unique_jpeg(jpegs[k % len(jpegs)].data, f"{path.name} scan {k}")
            page.insert_image(page.rect, stream=data, keep_proportion=False)
        doc.save(path, garbage=0, deflate=False)
        doc.close()
        return path
    w_pt, h_pt = LETTER_PT
    content = f"q {w_pt:g} 0 0 {h_pt:g} 0 0 cm /Im0 Do Q".encode()
    offsets: list[int] = []
    with path.open("wb") as f:
        f.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")

        def obj(body: bytes, stream: bytes | None = None) -> None:
            offsets.append(f.tell())
            f.write(f"{len(offsets)} 0 obj\n".encode() + body)
            if stream is not None:
                f.write(b"\nstream\n" + stream + b"\nendstream")
            f.write(b"\nendobj\n")

        kids = " ".join(f"{3 + 3 * i} 0 R" for i in range(n))
        obj(b"<< /Type /Catalog /Pages 2 0 R >>")
        obj(f"<< /Type /Pages /Count {n} /Kids [{kids}] >>".encode())
        for i in range(n):
            k = start + i
            scan = jpegs[k % len(jpegs)]
            data = unique_jpeg(scan.data, f"{path.name} scan {k}")
            page, contents, image = 3 + 3 * i, 4 + 3 * i, 5 + 3 * i
            assert len(offsets) + 1 == page
            obj(
                f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {w_pt:g} {h_pt:g}] "
                f"/Resources << /XObject << /Im0 {image} 0 R >> >> /Contents {contents} 0 R >>".encode()
            )
            obj(f"<< /Length {len(content)} >>".encode(), content)
            cs = "/DeviceGray" if scan.gray else "/DeviceRGB"
            obj(
                f"<< /Type /XObject /Subtype /Image /Width {SCAN_PX[0]} /Height {SCAN_PX[1]} "
                f"/ColorSpace {cs} /BitsPerComponent 8 /Filter /DCTDecode /Length {len(data)} >>".encode(),
                data,
            )
        xref = f.tell()
        f.write(f"xref\n0 {len(offsets) + 1}\n0000000000 65535 f \n".encode())
        f.write(b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets))
        f.write(f"trailer\n<< /Size {len(offsets) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return path


_WORDS = " ".join(
    (
        "The parties agree to the terms and conditions set out in this agreement, including the schedule",
        "of payments, the confidentiality obligations and the governing law clause described below.",
    )
).split(" ")


def make_digital_pdf(path: Path, n: int, signatures: Sequence[bytes | None], start: int = 0) -> Path:
    """A born-digital PDF: text, ruled vector lines, and (on most pages) a pasted signature image."""
    import pymupdf

    path.parent.mkdir(parents=True, exist_ok=True)
    doc = pymupdf.open()
    sigs = [s for s in signatures if s]
    for i in range(n):
        k = start + i
        page = doc.new_page(width=LETTER_PT[0], height=LETTER_PT[1])
        page.insert_text((72, 90), f"Agreement no. {k:05d}", fontsize=18)
        y = 130.0
        for line in range(28):
            words = [_WORDS[(k + line + j) % len(_WORDS)] for j in range(11)]
            page.insert_text((72, y), " ".join(words), fontsize=10)
            y += 16
        shape = page.new_shape()
        for r in range(4):  # a small table
            shape.draw_line((72, 600 + 14 * r), (540, 600 + 14 * r))
        shape.draw_rect(pymupdf.Rect(72, 600, 540, 642))
        shape.finish(color=(0, 0, 0), width=0.6)
        shape.commit()
        page.insert_text((72, 690), "Signature:", fontsize=11)
        page.draw_line((140, 712), (360, 712), color=(0, 0, 0), width=0.5)
        if sigs and k % 4 != 3:  # three pages in four are signed
            png = unique_png(sigs[k % len(sigs)], f"{path.name} sig {k}")
            page.insert_image(pymupdf.Rect(150, 660, 350, 710), stream=png, keep_proportion=True)
    doc.save(path, garbage=0, deflate=True)
    doc.close()
    return path


@dataclass
class Corpus:
    """The benchmark's inputs: files per kind, and the pages each kind has."""

    root: Path
    files: dict[str, list[Path]]
    pages: dict[str, int]


def build_corpus(root: Path, cfg: BenchConfig) -> Corpus:
    pages = fixture_pages(cfg.pages_dir)
    n, per = cfg.pages, max(1, cfg.pages_per_doc)
    files: dict[str, list[Path]] = {"images": make_images(root / "images", n, pages)}
    jpegs = scan_jpegs(pages, cfg.jpeg_quality)
    sigs = [_signature_crop(p) for p in pages]
    # half the scans written the way scanners do (DeviceGray/RGB), half by pymupdf (ICC-based)
    files["scanned"] = [
        make_scanned_pdf(
            root / "scanned" / f"scan-{s:04d}.pdf",
            min(per, n - s),
            jpegs,
            start=s,
            style="scanner" if (s // per) % 2 == 0 else "pymupdf",
        )
        for s in range(0, n, per)
    ]
    files["digital"] = [
        make_digital_pdf(root / "digital" / f"digital-{s:04d}.pdf", min(per, n - s), sigs, start=s)
        for s in range(0, n, per)
    ]
    return Corpus(root, files, {k: n for k in KINDS})

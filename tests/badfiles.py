"""Builders for broken inputs, made at test time so nothing malicious is committed."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pymupdf


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def bomb_png(path: Path, side: int = 60000) -> Path:
    """A 60 000 × 60 000 PNG (3.6 gigapixels) that is a few hundred bytes on disk."""
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit grayscale
    row = b"\x00" + b"\x00" * (side // 8)
    comp = zlib.compressobj(9)
    idat = comp.compress(row * 64) + comp.flush()
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )
    return path


def encrypted_pdf(path: Path) -> Path:
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "secret")
    doc.save(path, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="user", owner_pw="owner")
    return path


def corrupt_pdf(path: Path) -> Path:
    path.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 40 + b"\n%%EOF\n")
    return path


def truncated_pdf(src: Path, path: Path) -> Path:
    data = src.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


def truncated_jpeg(src: Path, path: Path) -> Path:
    data = src.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def make_all(tmp: Path, documents: Path) -> dict[str, Path]:
    """One of each kind of bad input, keyed by what it is."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "empty.pdf").write_bytes(b"")
    (tmp / "notes.txt").write_text("not a document\n")
    return {
        "corrupt": corrupt_pdf(tmp / "corrupt.pdf"),
        "empty": tmp / "empty.pdf",
        "encrypted": encrypted_pdf(tmp / "encrypted.pdf"),
        "bomb": bomb_png(tmp / "bomb.png"),
        "unsupported": tmp / "notes.txt",
        "truncated_pdf": truncated_pdf(documents / "scanned letters.pdf", tmp / "truncated.pdf"),
        "truncated_jpeg": truncated_jpeg(documents / "letter.jpg", tmp / "truncated.jpg"),
    }

"""A two-domain YOLO dataset for tests: the committed scans beside born-digital pages made here.

The digital pages are what an inbox of modern contracts holds: a clean text PDF page with a
``Signature:`` line and a handwritten signature placed on it as an image (the "upload your
signature" of e-signing tools). The signatures are real ink, cut from the labelled fixture scans;
each page is rendered with pymupdf as detection renders PDFs, and its label is the placed image's
rectangle in the rendered pixels. ``domains.json`` records ``digital`` for them and ``scan`` for
the rest (``default``), as ``inkloop synth`` and the curation export write it.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import inkloop  # noqa: F401  (its privacy switches before pymupdf)
from inkloop.evaluation.domains import write_domains

#: (crop source page, label row, width of the placed signature in PDF points, x, baseline y)
DIGITAL_PAGES = (
    ("tobacco800_31", 0, 150, 90, 610),
    ("tobacco800_31", 1, 200, 300, 650),
    ("tobacco800_31", 2, 220, 80, 560),
    ("tobacco800_188", 0, 120, 330, 600),
    ("tobacco800_188", 0, 180, 110, 690),
    ("tobacco800_31", 1, 240, 280, 560),
)

CONTRACT = (
    "SERVICES AGREEMENT. This agreement is made between the Client and the Provider. The Provider "
    "shall deliver the services described in Schedule A within the agreed time, and the Client "
    "shall pay the fees stated there within thirty days of each invoice. Either party may end this "
    "agreement with sixty days' written notice. "
)


def signature_crop(pages_dir: Path, stem: str, row: int) -> bytes:
    """One labelled signature of a fixture scan, cut out as PNG bytes (its own paper around it)."""
    from PIL import Image

    image = next(p for p in pages_dir.iterdir() if p.stem == stem and p.suffix != ".txt")
    _, cx, cy, w, h = map(float, (pages_dir / f"{stem}.txt").read_text().splitlines()[row].split())
    with Image.open(image) as im:
        W, H = im.size
        crop = im.convert("RGB").crop(
            (int((cx - w / 2) * W), int((cy - h / 2) * H), int((cx + w / 2) * W), int((cy + h / 2) * H))
        )
    buf = io.BytesIO()
    crop.save(buf, "PNG")
    return buf.getvalue()


def contract_pdf(pages_dir: Path, spec: tuple[str, int, int, int, int]) -> tuple[Any, Any]:
    """A one-page born-digital contract (pymupdf document) and the placed signature's rectangle
    in PDF points."""
    import pymupdf
    from PIL import Image

    stem, row, width, x, base = spec
    png = signature_crop(pages_dir, stem, row)
    with Image.open(io.BytesIO(png)) as im:
        height = width * im.height / im.width
    doc = pymupdf.open()
    page = doc.new_page(width=612, height=792)
    page.insert_textbox(pymupdf.Rect(72, 72, 540, 480), CONTRACT * 6, fontsize=10)
    page.insert_text((72, base + 20), "Signature: ______________________    Date: __________", fontsize=11)
    rect = pymupdf.Rect(x, base - height, x + width, base)
    page.insert_image(rect, stream=png)
    return doc, rect


def digital_page(pages_dir: Path, spec: tuple[str, int, int, int, int], out_png: Path, dpi: int = 150) -> str:
    """Render one born-digital contract page to ``out_png``; returns its YOLO label line."""
    doc, rect = contract_pdf(pages_dir, spec)
    pix = doc[0].get_pixmap(dpi=dpi)
    pix.save(out_png)
    z = dpi / 72
    x0, y0, x1, y1 = rect.x0 * z, rect.y0 * z, rect.x1 * z, rect.y1 * z
    W, H = pix.width, pix.height
    return f"0 {(x0 + x1) / 2 / W:.6f} {(y0 + y1) / 2 / H:.6f} {(x1 - x0) / W:.6f} {(y1 - y0) / H:.6f}\n"


def add_digital_pages(root: Path, pages_dir: Path, split: str, specs=DIGITAL_PAGES) -> list[str]:
    """Born-digital pages into ``root/images/<split>`` (labels beside); their relative paths."""
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    rels = []
    for i, spec in enumerate(specs):
        name = f"contract-{i:02d}-p0.png"
        label = digital_page(pages_dir, spec, root / "images" / split / name)
        (root / "labels" / split / f"contract-{i:02d}-p0.txt").write_text(label)
        rels.append(f"images/{split}/{name}")
    return rels


def make_two_domain_dataset(root: Path, pages_dir: Path, split: str = "test") -> Path:
    """``split`` holds the four fixture scans and the born-digital pages; ``domains.json`` says which."""
    for p in pages_dir.iterdir():
        if p.suffix == ".txt":
            continue
        for kind, src in (("images", p), ("labels", p.with_suffix(".txt"))):
            (root / kind / split).mkdir(parents=True, exist_ok=True)
            shutil.copy(src, root / kind / split / src.name)
    digital = add_digital_pages(root, pages_dir, split)
    write_domains(root, {rel: "digital" for rel in digital}, default="scan")
    (root / "data.yaml").write_text(f"path: .\n{split}: images/{split}\nnames:\n  0: signature\n")
    return root

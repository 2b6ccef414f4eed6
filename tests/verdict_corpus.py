"""A labelled corpus of whole documents for the signing verdict, built by the project's own code.

Each document is made here and its true verdict is known by construction: born-digital contracts
(five languages, three kinds of signing lines) left empty, signed with a real signature scan on
some or all lines, signed with vector ink (the strokes of a real signature traced by
:mod:`inkloop.documents.ink`, drawn as page paths or as an Ink annotation, as tablets and PDF
viewers write them), left unsigned with the signer's name typed on the line (a regular and a
script-like font), with signature form fields empty or signed with a self-signed certificate made
on the spot (pyHanko), tampered after signing (bytes changed inside the signed range, or an
incremental update that rewrites content), e-signed with a vendor stamp, letters that ask for no
signature, and scanned PDFs of real pages (signed as scanned; "unsigned" ones have their
signatures painted out with the page's paper colour).

Every signature comes from pages the bundled model never trained on: the val split of
signatures-real (``--per-kind`` runs with it when ../shared is there) or the committed fixture
pages, which are val pages too (tests/fixtures/make_fixtures.py).

Run as a script for the full evaluation (real bundled detector, numbers for docs/verdict.md)::

    python tests/verdict_corpus.py --out /tmp/verdict-corpus --per-kind 6

Tests import :func:`build_corpus` with a handful of documents.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import random
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

import inkloop  # noqa: F401  (before pymupdf, which loads onnxruntime: inkloop's privacy switches first)

FIXTURE_PAGES = Path(__file__).parent / "fixtures" / "pages"
REAL_VAL = Path("/work/shared/datasets/signatures-real")  # optional: more real pages if present

BODY = {
    "en": "This Service Agreement is made between the Client and the Provider. The Provider shall "
    "deliver the services described in the annex and the Client shall pay the fees within thirty days.",
    "pt": "O presente contrato de prestação de serviços é celebrado entre o Cliente e o Prestador. "
    "O Prestador obriga-se a prestar os serviços descritos no anexo e o Cliente pagará em trinta dias.",
    "es": "El presente contrato de servicios se celebra entre el Cliente y el Proveedor. El Proveedor "
    "prestará los servicios descritos en el anexo y el Cliente pagará las tarifas en treinta días.",
    "fr": "Le présent contrat de prestation de services est conclu entre le Client et le Prestataire. Le "
    "Prestataire fournit les services décrits en annexe et le Client paie les honoraires sous trente jours.",
    "de": "Dieser Dienstleistungsvertrag wird zwischen dem Kunden und dem Anbieter geschlossen. Der "
    "Anbieter erbringt die Leistungen der Anlage und der Kunde zahlt die Gebühren innerhalb von 30 Tagen.",
}
LABELS = {
    "en": ["Signature:", "Signed by:", "Authorized signatory"],
    "pt": ["Assinatura:", "Assinado por:", "Assinatura do Cliente"],
    "es": ["Firma:", "Firmado por:", "Firma del Cliente"],
    "fr": ["Signature :", "Signé par :", "Signature du Client"],
    "de": ["Unterschrift:", "Unterzeichnet von:", "Unterschrift des Kunden"],
}
STYLES = ("same_line", "rule_above_label", "x_line")
NAMES = ("Ana Ribeiro", "Jonas Weber", "Claire Dubois", "Miguel Santos", "Emma Clarke", "Lucía Ortega")
#: Where a script-like font comes from without a system package: the Mathematical Bold Script
#: letters of matplotlib's STIX font (the dev install has matplotlib), mapped onto A-Z/a-z so the
#: text layer reads as the name (see :func:`script_font`).
STIX = "fonts/ttf/STIXGeneral.ttf"
NO_SIG = (
    "Invoice 2041. Items delivered in March: 12 units of paper, 4 boxes of toner. Total due: 318.40 EUR. "
    "Payment by bank transfer to the account shown below. Thank you for your business."
)


@dataclass
class CorpusDoc:
    """One document of the corpus and its true verdict."""

    path: Path
    truth: str
    kind: str
    notes: dict[str, object] = field(default_factory=dict)


# -- ink --------------------------------------------------------------------------------------------
def signature_crops(extra_real: bool = False) -> list[Image.Image]:
    """Crops of real handwritten signatures from labelled pages (YOLO boxes beside the images)."""
    dirs = [FIXTURE_PAGES]
    if extra_real and (REAL_VAL / "images" / "val").is_dir():
        dirs = [REAL_VAL / "images" / "val"]
    crops: list[Image.Image] = []
    for d in dirs:
        for img_path in sorted(d.iterdir()):
            if img_path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
                continue
            lab = img_path.with_suffix(".txt")
            if not lab.exists():
                lab = d.parent.parent / "labels" / d.name / (img_path.stem + ".txt")
            if not lab.exists():
                continue
            with Image.open(img_path) as im:
                im = im.convert("RGB")
                stretched = img_path.name.startswith("tobacco800") and im.size == (1000, 1000)
                w, h = im.size
                for line in lab.read_text().split("\n"):
                    parts = line.split()
                    if len(parts) != 5:
                        continue
                    cx, cy, bw, bh = (float(v) for v in parts[1:])
                    box = (
                        int((cx - bw / 2) * w),
                        int((cy - bh / 2) * h),
                        int((cx + bw / 2) * w),
                        int((cy + bh / 2) * h),
                    )
                    c = im.crop(box)
                    if stretched:  # Tobacco800 pages are stored stretched to a square
                        c = c.resize((max(1, round(c.width * 0.77)), c.height))
                    if c.width >= 20 and c.height >= 8:
                        crops.append(c)
    return crops


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def put_ink(page, rule: tuple[float, float, float, float], crop: Image.Image, rng: random.Random) -> None:
    """Place a signature scan on a signing line as a person would: on the rule, a bit above it."""
    import pymupdf

    page.insert_image(pymupdf.Rect(*_place_box(rule, crop.width / crop.height, rng)), stream=_png(crop))


def _place_box(
    rule: tuple[float, float, float, float], aspect: float, rng: random.Random
) -> tuple[float, float, float, float]:
    """Where a hand puts a signature of this aspect (width / height) on a signing line."""
    x0, _y0, x1, y1 = rule
    width = rng.uniform(170, 230)  # 2.4-3.2 inches wide, at most 1 inch high
    height = min(72.0, width / aspect)
    width = height * aspect
    left = x0 + rng.uniform(-10, max(0.0, (x1 - x0) - width) + 10)
    bottom = y1 + rng.uniform(2, 8)
    return (left, bottom - height, left + width, bottom)


def put_vector_ink(
    page, rule: tuple[float, float, float, float], crop: Image.Image, rng: random.Random, annotation: bool
) -> tuple[float, float, float, float]:
    """A real signature's traced strokes on a signing line: an Ink annotation or drawn paths."""
    from inkloop.documents.ink import draw_strokes, trace_strokes

    strokes = trace_strokes(crop)
    bx0, by0, bx1, by1 = strokes.ink_box()
    box = _place_box(rule, (bx1 - bx0) / max(1.0, by1 - by0), rng)
    color = rng.choice([(0.0, 0.0, 0.0), (0.05, 0.1, 0.45), (0.1, 0.1, 0.2)])
    return draw_strokes(
        page, strokes, box, as_annotation=annotation, color=color, width_scale=rng.uniform(0.6, 1.0)
    )


def script_font(folder: Path) -> Path | None:
    """A script-like TrueType font made from STIX's Mathematical Bold Script letters (U+1D4D0…),
    its cmap pointed at A-Z and a-z so a typed name reads as the name in the text layer; ``None``
    when matplotlib or fontTools is not installed (the corpus then types in Times Italic)."""
    import importlib.util

    spec = importlib.util.find_spec("matplotlib")
    if spec is None or importlib.util.find_spec("fontTools") is None or not spec.submodule_search_locations:
        return None
    from fontTools.ttLib import TTFont

    src = Path(spec.submodule_search_locations[0]) / "mpl-data" / STIX
    if not src.is_file():
        return None
    out = folder / "script-like.ttf"
    if out.exists():
        return out
    font = TTFont(str(src))
    cmap = font.getBestCmap()
    latin = {}
    for i in range(26):
        latin[ord("A") + i] = cmap[0x1D4D0 + i]
        latin[ord("a") + i] = cmap[0x1D4EA + i]
    latin[ord(" ")] = cmap[ord(" ")]
    for table in font["cmap"].tables:
        if table.isUnicode():
            table.cmap = dict(latin)
    folder.mkdir(parents=True, exist_ok=True)
    font.save(str(out))
    return out


def ascii_name(name: str) -> str:
    """``name`` without accents (Lucía → Lucia)."""
    import unicodedata

    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()


def put_typed_name(
    page, rule: tuple[float, float, float, float], name: str, rng: random.Random, font: str | Path
) -> tuple[float, float, float, float]:
    """The signer's name typed on the line (a form filled on a computer: no signature).

    ``font``: a base-14 name (``helv``, ``tiit``) or a font file (the script-like one).
    """
    import pymupdf

    x0, _y0, x1, y1 = rule
    if isinstance(font, Path):
        name = ascii_name(name)  # the script letters have no accents
        size = rng.uniform(16, 22)
        kw: dict[str, object] = {"fontname": "inkscript", "fontfile": str(font)}
        width = pymupdf.Font(fontfile=str(font)).text_length(name, fontsize=size)
    else:
        size = rng.uniform(11, 16)
        kw = {"fontname": font}
        width = pymupdf.get_text_length(name, fontname=font, fontsize=size)
    left = x0 + rng.uniform(4, 30)
    room = max(40.0, x1 - left - 4)
    if width > room:  # a form field's text shrinks to fit its line
        size, width = size * room / width, room
    base = y1 - rng.uniform(2, 5)
    page.insert_text((left, base), name, fontsize=size, color=(0.1, 0.1, 0.3), **kw)
    return (left, base - size, left + width, base + size * 0.3)


# -- born-digital contracts -------------------------------------------------------------------------
def contract_page(doc, lang: str, n_places: int, style: str, header: str = "", footer: str = ""):
    """A contract page with ``n_places`` signing lines; returns the page and each line's rule box."""
    import pymupdf

    page = doc.new_page(width=595, height=842)
    if header:
        page.insert_text((40, 28), header, fontsize=8)
    page.insert_text(
        (72, 80),
        {"en": "SERVICE AGREEMENT", "pt": "CONTRATO", "es": "CONTRATO", "fr": "CONTRAT", "de": "VERTRAG"}[
            lang
        ],
        fontsize=16,
    )
    page.insert_textbox((72, 110, 523, 330), BODY[lang] + " " + BODY[lang], fontsize=11)
    rules = []
    for k in range(n_places):
        x = 72 + (k % 2) * 250
        y = 470 + (k // 2) * 130
        label = LABELS[lang][k % len(LABELS[lang])]
        if style == "same_line":
            text = f"{label} " + "_" * 30
            page.insert_text((x, y), text, fontsize=10)
            lw = pymupdf.get_text_length(f"{label} ", fontsize=10)
            rules.append((x + lw, y - 10, x + pymupdf.get_text_length(text, fontsize=10), y + 2))
        elif style == "rule_above_label":
            page.draw_line((x, y - 12), (x + 200, y - 12), width=0.8)
            page.insert_text((x, y + 2), label.rstrip(": "), fontsize=10)
            rules.append((x, y - 13, x + 200, y - 11))
        else:  # x_line
            page.insert_text((x, y), "X " + "_" * 32, fontsize=10)
            rules.append((x + 10, y - 10, x + pymupdf.get_text_length("X " + "_" * 32, fontsize=10), y + 2))
    if footer:
        page.insert_text((40, 825), footer, fontsize=7)
    return page, rules


def _save(doc, path: Path) -> None:
    doc.save(str(path), garbage=0, deflate=False, expand=255)  # plain streams: tampering edits bytes
    doc.close()


def _contract(
    path: Path,
    lang: str,
    style: str,
    n_places: int,
    n_put: int | None,
    put: Callable[[object, tuple[float, float, float, float]], object],
    header: str = "",
    footer: str = "",
) -> None:
    """A contract whose first ``n_put`` signing lines (``None``: all) get ``put(page, rule)``."""
    import pymupdf

    doc = pymupdf.open()
    page, rules = contract_page(doc, lang, n_places, style, header, footer)
    for r in rules[:n_put]:
        put(page, r)
    _save(doc, path)


def make_ink_contract(
    path: Path,
    lang: str,
    style: str,
    n_places: int,
    n_signed: int,
    crops: list[Image.Image],
    rng: random.Random,
    header: str = "",
    footer: str = "",
) -> None:
    _contract(
        path,
        lang,
        style,
        n_places,
        n_signed,
        lambda page, r: put_ink(page, r, rng.choice(crops), rng),
        header,
        footer,
    )


def make_vector_contract(
    path: Path,
    lang: str,
    style: str,
    n_places: int,
    n_signed: int,
    crops: list[Image.Image],
    rng: random.Random,
    annotation: bool,
) -> None:
    """A contract signed on ``n_signed`` lines with vector ink (Ink annotations or drawn paths)."""
    _contract(
        path,
        lang,
        style,
        n_places,
        n_signed,
        lambda page, r: put_vector_ink(page, r, rng.choice(crops), rng, annotation),
    )


def make_typed_contract(
    path: Path, lang: str, style: str, n_places: int, rng: random.Random, font: str | Path
) -> None:
    """An unsigned contract whose signing lines carry the signers' names, typed."""
    _contract(
        path,
        lang,
        style,
        n_places,
        None,
        lambda page, r: put_typed_name(page, r, rng.choice(NAMES), rng, font),
    )


# -- digital signatures -----------------------------------------------------------------------------
def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed signing certificate and its key, made now (never a file from the repo)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "Ana Test Signer"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "inkloop tests"),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    kp, cp = folder / "signer.key.pem", folder / "signer.cert.pem"
    kp.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return kp, cp


def field_contract(path: Path, lang: str, n_fields: int) -> list[tuple[float, float, float, float]]:
    """A contract with empty signature form fields (pyHanko adds them); returns their boxes (top-left)."""
    import pymupdf
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign.fields import SigFieldSpec, append_signature_field

    doc = pymupdf.open()
    page, _ = contract_page(doc, lang, 0, "same_line")
    boxes = []
    for k in range(n_fields):
        x, y = 72 + k * 250, 470
        page.insert_text((x, y + 62), LABELS[lang][0], fontsize=10)
        boxes.append((x, y, x + 200, y + 50))
    tmp = path.with_suffix(".base.pdf")
    _save(doc, tmp)
    with tmp.open("rb") as f:
        w = IncrementalPdfFileWriter(f, strict=False)
        for k, (x0, y0, x1, y1) in enumerate(boxes):
            append_signature_field(
                w, SigFieldSpec(f"Signature{k + 1}", on_page=0, box=(x0, 842 - y1, x1, 842 - y0))
            )
        with path.open("wb") as out:
            w.write(out)
    tmp.unlink()
    return boxes


def sign_field(
    src: Path, dst: Path, field_name: str, key: Path, cert: Path, signer_name: str = "Ana Silva"
) -> None:
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import signers

    signer = signers.SimpleSigner.load(str(key), str(cert))
    with src.open("rb") as f:
        w = IncrementalPdfFileWriter(f, strict=False)
        meta = signers.PdfSignatureMetadata(
            field_name=field_name, reason="I agree to the terms", name=signer_name, location="Lisbon"
        )
        data = signers.sign_pdf(w, meta, signer=signer)
    dst.write_bytes(data.getvalue())


def tamper_bytes(path: Path) -> None:
    """Change bytes of the page content inside the signed range (same length, still a valid PDF)."""
    data = bytearray(path.read_bytes())
    i = data.find(b" 11 Tf")
    assert i > 0, "no text to tamper with"
    data[i : i + 6] = b" 12 Tf"  # the body text grows: the page shows other words where they were
    path.write_bytes(bytes(data))


def tamper_incremental(path: Path) -> None:
    """Append an incremental update that rewrites the page content (what an editor saving does)."""
    import pymupdf

    doc = pymupdf.open(str(path))
    doc[0].insert_text((72, 360), "Fee: 99,000 EUR (amended)", fontsize=11)
    doc.saveIncr()
    doc.close()


# -- scanned documents ------------------------------------------------------------------------------
def _real_pages(extra_real: bool) -> list[tuple[Path, list[tuple[float, float, float, float]]]]:
    out = []
    if extra_real and (REAL_VAL / "images" / "val").is_dir():
        imgs = sorted((REAL_VAL / "images" / "val").iterdir())
        labdir = REAL_VAL / "labels" / "val"
    else:
        imgs = sorted(p for p in FIXTURE_PAGES.iterdir() if p.suffix in (".png", ".jpg"))
        labdir = FIXTURE_PAGES
    for p in imgs:
        lab = labdir / (p.stem + ".txt")
        if not lab.exists():
            continue
        boxes = []
        for line in lab.read_text().split("\n"):
            parts = line.split()
            if len(parts) == 5:
                cx, cy, bw, bh = (float(v) for v in parts[1:])
                boxes.append((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2))
        if boxes:
            out.append((p, boxes))
    return out


def make_scan(path: Path, pages: list[tuple[Path, list]], erase: bool) -> None:
    """A scanned PDF (images only, no text layer) of real pages; ``erase`` paints signatures out."""
    import pymupdf

    doc = pymupdf.open()
    for img_path, boxes in pages:
        with Image.open(img_path) as im:
            im = im.convert("RGB")
            if img_path.name.startswith("tobacco800") and im.size == (1000, 1000):
                im = im.resize((773, 1000))
            if erase:
                a = np.asarray(im).copy()
                paper = np.median(a.reshape(-1, 3), axis=0).astype(np.uint8)
                h, w = a.shape[:2]
                for x0, y0, x1, y1 in boxes:
                    a[
                        max(0, int(y0 * h) - 4) : int(y1 * h) + 4, max(0, int(x0 * w) - 4) : int(x1 * w) + 4
                    ] = paper
                im = Image.fromarray(a)
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=85)
            pw = 595.0
            ph = pw * im.height / im.width
            page = doc.new_page(width=pw, height=ph)
            page.insert_image(page.rect, stream=buf.getvalue())
    doc.save(str(path))
    doc.close()


# -- the corpus -------------------------------------------------------------------------------------
def build_corpus(out: Path, per_kind: int = 1, seed: int = 0, extra_real: bool = False) -> list[CorpusDoc]:
    """Build the documents under ``out/docs`` and return them with their true verdicts.

    ``per_kind`` documents of each kind (languages and line styles rotate); ``extra_real`` takes
    signature crops and scanned pages from the signatures-real val split instead of the fixtures.
    """
    rng = random.Random(seed)
    docs_dir = out / "docs"
    docs_dir.mkdir(parents=True, exist_ok=True)
    crops = signature_crops(extra_real)
    langs = list(BODY)
    key, cert = make_certificate(out / "pki")
    script = script_font(out / "fonts") or "tiit"
    # the kinds added later draw from their own generator: the older kinds' documents stay the same
    rng_vec = random.Random(seed + 1)
    real = _real_pages(extra_real)
    docs: list[CorpusDoc] = []

    def add(name: str, truth: str, kind: str, make: Callable[[Path], None], **notes: object) -> None:
        p = docs_dir / f"{len(docs):03d}-{name}.pdf"
        make(p)
        docs.append(CorpusDoc(p, truth, kind, dict(notes)))

    for k in range(per_kind):
        lang, style = langs[k % len(langs)], STYLES[k % len(STYLES)]
        n = 2 + (k % 2)
        add(
            f"unsigned-{lang}-{style}",
            "unsigned",
            "ink_lines",
            lambda p, lang=lang, style=style, n=n: make_ink_contract(p, lang, style, n, 0, crops, rng),
            lang=lang,
        )
        add(
            f"signed-{lang}-{style}",
            "signed",
            "ink_lines",
            lambda p, lang=lang, style=style, n=n: make_ink_contract(p, lang, style, n, n, crops, rng),
            lang=lang,
        )
        add(
            f"partial-{lang}-{style}",
            "partially_signed",
            "ink_lines",
            lambda p, lang=lang, style=style, n=n: make_ink_contract(p, lang, style, n, 1, crops, rng),
            lang=lang,
        )
        for annotation in (False, True):
            kind = "ink_annotation" if annotation else "vector_paths"
            add(
                f"signed-{kind}-{lang}-{style}",
                "signed",
                kind,
                lambda p, lang=lang, style=style, n=n, a=annotation: make_vector_contract(
                    p, lang, style, n, n, crops, rng_vec, a
                ),
                lang=lang,
            )
        partial_annotation = k % 2 == 1  # partly signed with vector ink, each kind in turn
        add(
            f"partial-{'ink_annotation' if partial_annotation else 'vector_paths'}-{lang}-{style}",
            "partially_signed",
            "ink_annotation" if partial_annotation else "vector_paths",
            lambda p, lang=lang, style=style, n=n, a=partial_annotation: make_vector_contract(
                p, lang, style, n, 1, crops, rng_vec, a
            ),
            lang=lang,
        )
        for font in ("helv", script):
            font_name = "script-like" if isinstance(font, Path) else font
            add(
                f"typed-{font_name}-{lang}-{style}",
                "unsigned",
                "typed_name",
                lambda p, lang=lang, style=style, n=n, font=font: make_typed_contract(
                    p, lang, style, n, rng_vec, font
                ),
                lang=lang,
                font=font_name,
            )
        add(f"nosig-{k}", "no_signature_expected", "letter", lambda p: _no_sig(p))
        add(
            f"fields-empty-{lang}",
            "unsigned",
            "fields",
            lambda p, lang=lang: field_contract(p, lang, 2),
            lang=lang,
        )

        def _digital(p: Path, lang: str = lang, n: int = 1 + k % 2) -> None:
            field_contract(p, lang, n)
            for j in range(n):  # a second signature is an allowed incremental update to the first
                sign_field(p, p, f"Signature{j + 1}", key, cert, signer_name=f"Signer {j + 1}")

        add(f"digital-{lang}", "e_signed", "digital", _digital, lang=lang)
        if k % 2 == 1:

            def _digital_half(p: Path, lang: str = lang) -> None:
                field_contract(p, lang, 2)
                sign_field(p, p, "Signature1", key, cert)

            add(f"digital-half-{lang}", "partially_signed", "digital", _digital_half, lang=lang)

        def _tampered(p: Path, lang: str = lang, how: str = ("bytes", "incremental")[k % 2]) -> None:
            field_contract(p, lang, 1)
            sign_field(p, p, "Signature1", key, cert)
            tamper_bytes(p) if how == "bytes" else tamper_incremental(p)

        add(f"tampered-{lang}", "needs_review", "tampered", _tampered, lang=lang)
        vendor = k % 2
        header = (
            f"DocuSign Envelope ID: {str(uuid.UUID(int=rng.getrandbits(128))).upper()}" if vendor == 0 else ""
        )
        footer = (
            ""
            if vendor == 0
            else f"Adobe Acrobat Sign Transaction ID: CBJCHBCAABAA{rng.getrandbits(96):024x}"
        )
        add(
            f"esigned-{'docusign' if vendor == 0 else 'adobe'}-{lang}",
            "e_signed",
            "vendor",
            lambda p, lang=lang, header=header, footer=footer: make_ink_contract(
                p, lang, "same_line", 2, 2, crops, rng, header=header, footer=footer
            ),
            lang=lang,
        )
        if real:
            pages = [real[(2 * k + j) % len(real)] for j in range(2)]
            add(f"scan-signed-{k}", "signed", "scan", lambda p, pages=pages: make_scan(p, pages, erase=False))
            add(
                f"scan-unsigned-{k}",
                "unsigned",
                "scan",
                lambda p, pages=pages: make_scan(p, pages, erase=True),
            )
    (out / "truth.json").write_text(
        json.dumps(
            [{"path": str(d.path), "truth": d.truth, "kind": d.kind, **d.notes} for d in docs], indent=1
        )
    )
    return docs


def _no_sig(path: Path) -> None:
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    page.insert_text((72, 80), "INVOICE", fontsize=16)
    page.insert_textbox((72, 110, 523, 330), NO_SIG, fontsize=11)
    _save(doc, path)


# -- evaluation -------------------------------------------------------------------------------------
def evaluate(docs: list[CorpusDoc], results_dir: Path, model: str | None = None) -> dict[str, object]:
    """Run the real detector (the bundled one unless ``model`` names another: a candidate is
    judged on the same documents) over the corpus, derive verdicts, compare with the truth."""
    from inkloop.api import DetectOptions, detect
    from inkloop.models.resolve import resolve_model
    from inkloop.verdict import VERDICTS_ORDER, VerdictConfig, derive_verdicts

    detect([str(d.path) for d in docs], results_dir, DetectOptions(model=model), verdict=False)
    threshold = resolve_model(model).card.conf_threshold  # the results were cut at the card's threshold
    verdicts = {v.source: v for v in derive_verdicts(results_dir, VerdictConfig(threshold=threshold))}
    table: dict[str, dict[str, int]] = {t: dict.fromkeys(VERDICTS_ORDER, 0) for t in VERDICTS_ORDER}
    rows = []
    for d in docs:
        v = verdicts.get(str(d.path))
        got = v.verdict if v else "missing"
        table[d.truth][got] = table[d.truth].get(got, 0) + 1
        rows.append({"doc": d.path.name, "truth": d.truth, "verdict": got, "reasons": v.reasons if v else []})
    per: dict[str, dict[str, float | None]] = {}
    for c in VERDICTS_ORDER:
        tp = table[c][c]
        pred = sum(table[t][c] for t in table)
        real_n = sum(table[c].values())
        per[c] = {
            "precision": round(tp / pred, 3) if pred else None,
            "recall": round(tp / real_n, 3) if real_n else None,
            "support": real_n,
            "predicted": pred,
        }
    not_signed = [
        r
        for r in rows
        if r["truth"] in ("unsigned", "partially_signed", "needs_review", "no_signature_expected")
    ]
    false_signed = [r for r in not_signed if r["verdict"] in ("signed", "e_signed")]
    return {
        "confusion": table,
        "per_verdict": per,
        "rows": rows,
        "documents": len(docs),
        "false_signed": len(false_signed),
        "not_signed_docs": len(not_signed),
        "false_signed_rate": round(len(false_signed) / max(1, len(not_signed)), 4),
        "costly": costly_errors(docs, rows),
    }


#: A fully signed document (truth) called one of these is a costly miss: the team chases a
#: signature it has. The other direction: a document that is not fully signed called signed.
MISSED = ("unsigned", "partially_signed")
SIGNED = ("signed", "e_signed")


def costly_errors(docs: list[CorpusDoc], rows: list[dict[str, object]]) -> dict[str, object]:
    """Costly errors in both directions, per kind and overall, as shares of *all* documents.

    ``missed_signed``: truth ``signed``/``e_signed`` judged ``unsigned``/``partially_signed``;
    ``false_signed``: truth not fully signed (unsigned, partially signed, tampered, no signature
    expected) judged ``signed``/``e_signed``. ``needs_review`` is never costly: a person looks.
    """
    kinds: dict[str, dict[str, object]] = {}
    for d, r in zip(docs, rows, strict=True):
        k = kinds.setdefault(d.kind, {"documents": 0, "missed_signed": 0, "false_signed": 0})
        k["documents"] += 1  # type: ignore[operator]
        if r["truth"] in SIGNED and r["verdict"] in MISSED:
            k["missed_signed"] += 1  # type: ignore[operator]
        elif r["truth"] not in SIGNED and r["verdict"] in SIGNED:
            k["false_signed"] += 1  # type: ignore[operator]
    for k in kinds.values():
        k["costly"] = k["missed_signed"] + k["false_signed"]  # type: ignore[operator]
        k["share"] = round(k["costly"] / k["documents"], 4)  # type: ignore[operator]
    total = {
        key: sum(k[key] for k in kinds.values())  # type: ignore[misc]
        for key in ("documents", "missed_signed", "false_signed", "costly")
    }
    total["share"] = round(total["costly"] / max(1, total["documents"]), 4)
    return {"per_kind": kinds, "total": total}


def costly_table(costly: dict[str, object]) -> str:
    """The costly-error counts as the markdown table docs/verdict.md shows."""
    lines = [
        "| kind | documents | signed → unsigned/partial | not signed → signed/e_signed | costly | share |",
        "|---|---|---|---|---|---|",
    ]
    per_kind: dict[str, dict[str, int]] = costly["per_kind"]  # type: ignore[assignment]
    total: dict[str, int] = costly["total"]  # type: ignore[assignment]
    for name, k in [*per_kind.items(), ("**all**", total)]:
        lines.append(
            f"| {name} | {k['documents']} | {k['missed_signed']} | {k['false_signed']} | {k['costly']} "
            f"| {100 * k['costly'] / max(1, k['documents']):.1f} % |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--per-kind", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fixtures-only", action="store_true", help="crops and scans from tests/fixtures only")
    ap.add_argument("--model", help="a model reference or ONNX folder to judge instead of the bundled one")
    a = ap.parse_args(argv)
    docs = build_corpus(a.out, a.per_kind, a.seed, extra_real=not a.fixtures_only)
    report = evaluate(docs, a.out / "results", a.model)
    (a.out / "evaluation.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    print(
        json.dumps(
            {
                k: report[k]
                for k in (
                    "confusion",
                    "per_verdict",
                    "documents",
                    "false_signed",
                    "not_signed_docs",
                    "false_signed_rate",
                    "costly",
                )
            },
            indent=1,
        )
    )
    print(costly_table(report["costly"]))  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())

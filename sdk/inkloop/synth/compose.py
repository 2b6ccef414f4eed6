"""One synthetic document: a host (generated contract or the team's template), the signatures put
on its signing places, and the things that look like signatures but are not.

Every random choice is made from the document's own generator *before* anything is drawn, and the
ink is drawn last, from the plan alone; :func:`make_document` with ``with_ink=False`` therefore
gives the very same document without its signatures, which is how the tests measure, pixel by
pixel, that each label is the box of the ink that reaches the page.

Coordinates are PDF points, origin at the top-left of the page (pymupdf's frame), until the page
is rendered; labels then go to rendered pixels through :mod:`inkloop.convert`.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from inkloop.documents.ink import MIN_PEN, Strokes, draw_strokes, stroke_box, trace_strokes
from inkloop.synth import vocab
from inkloop.synth.crops import Crop, ink_box, ink_mask_of, ink_rgba, png_bytes, tracing_crop
from inkloop.types import BoxXYXY

#: How ink reaches the page, and how often each kind is drawn.
INK_KINDS = ("image", "image_paper", "ink_annot", "paths")
INK_WEIGHTS = (0.35, 0.15, 0.25, 0.25)
#: Vector ink is traced only from crops at least this many pixels on their shorter side.
MIN_TRACE_SIDE = 28
BLACK_INKS = ((15, 15, 20), (30, 30, 35), (45, 40, 40))
BLUE_INKS = ((20, 40, 150), (15, 30, 110), (40, 70, 190), (25, 35, 90))
#: Share of signing places left empty, and of those, the share given a typed name instead.
EMPTY_PLACE = 0.2
TYPED_NAME = 0.5
#: Share of generated documents signed nowhere (whole negative documents).
UNSIGNED_DOCUMENT = 0.12
#: Base-14 fonts for body text, and the faces a typed name is set in.
BODY_FONTS = (("helv", "hebo"), ("tiro", "tibo"), ("cour", "cobo"))
TYPED_FONTS = ("tiit", "heit", "tibi", "helv", "tiro")
#: Script-like faces for typed names: OpenCV's Hershey script fonts (every install has them).
SCRIPT_FONTS = {
    "hershey-script-simplex": cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
    "hershey-script-complex": cv2.FONT_HERSHEY_SCRIPT_COMPLEX,
}
PAGE_SIZES = ((595.0, 842.0), (612.0, 792.0))


@dataclass
class Slot:
    """A place to sign: the horizontal extent, the line the ink sits on, the room above it."""

    page: int
    x0: float
    x1: float
    baseline: float
    room: float
    kind: str  # line | field | box | label (a template's labelled line)
    label: str = ""


@dataclass
class Ink:
    """One signature, fully decided: which crop, how it is drawn, and the box of its ink (points)."""

    slot: int
    crop: Crop
    kind: str
    color: tuple[int, int, int]
    angle: float
    box: BoxXYXY = (0.0, 0.0, 0.0, 0.0)
    rect: BoxXYXY = (0.0, 0.0, 0.0, 0.0)  # images: where the picture goes
    png: bytes = b""
    vector: Strokes | None = None  # vector ink: the traced strokes, drawn into ``rect``
    pen: float = 1.0
    width_scale: float = 1.0


@dataclass
class PageRecord:
    """What one page of the document holds, for labels and provenance."""

    index: int
    inks: list[Ink] = field(default_factory=list)
    negatives: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Document:
    """The made document: its PDF bytes and one record per page."""

    pdf: bytes
    pages: list[PageRecord]
    host: str
    language: str | None


def _choice(rng: np.random.Generator, seq: Any) -> Any:
    return seq[int(rng.integers(len(seq)))]


def _round_box(b: BoxXYXY) -> list[float]:
    return [round(v, 2) for v in b]


# -- ink planning ----------------------------------------------------------------------------------
def plan_ink(rng: np.random.Generator, slot: Slot, index: int, crop: Crop, kind: str | None = None) -> Ink:
    """Decide size, place, angle and colour of one signature on ``slot`` and compute its ink box."""
    if kind is None:
        kind = INK_KINDS[int(rng.choice(len(INK_KINDS), p=INK_WEIGHTS))]
    if kind in ("ink_annot", "paths") and min(crop.image.shape) < MIN_TRACE_SIDE:
        kind = "image"  # a crop of a few dozen pixels has no strokes left to trace
    blue = rng.random() < 0.4
    color = _choice(rng, BLUE_INKS if blue else BLACK_INKS)
    angle = float(rng.uniform(-4.0, 4.0))
    ch, cw = crop.image.shape
    sw = max(30.0, slot.x1 - slot.x0)
    width = float(np.clip(rng.uniform(0.45, 0.95) * sw, 55.0, 240.0))
    height = width * ch / cw
    cap = slot.room * (1.0 if slot.kind in ("field", "box") else float(rng.uniform(0.8, 1.3)))
    if height > cap:
        width *= cap / height
        height = cap
    width = min(width, sw) if slot.kind in ("field", "box") else width
    x = slot.x0 + float(rng.uniform(0.0, max(0.0, sw - width)))
    if slot.kind in ("field", "box"):
        bottom = slot.baseline - float(rng.uniform(0.0, max(0.0, slot.room - height)))
    else:  # on the line, often dipping through it into the printed name below
        x += float(rng.uniform(-8.0, 8.0))
        bottom = slot.baseline + float(rng.uniform(-4.0, 14.0))
    ink = Ink(index, crop, kind, color, angle)
    scale = width / cw  # points per crop pixel
    if kind in ("image", "image_paper"):
        rgba = ink_rgba(crop.image, None if kind == "image_paper" else color, angle)
        rh, rw = rgba.shape[:2]
        top = bottom - rh * scale
        ink.rect = (x, top, x + rw * scale, bottom)
        ink.png = png_bytes(rgba)
        b = ink_box(ink_mask_of(rgba, paper=kind == "image_paper"))
        if b is not None:  # half a crop pixel more each side: the renderer interpolates the picture
            e = 0.5 * scale
            ink.box = (
                x + b[0] * scale - e,
                top + b[1] * scale - e,
                x + b[2] * scale + e,
                top + b[3] * scale + e,
            )
    else:
        try:
            traced = trace_strokes(tracing_crop(crop.image))
        except ValueError:  # no ink in this crop: nothing to place
            return ink
        a = np.deg2rad(angle)
        rot = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])  # counter-clockwise as seen
        centre = np.array(traced.size, np.float64) / 2.0
        paths = tuple(((p - centre) @ rot.T + centre).astype(np.float32) for p in traced.paths)
        ink.vector = Strokes(paths, traced.width, traced.size)
        bx0, by0, bx1, by1 = ink.vector.ink_box()
        s = width / max(bx1 - bx0, 1e-6)
        ink.rect = (x, bottom - (by1 - by0) * s, x + (bx1 - bx0) * s, bottom)
        points, pen, _box = ink.vector.fit(ink.rect)
        # a stylus or mouse pen is thin whatever the crop's resolution: 0.6-1.6 pt
        ink.pen = float(np.clip(pen * 0.5, 0.6, 1.0) * rng.uniform(1.0, 1.6))
        ink.width_scale = ink.pen / max(pen, 1e-6)
        ink.pen = max(MIN_PEN, pen * ink.width_scale)  # what draw_strokes will draw
        ink.box = stroke_box(points, ink.pen)  # the box draw_strokes will return for it
    return ink


def draw_ink(page: Any, ink: Ink) -> None:
    """Put one planned signature on the page: a picture, an Ink annotation or drawn paths."""
    import pymupdf

    rgb = tuple(c / 255.0 for c in ink.color)
    if ink.kind in ("image", "image_paper"):
        page.insert_image(pymupdf.Rect(*ink.rect), stream=ink.png, keep_proportion=False)
    elif ink.vector is not None:
        draw_strokes(page, ink.vector, ink.rect, ink.kind == "ink_annot", rgb, ink.width_scale)


def _script_name_png(name: str, font: str, color: tuple[int, int, int]) -> tuple[bytes, float]:
    """A name set in a Hershey script face, as ink on transparency; returns the PNG and its aspect."""
    face = SCRIPT_FONTS[font]
    # Hershey faces have ASCII glyphs only: "López" is drawn "Lopez" (the text layer keeps "López")
    name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    (tw, th), base = cv2.getTextSize(name, face, 2.0, 2)
    canvas = np.zeros((th + base + 12, tw + 12), np.uint8)
    cv2.putText(canvas, name, (6, th + 6), face, 2.0, 255, 2, cv2.LINE_AA)
    rgba = np.dstack([np.broadcast_to(np.array(color, np.uint8), (*canvas.shape, 3)), canvas])
    return png_bytes(rgba), canvas.shape[1] / canvas.shape[0]


def typed_name(page: Any, rng: np.random.Generator, slot: Slot, name: str) -> dict[str, Any]:
    """A name typed on an empty signing place (a negative): a text font or a script-like face.

    Script faces are drawn as a picture with the name in an invisible text layer over it, as an
    e-signing tool's "type your name" output looks to a reader and to text extraction.
    """
    import pymupdf

    x = slot.x0 + float(rng.uniform(2.0, 20.0))
    y = slot.baseline - float(rng.uniform(2.0, 5.0))
    color = _choice(rng, BLUE_INKS if rng.random() < 0.3 else BLACK_INKS)
    rgb = tuple(c / 255.0 for c in color)
    if rng.random() < 0.5:
        font = _choice(rng, tuple(SCRIPT_FONTS))
        png, aspect = _script_name_png(name, font, color)
        h = float(rng.uniform(18.0, 28.0))
        w = min(h * aspect, max(40.0, slot.x1 - x))
        h = w / aspect
        rect = (x, y - h * 0.8, x + w, y + h * 0.2)
        page.insert_image(pymupdf.Rect(*rect), stream=png, keep_proportion=False)
        page.insert_text((x, y), name, fontsize=h * 0.6, render_mode=3)
        return {"kind": "typed_name", "font": font, "text": name, "box_pt": _round_box(rect)}
    font = _choice(rng, TYPED_FONTS)
    size = float(rng.uniform(11.0, 17.0))
    page.insert_text((x, y), name, fontname=font, fontsize=size, color=rgb)
    w = pymupdf.get_text_length(name, fontname=font, fontsize=size)
    return {
        "kind": "typed_name",
        "font": font,
        "text": name,
        "box_pt": _round_box((x, y - size, x + w, y + 3)),
    }


def _person(rng: np.random.Generator) -> str:
    return f"{_choice(rng, vocab.FIRST_NAMES)} {_choice(rng, vocab.LAST_NAMES)}"


# -- generated contracts ---------------------------------------------------------------------------
def _logo(page: Any, rng: np.random.Generator, x: float, y: float, bold: str) -> dict[str, Any]:
    """A company mark: two coloured shapes and the company's name (a negative: not ink)."""
    import pymupdf

    c1 = tuple(float(v) for v in rng.uniform(0.0, 0.8, 3))
    c2 = tuple(float(v) for v in rng.uniform(0.2, 0.9, 3))
    s = float(rng.uniform(22.0, 34.0))
    shape = page.new_shape()
    if rng.random() < 0.5:
        shape.draw_circle(pymupdf.Point(x + s / 2, y + s / 2), s / 2)
    else:
        shape.draw_polyline([(x, y + s), (x + s / 2, y), (x + s, y + s), (x, y + s)])
    shape.finish(color=c1, fill=c1)
    shape.draw_rect(pymupdf.Rect(x + s * 0.55, y + s * 0.35, x + s * 1.25, y + s * 1.05))
    shape.finish(color=c2, fill=c2)
    shape.commit()
    name = _choice(rng, vocab.COMPANIES)
    size = float(rng.uniform(10.0, 14.0))
    page.insert_text((x + s * 1.5, y + s * 0.7), name, fontname=bold, fontsize=size, color=c1)
    w = pymupdf.get_text_length(name, fontname=bold, fontsize=size)
    return {"kind": "logo", "text": name, "box_pt": _round_box((x, y, x + s * 1.5 + w, y + s * 1.05))}


def _stamp(page: Any, rng: np.random.Generator, cx: float, cy: float) -> dict[str, Any]:
    """A rubber stamp, turned a little: a ring or frame and a word, in red, blue or violet."""
    import pymupdf

    color = _choice(rng, ((0.75, 0.1, 0.1), (0.1, 0.2, 0.7), (0.45, 0.15, 0.55)))
    word = _choice(rng, vocab.STAMP_WORDS)
    size = float(rng.uniform(11.0, 16.0))
    w = pymupdf.get_text_length(word, fontname="hebo", fontsize=size)
    centre = pymupdf.Point(cx, cy)
    morph = (centre, pymupdf.Matrix(float(rng.uniform(-18.0, 18.0))))
    shape = page.new_shape()
    if rng.random() < 0.5:
        r = w / 2 + 10
        shape.draw_circle(centre, r)
        shape.draw_circle(centre, r - 4)
        box = (cx - r, cy - r, cx + r, cy + r)
    else:
        box = (cx - w / 2 - 8, cy - size, cx + w / 2 + 8, cy + size * 0.9)
        shape.draw_rect(pymupdf.Rect(*box))
    shape.finish(color=color, width=float(rng.uniform(1.2, 2.2)), morph=morph)
    shape.insert_text(
        (cx - w / 2, cy + size * 0.35), word, fontname="hebo", fontsize=size, color=color, morph=morph
    )
    shape.commit()
    return {"kind": "stamp", "text": word, "box_pt": _round_box(box)}


def _initials(
    page: Any, rng: np.random.Generator, lang: str, width: float, height: float, font: str
) -> dict[str, Any]:
    """An initials box at the foot of the page, left blank (a negative)."""
    import pymupdf

    n = int(rng.integers(1, 3))
    x = width - 60.0 - n * 42.0
    y = height - 58.0
    page.insert_text((x - 52, y + 15), vocab.INITIALS_LABEL[lang], fontname=font, fontsize=8)
    for k in range(n):
        page.draw_rect(pymupdf.Rect(x + k * 42, y, x + k * 42 + 36, y + 22), color=(0.3, 0.3, 0.3), width=0.6)
    return {"kind": "initials_box", "box_pt": _round_box((x - 52, y, x + n * 42, y + 22))}


def _paragraphs(
    page: Any,
    rng: np.random.Generator,
    lang: str,
    fonts: tuple[str, str],
    x0: float,
    x1: float,
    y: float,
    limit: float,
    first: int,
    fill: bool,
) -> tuple[float, int]:
    """Numbered paragraphs (one to three clauses each, sometimes under an article heading) from
    ``y`` down to ``limit`` (all the way with ``fill``, else a few); returns the end and the next
    number, so a second page goes on where the first stopped."""
    import pymupdf

    font, bold = fonts
    size = float(rng.uniform(9.0, 11.0))
    lead = size * 1.35
    align = int(_choice(rng, (0, 0, 3)))  # left or justified
    headed = rng.random() < 0.4
    heading = _choice(rng, vocab.ARTICLE[lang])
    clauses = list(vocab.CLAUSES[lang])
    want = 10_000 if fill else int(rng.integers(2, 9))
    n = first
    while n - first < want:
        parts = [
            clauses[int(i)] for i in rng.choice(len(clauses), size=int(rng.integers(1, 4)), replace=False)
        ]
        text = " ".join(parts) if headed else f"{n}. " + " ".join(parts)
        lines = (
            int(np.ceil(pymupdf.get_text_length(text, fontname=font, fontsize=size) / (x1 - x0) * 1.12)) + 1
        )
        h = lines * lead + (lead + 2.0 if headed else 0.0)
        if y + h > limit:
            break
        if headed:
            page.insert_text((x0, y + size), f"{heading} {n}", fontname=bold, fontsize=size)
            y += lead + 2.0
            h -= lead + 2.0
        rc = page.insert_textbox(
            pymupdf.Rect(x0, y, x1, y + h + lead), text, fontname=font, fontsize=size, align=align
        )
        if rc < 0:
            break
        y += h + lead - rc + size * 0.6
        n += 1
    return y, n


def _signing_block(
    page: Any,
    rng: np.random.Generator,
    lang: str,
    font: str,
    x0: float,
    x1: float,
    y: float,
    n: int,
    index: int,
) -> tuple[list[Slot], list[dict[str, Any]]]:
    """``n`` signing places in one or two columns from ``y`` on; each with a printed name and date."""
    import pymupdf

    cols = 2 if n >= 2 and rng.random() < 0.7 else 1
    colw = (x1 - x0 - 30.0 * (cols - 1)) / cols
    slots: list[Slot] = []
    names: list[str] = []
    for k in range(n):
        cx = x0 + (k % cols) * (colw + 30.0)
        ry = y + 62.0 + (k // cols) * 118.0  # the line the signature sits on
        style = _choice(rng, ("same_line", "rule_above_label", "x_line", "field", "box"))
        label = _choice(rng, vocab.SIGN_LABELS[lang])
        size = 9.5
        rule_len = float(min(colw - 10.0, rng.uniform(150.0, 230.0)))
        if k < 2 and rng.random() < 0.6:
            page.insert_text((cx, ry - 58.0), vocab.PARTIES[lang][k], fontname=font, fontsize=size)
        if style == "same_line":
            lw = pymupdf.get_text_length(label + " ", fontname=font, fontsize=size)
            uw = pymupdf.get_text_length("_", fontname=font, fontsize=size)
            count = max(8, int((rule_len - lw) / uw))
            page.insert_text((cx, ry), label + " " + "_" * count, fontname=font, fontsize=size)
            slot = Slot(index, cx + lw, cx + lw + count * uw, ry + 1.0, 52.0, "line", label)
        elif style == "rule_above_label":
            page.draw_line((cx, ry), (cx + rule_len, ry), width=0.7)
            page.insert_text((cx, ry + 11.0), label.rstrip(": "), fontname=font, fontsize=size - 1)
            slot = Slot(index, cx, cx + rule_len, ry, 52.0, "line", label)
        elif style == "x_line":
            xw = pymupdf.get_text_length("X ", fontname=font, fontsize=size)
            uw = pymupdf.get_text_length("_", fontname=font, fontsize=size)
            count = max(8, int(rule_len / uw) - 2)
            page.insert_text((cx, ry), "X " + "_" * count, fontname=font, fontsize=size)
            page.insert_text((cx, ry + 11.0), label.rstrip(": "), fontname=font, fontsize=size - 1)
            slot = Slot(index, cx + xw, cx + xw + count * uw, ry + 1.0, 52.0, "line", label)
        elif style == "field":
            rect = pymupdf.Rect(cx, ry - 46.0, cx + rule_len, ry)
            w = pymupdf.Widget()
            w.field_type = pymupdf.PDF_WIDGET_TYPE_SIGNATURE
            w.field_name = f"Signature{index + 1}_{k + 1}"
            w.rect = rect
            page.add_widget(w)
            # MuPDF writes its own "SIGN" tab as the field's appearance; forms from e-signing tools
            # leave it empty (viewers draw nothing) and draw the frame in the page content
            kind, ap = page.parent.xref_get_key(w.xref, "AP/N")
            if kind == "xref":
                page.parent.update_stream(int(ap.split()[0]), b" ")
            page.draw_rect(rect, color=(0.55, 0.55, 0.6), width=0.6)
            page.insert_text((cx, ry + 11.0), label.rstrip(": "), fontname=font, fontsize=size - 1)
            slot = Slot(index, cx + 3.0, cx + rule_len - 3.0, ry - 3.0, 40.0, "field", label)
        else:  # a drawn box with its label inside
            page.draw_rect(
                pymupdf.Rect(cx, ry - 52.0, cx + rule_len, ry + 4.0), color=(0.2, 0.2, 0.2), width=0.7
            )
            page.insert_text((cx + 4.0, ry - 43.0), label.rstrip(": "), fontname=font, fontsize=size - 2)
            slot = Slot(index, cx + 4.0, cx + rule_len - 4.0, ry, 40.0, "box", label)
        name = _person(rng)
        names.append(name)
        below = ry + (26.0 if style in ("rule_above_label", "x_line", "field") else 16.0)
        if rng.random() < 0.85:
            page.insert_text((cx, below), f"{vocab.NAME_LABEL[lang]} {name}", fontname=font, fontsize=size)
        if rng.random() < 0.7:
            date = (
                f"{int(rng.integers(1, 29)):02d}.{int(rng.integers(1, 13)):02d}.20{int(rng.integers(19, 27))}"
            )
            text = f"{vocab.DATE_LABEL[lang]} " + (date if rng.random() < 0.5 else "_" * 14)
            page.insert_text((cx, below + 13.0), text, fontname=font, fontsize=size)
        slots.append(slot)
    return slots, [{"name": nm} for nm in names]


def generated_document(
    rng: np.random.Generator, max_pages: int = 2
) -> tuple[Any, list[Slot], list[PageRecord], str, list[str]]:
    """A contract in one of five languages, one or two pages, with 1–4 signing places on its last."""
    import pymupdf

    lang = _choice(rng, vocab.LANGUAGES)
    width, height = _choice(rng, PAGE_SIZES)
    font, bold = _choice(rng, BODY_FONTS[:2] if rng.random() < 0.85 else BODY_FONTS)
    n_pages = 2 if max_pages >= 2 and rng.random() < 0.3 else 1
    margin = float(rng.uniform(54.0, 80.0))
    doc = pymupdf.open()
    records = [PageRecord(i) for i in range(n_pages)]
    slots: list[Slot] = []
    names: list[str] = []
    title = _choice(rng, vocab.TITLES[lang])
    number = 1
    for i in range(n_pages):
        page = doc.new_page(width=width, height=height)
        rec = records[i]
        y = margin - 14.0
        if i == 0:
            if rng.random() < 0.45:
                rec.negatives.append(_logo(page, rng, margin, y - 6.0, bold))
                y += 40.0
            else:
                page.insert_text((margin, y + 8.0), _choice(rng, vocab.COMPANIES), fontname=bold, fontsize=10)
                y += 22.0
            tsize = float(rng.uniform(14.0, 18.0))
            tw = pymupdf.get_text_length(title, fontname=bold, fontsize=tsize)
            tx = (width - tw) / 2 if rng.random() < 0.6 else margin
            page.insert_text((tx, y + 20.0), title, fontname=bold, fontsize=tsize)
            y += 40.0
        last = i == n_pages - 1
        n_places = int(_choice(rng, (1, 2, 2, 2, 3, 4))) if last else 0
        rows = (n_places + 1) // 2 if n_places else 0
        block = 40.0 + max(1, rows) * 118.0 if last else 0.0
        limit = height - margin - block - (20.0 if last else 40.0)
        y, number = _paragraphs(
            page, rng, lang, (font, bold), margin, width - margin, y, limit, number, fill=not last
        )
        if last:
            ys = max(y + 10.0, height - margin - block - 10.0) if rng.random() < 0.5 else y + 10.0
            if rng.random() < 0.5:
                town = _choice(rng, ("Berlin", "Lyon", "Porto", "Sevilla", "London"))
                place = f"{vocab.PLACE_LABEL[lang]} {town}"
                page.insert_text((margin, ys), place, fontname=font, fontsize=9.5)
                ys += 6.0
            made, people = _signing_block(page, rng, lang, font, margin, width - margin, ys, n_places, i)
            slots += made
            names += [p["name"] for p in people]
        if rng.random() < (0.5 if not last else 0.3):
            rec.negatives.append(_initials(page, rng, lang, width, height, font))
        if rng.random() < 0.25:
            if last and slots and rng.random() < 0.5:
                s = slots[int(rng.integers(len(slots)))]
                cx, cy = s.x1 + float(rng.uniform(-40.0, 30.0)), s.baseline - float(rng.uniform(10.0, 50.0))
            else:
                cx, cy = width - margin - 60.0, margin + float(rng.uniform(40.0, 120.0))
            rec.negatives.append(_stamp(page, rng, min(cx, width - 50.0), max(cy, 50.0)))
        footer = f"{vocab.PAGE_WORD[lang]} {i + 1}/{n_pages}"
        page.insert_text((width / 2 - 15.0, height - 24.0), footer, fontname=font, fontsize=8)
    return doc, slots, records, lang, names


# -- templates -------------------------------------------------------------------------------------
def template_slots(path: str | os.PathLike[str]) -> list[Slot]:
    """The signing places the verdict stage finds in a template (fields, labelled lines), as slots."""
    from inkloop.verdict.places import analyze_document

    slots: list[Slot] = []
    for p in analyze_document(path).places:
        if p.page is None or (p.zone is None and p.box is None):
            continue
        if p.kind == "field" and p.box is not None:
            x0, y0, x1, y1 = p.box
            if x1 - x0 < 20 or y1 - y0 < 10:
                continue
            slots.append(
                Slot(p.page, x0 + 2.0, x1 - 2.0, y1 - 2.0, max(10.0, y1 - y0 - 4.0), "field", p.text)
            )
        elif p.zone is not None:
            x0, _y0, x1, y1 = p.zone
            slots.append(Slot(p.page, x0, x1, y1 - 8.0, 50.0, "label", p.text))
    return slots


# -- the whole document ----------------------------------------------------------------------------
def make_document(
    rng: np.random.Generator,
    crops: list[Crop],
    template: tuple[str, bytes, list[Slot]] | None = None,
    max_pages: int = 2,
    with_ink: bool = True,
    ink_kinds: tuple[str, ...] | None = None,
) -> Document:
    """One document and what each page holds; ``with_ink=False`` leaves the signatures out only.

    ``template`` is ``(name, pdf bytes, slots)``; without it a contract is generated.
    ``ink_kinds`` restricts the ink to some of :data:`INK_KINDS` (tests measure each kind alone).
    """
    import pymupdf

    if template is None:
        doc, slots, records, lang, names = generated_document(rng, max_pages)
        host: str = "generated"
        unsigned = rng.random() < UNSIGNED_DOCUMENT
    else:
        name, data, slots = template
        doc = pymupdf.open(stream=data, filetype="pdf")
        records = [PageRecord(i) for i in range(doc.page_count)]
        lang, host, unsigned = None, f"template:{name}", rng.random() < UNSIGNED_DOCUMENT
        names = [_person(rng) for _ in slots]
    inks: list[Ink] = []
    signed_any = False
    for k, slot in enumerate(slots):
        if unsigned or (rng.random() < EMPTY_PLACE and (signed_any or k < len(slots) - 1)):
            if rng.random() < TYPED_NAME:
                records[slot.page].negatives.append(typed_name(doc[slot.page], rng, slot, names[k]))
            else:
                records[slot.page].negatives.append(
                    {
                        "kind": "empty_place",
                        "place": slot.kind,
                        "box_pt": _round_box((slot.x0, slot.baseline - slot.room, slot.x1, slot.baseline)),
                    }
                )
            continue
        crop = crops[int(rng.integers(len(crops)))]
        kind = None if ink_kinds is None else ink_kinds[int(rng.integers(len(ink_kinds)))]
        ink = plan_ink(rng, slot, k, crop, kind)
        if ink.box[2] - ink.box[0] <= 1.0:  # nothing of the crop is dark enough to be ink
            continue
        inks.append(ink)
        records[slot.page].inks.append(ink)
        signed_any = True
    if with_ink:
        for ink in inks:
            draw_ink(doc[slots[ink.slot].page], ink)
    doc.set_metadata(
        {"producer": "inkloop synth", "creator": "inkloop synth", "creationDate": "", "modDate": ""}
    )
    pdf = doc.tobytes(garbage=3, deflate=True, no_new_id=True)
    doc.close()
    return Document(pdf, records, host, lang)

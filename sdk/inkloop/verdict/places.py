"""Find the places in a document that ask for a signature: fields, labelled lines, vendor marks.

Every box is in PDF points with the origin at the top-left of the page *as displayed* (MuPDF
reports text, drawings and widgets in the unrotated page; they are turned with the page's
rotation matrix), the frame of ``pdf_xyxy`` in ``results.jsonl``, so places and ink compare
directly.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from inkloop.geometry import clip, covered_share
from inkloop.verdict._base import BoxXYXY
from inkloop.verdict.digital import check_digital_signatures
from inkloop.verdict.record import DigitalSignature, PageEvidence, SignaturePlace, VendorMark
from inkloop.verdict.rules import DATE_LINE, MAX_LABEL_CHARS, VENDORS, X_LINE, compiled_labels, page_language

#: Typical height of a handwritten signature above its line (0.7 inch), in points.
SIGNATURE_HEIGHT = 50.0
#: How far to the right of a label with no rule a signature is expected, in points (3 inches).
LABEL_REACH = 216.0
#: A drawn segment counts as a rule when it is this flat and at least this long (points).
RULE_MAX_THICKNESS = 2.5
RULE_MIN_LENGTH = 40.0
#: A stroked path is hand-drawn ink when it has at least this many segments, at least a quarter
#: of them oblique (more than FREEHAND_OBLIQUE degrees off horizontal and vertical), and a box of
#: at least 15 × 6 points: what an Ink annotation or a tablet's flattened strokes look like
#: (traced real signatures: 18 to 170 segments, 35-60 % oblique), unlike rules, frames, tables
#: and underlines (axis-aligned) or a rounded frame (8 segments).
FREEHAND_MIN_SEGMENTS = 16
FREEHAND_OBLIQUE = 10.0
FREEHAND_OBLIQUE_SHARE = 0.25
#: An image placed on a page counts as a possible signature up to this height (2 inches) and
#: this share of the page's area; larger ones are scans, backgrounds, letterheads.
IMAGE_MAX_HEIGHT = 144.0
IMAGE_MAX_AREA = 0.15
#: Words that hold only rule characters: "______", "........" (at least this many).
_RULE_WORD = re.compile(r"^[_.…]{5,}$|^_{3,}$")
#: A page with fewer words than this has no usable text layer (a scan with a page number).
MIN_TEXT_WORDS = 3


@dataclass(slots=True)
class DocumentEvidence:
    """Everything read from a document's structure and words, before ink is joined to it."""

    pages: list[PageEvidence] = field(default_factory=list)
    places: list[SignaturePlace] = field(default_factory=list)
    marks: list[VendorMark] = field(default_factory=list)
    digital_signatures: list[DigitalSignature] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    #: per page, the boxes of hand-drawn vector ink (Ink annotations, freehand paths): strokes a
    #: stylus or a mouse wrote, whether or not the detector boxed them, see ``judge.join``
    freehand: dict[int, list[BoxXYXY]] = field(default_factory=dict)
    #: per page, the boxes of the text layer's typed words (letters, not rules of underscores):
    #: a box of "ink" lying on them is most likely a typed name, see ``judge.mark_typed``
    typed: dict[int, list[BoxXYXY]] = field(default_factory=dict)
    #: per page, the boxes of text lines that are only a date's label ("Date:", "Ort, Datum"):
    #: ink beside or under one is a date, not a signature, see ``dates.mark_dated``
    date_lines: dict[int, list[BoxXYXY]] = field(default_factory=dict)
    #: per page, the boxes of signature-sized images placed on it (what e-signing tools write for
    #: an uploaded or drawn signature), whether or not the detector boxed them, see ``judge.join``
    images: dict[int, list[BoxXYXY]] = field(default_factory=dict)


def _rot(rect: Any, page: Any) -> BoxXYXY:
    r = rect * page.rotation_matrix if page.rotation else rect
    r.normalize()
    return (float(r.x0), float(r.y0), float(r.x1), float(r.y1))


def _union(a: BoxXYXY, b: BoxXYXY) -> BoxXYXY:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


@dataclass(slots=True)
class _Word:
    box: BoxXYXY
    text: str


def _lines(page: Any) -> list[list[_Word]]:
    """Words grouped by MuPDF's (block, line), boxes already in the displayed frame."""
    import pymupdf

    groups: dict[tuple[int, int], list[_Word]] = {}
    for x0, y0, x1, y1, text, block, line, _n in page.get_text("words"):
        box = _rot(pymupdf.Rect(x0, y0, x1, y1), page)
        groups.setdefault((block, line), []).append(_Word(box, text))
    return list(groups.values())


def _line_box(ln: list[_Word]) -> BoxXYXY:
    box = ln[0].box
    for w in ln[1:]:
        box = _union(box, w.box)
    return box


def _drawings(page: Any) -> list[dict[str, Any]]:
    """The page's vector drawings (annotations' appearances included); none if unreadable."""
    try:
        return list(page.get_drawings())
    except Exception:
        return []


def _rules(page: Any, lines: list[list[_Word]], drawings: list[dict[str, Any]]) -> list[tuple[BoxXYXY, str]]:
    """Candidate rules: flat drawn segments and lines made only of underscores or dots."""
    import pymupdf

    out: list[tuple[BoxXYXY, str]] = []
    for d in drawings:
        for item in d.get("items", []):
            if item[0] == "l":
                r = pymupdf.Rect(item[1], item[2])
            elif item[0] == "re":
                r = pymupdf.Rect(item[1])
            else:
                continue
            r.normalize()
            box = _rot(r, page)
            w, h = box[2] - box[0], box[3] - box[1]
            if h <= RULE_MAX_THICKNESS and w >= RULE_MIN_LENGTH:
                out.append((box, "drawn"))
    for ln in lines:
        if all(_RULE_WORD.match(w.text) for w in ln):
            out.append((_line_box(ln), "underscores"))
    return out


def _freehand(page: Any, drawings: list[dict[str, Any]]) -> list[BoxXYXY]:
    """Boxes of the page's hand-drawn vector ink: Ink annotations and stroked paths of many
    segments, a share of them oblique (``FREEHAND_*``; MuPDF's drawings include the annotations'
    appearances, so an Ink annotation is one of them)."""
    import math

    import pymupdf

    out: list[BoxXYXY] = []
    for d in drawings:
        if "s" not in (d.get("type") or ""):
            continue
        segments = oblique = 0
        for item in d.get("items", []):
            if item[0] not in ("l", "c"):
                continue
            a, b = pymupdf.Point(item[1]), pymupdf.Point(item[-1])
            if abs(b - a) < 0.5:
                continue  # a dot: no direction
            segments += 1
            angle = math.degrees(math.atan2(abs(b.y - a.y), abs(b.x - a.x)))  # 0-90
            oblique += FREEHAND_OBLIQUE < angle < 90 - FREEHAND_OBLIQUE
        if segments < FREEHAND_MIN_SEGMENTS or oblique < FREEHAND_OBLIQUE_SHARE * segments:
            continue
        box = _rot(pymupdf.Rect(d["rect"]), page)
        if box[2] - box[0] >= 15 and box[3] - box[1] >= 6:
            out.append(box)
    return out


def _placed_images(page: Any) -> list[BoxXYXY]:
    """Boxes of the images placed on the page at most signature size (``IMAGE_MAX_*``).

    A page-sized image is a scan or a background (an OCR'd scan's text sits on it), a logo is
    usually off the signing lines; an image on a signing place is what e-signing tools write
    for an uploaded or drawn signature. Images inside annotations' appearances are not listed.
    """
    import pymupdf

    try:
        infos = page.get_image_info()
    except Exception:
        return []
    pw, ph = float(page.rect.width), float(page.rect.height)
    out: list[BoxXYXY] = []
    for info in infos:
        r = pymupdf.Rect(info["bbox"])
        if r.is_empty or r.is_infinite:
            continue
        box = _rot(r, page)
        w, h = box[2] - box[0], box[3] - box[1]
        if w >= 15 and h >= 6 and h <= IMAGE_MAX_HEIGHT and w * h <= IMAGE_MAX_AREA * pw * ph:
            out.append(box)
    return out


def _label_places(
    page: Any, index: int, lines: list[list[_Word]], lang: str | None, drawings: list[dict[str, Any]]
) -> list[SignaturePlace]:
    """Labelled signing lines: a short line naming a signature, with the rule that goes with it."""
    rules = _rules(page, lines, drawings)
    pw, ph = float(page.rect.width), float(page.rect.height)
    labels = compiled_labels(lang)
    places: list[SignaturePlace] = []
    for ln in lines:
        text = " ".join(w.text for w in ln)
        offsets, pos = [], 0
        for w in ln:
            offsets.append(pos)
            pos += len(w.text) + 1
        hits: list[tuple[int, int, str | None]] = []  # (start, end, language)
        for lg, rx in labels:
            hits += [(m.start(), m.end(), lg) for m in rx.finditer(text)]
        hits += [(m.start(), m.end(), None) for m in X_LINE.finditer(text)]
        if not hits:
            continue
        hits.sort()
        # one place per label occurrence; overlapping hits ("Signature" en/fr) are one place
        merged: list[tuple[int, int, str | None]] = []
        for h in hits:
            if merged and h[0] < merged[-1][1]:
                continue
            merged.append(h)
        for start, end, lg in merged:
            wi = max(i for i, o in enumerate(offsets) if o <= start)
            wj = max(i for i, o in enumerate(offsets) if o < end)
            label_box = ln[wi].box
            for w in ln[wi + 1 : wj + 1]:
                label_box = _union(label_box, w.box)
            # the words of this label up to the next label or the end of the line
            nxt = [h[0] for h in merged if h[0] > start]
            stop = len(ln) if not nxt else max(i for i, o in enumerate(offsets) if o <= nxt[0])
            tail = ln[wj + 1 : stop]
            bare = re.sub(r"[_.…:\s]+", " ", " ".join(w.text for w in ln[wi : wj + 1])).strip()
            own = re.sub(r"[_.…]{3,}", "", text)
            if len(own.strip()) > MAX_LABEL_CHARS:
                continue  # a sentence that mentions signatures, not a place to sign
            rule_box: BoxXYXY | None = None
            rule_kind: str = "none"
            # the rule right after the label ("Assinatura do Cliente ____"), not the next field's
            # ("Signature: ____ Date: ____"): up to 4 words may come first, a third ending in ":" stops
            under: list[_Word] = []
            for n, w in enumerate(tail):
                if re.search(r"_{3,}|\.{5,}", w.text):
                    under.append(w)
                elif under or n >= 4 or (n >= 2 and w.text.endswith(":")):
                    break
            if under or re.search(r"_{3,}", ln[wj].text):
                words = under or [ln[wj]]
                rule_box = words[0].box
                for w in words[1:]:
                    rule_box = _union(rule_box, w.box)
                rule_kind = "underscores"
            else:
                lx0, ly0, lx1, ly1 = label_box
                best: tuple[float, BoxXYXY, str] | None = None
                for rb, kind in rules:
                    beside = ly0 - 2 <= rb[1] <= ly1 + 8 and lx1 - 5 <= rb[0] <= lx1 + 150
                    above = ly0 - 30 <= rb[3] <= ly0 + 2 and rb[0] < lx1 and rb[2] > lx0
                    below = ly1 - 1 <= rb[1] <= ly1 + 14 and rb[0] < lx1 and rb[2] > lx0
                    if beside or above or below:
                        d = abs(rb[1] - ly1) + abs(rb[0] - lx0) * 0.1
                        if best is None or d < best[0]:
                            best = (d, rb, kind)
                if best is not None:
                    rule_box, rule_kind = best[1], best[2]
            if rule_box is not None:
                zone = (rule_box[0], rule_box[3] - SIGNATURE_HEIGHT, rule_box[2], rule_box[3] + 8)
                box = _union(label_box, rule_box)
            else:
                zone = (
                    label_box[2],
                    label_box[3] - SIGNATURE_HEIGHT,
                    label_box[2] + LABEL_REACH,
                    label_box[3] + 8,
                )
                box = label_box
            places.append(
                SignaturePlace(
                    place_id="",
                    kind="label",
                    page=index,
                    box=box,
                    zone=clip(zone, pw, ph),
                    text=bare[:80],
                    language=lg,
                    rule=rule_kind,  # type: ignore[arg-type]
                )
            )
    return places


def _vendor_marks(page: Any, index: int, text: str) -> list[VendorMark]:
    marks: list[VendorMark] = []
    for rule in VENDORS:
        for m in rule.pattern.finditer(text):
            box: BoxXYXY | None = None
            try:
                hits = page.search_for(m.group(1))
                if hits:
                    box = _rot(hits[0], page)
            except Exception:
                box = None
            marks.append(VendorMark(rule.vendor, index, m.group(1), box, m.group(0)[:120]))
    return marks


def _field_places(page: Any, index: int, digital: dict[str, DigitalSignature]) -> list[SignaturePlace]:
    import pymupdf

    out: list[SignaturePlace] = []
    for w in page.widgets(types=[pymupdf.PDF_WIDGET_TYPE_SIGNATURE]):
        name = str(w.field_name or "")
        reasons: list[str] = []
        box: BoxXYXY | None
        try:
            r = w.rect
            box = None if r.is_empty or r.is_infinite else _rot(r, page)
        except Exception:
            box = None
        if box is None:
            reasons.append("field has no rectangle (invisible or malformed): no ink can be matched to it")
        sig = digital.get(name)
        out.append(
            SignaturePlace(
                place_id="",
                kind="field",
                page=index,
                box=box,
                zone=None if box is None else (box[0] - 6, box[1] - 6, box[2] + 6, box[3] + 6),
                text=name,
                field_name=name,
                digital=sig,
                reasons=reasons,
            )
        )
    return out


def analyze_document(path: str | os.PathLike[str]) -> DocumentEvidence:
    """Places, vendor marks and digital signatures of a PDF, page by page; never raises.

    Non-PDF files (images, TIFF) have no text layer: every page is ``ink_only``. A page whose
    text is in a language without rules is ``fields_only`` and says so.
    """
    import pymupdf

    ev = DocumentEvidence()
    try:
        doc = pymupdf.open(os.fspath(path))
    except Exception as exc:
        ev.reasons.append(f"cannot open for places: {exc.__class__.__name__}: {str(exc)[:150]}")
        return ev
    with doc:
        if not doc.is_pdf:
            for i in range(doc.page_count):
                ev.pages.append(
                    PageEvidence(i, False, None, "ink_only", ["not a PDF: places come only from ink"])
                )
            return ev
        if doc.needs_pass:
            ev.reasons.append("encrypted PDF that needs a password: no text layer or fields readable")
            for i in range(doc.page_count):
                ev.pages.append(
                    PageEvidence(i, False, None, "ink_only", ["encrypted: places come only from ink"])
                )
            return ev
        if doc.is_encrypted or (doc.metadata or {}).get("encryption"):
            ev.reasons.append("encrypted PDF opened with the empty user password")
        digital, dreasons = ({}, []) if not _has_sig_fields(doc) else check_digital_signatures(path)
        ev.reasons += dreasons
        ev.digital_signatures = list(digital.values())
        seen_fields: set[str] = set()
        for i in range(doc.page_count):
            pe = PageEvidence(i, True)
            try:
                page = doc[i]
                fields = _field_places(page, i, digital)
            except Exception as exc:
                fields = []
                pe.reasons.append(f"signature fields unreadable on this page: {exc.__class__.__name__}")
                page = None
            seen_fields |= {f.field_name or "" for f in fields}
            labels: list[SignaturePlace] = []
            if page is not None:
                try:
                    lines = _lines(page)
                    nwords = sum(len(ln) for ln in lines)
                    text = page.get_text("text")
                    ev.typed[i] = [w.box for ln in lines for w in ln if sum(c.isalpha() for c in w.text) >= 2]
                    ev.date_lines[i] = [
                        _line_box(ln) for ln in lines if DATE_LINE.match(" ".join(w.text for w in ln))
                    ]
                except Exception as exc:
                    lines, nwords, text = [], 0, ""
                    pe.reasons.append(f"text layer unreadable: {exc.__class__.__name__}")
                drawings = _drawings(page)  # once: for rules and for hand-drawn ink
                ev.freehand[i] = _freehand(page, drawings)
                ev.images[i] = _placed_images(page)
                if nwords < MIN_TEXT_WORDS:
                    pe.text_layer = False
                    pe.places_from = "fields_only" if fields else "ink_only"
                    pe.reasons.append("no text layer (scanned page): places come only from ink")
                else:
                    lang, note = page_language(text)
                    pe.language = lang
                    if note == "no_rules":
                        pe.places_from = "fields_only"
                        pe.reasons.append(
                            "text layer in a language without signature rules: labelled lines not searched, "
                            "places come from fields and ink only"
                        )
                    else:
                        labels = _label_places(page, i, lines, lang, drawings)
                    ev.marks += _vendor_marks(page, i, text)
            # a labelled line beside a field is that field's label, not a second place
            for f in fields:
                if f.zone is None:
                    continue
                for lb in list(labels):
                    if lb.zone and covered_share(lb.zone, f.zone) > 0.3:
                        labels.remove(lb)
                        f.reasons.append(f"labelled {lb.text!r}")
            for k, p in enumerate(fields + labels):
                p.place_id = f"p{i}-{p.kind}-{k}"
            ev.places += fields + labels
            ev.pages.append(pe)
        # signed fields that no page shows (no widget on a page): document-level places
        for name, sig in digital.items():
            if name not in seen_fields:
                ev.places.append(
                    SignaturePlace(
                        place_id=f"doc-field-{len(ev.places)}",
                        kind="field",
                        page=None,
                        box=None,
                        zone=None,
                        text=name,
                        field_name=name,
                        digital=sig,
                        reasons=["signed field on no page (no widget): matched by name only"],
                    )
                )
    return ev


def _has_sig_fields(doc: Any) -> bool:
    """Cheap test before pyHanko reads the file: does the AcroForm name any field at all?"""
    try:
        kind, _ = doc.xref_get_key(doc.pdf_catalog(), "AcroForm")
        return kind != "null"
    except Exception:
        return True

"""Ink on a date line: handwriting beside or under a printed ``Date`` is a date, not a signature.

Why: a handwritten date is the detector's commonest confident mistake on scans. Of the boxes
``signature-detector@7`` keeps on the real scans that are not signatures, 5 of 15 (val) and 9 of
41 (train) sit on a line labelled ``Date``, and none of its 707 right boxes does by this rule
(docs/verdict.md, "Ink on a date line").
A page with no signing place is judged on ink alone (rule 7), so such a box would call an
unsigned document ``signed``. A box on a date line is made **ambiguous**: it never signs
anything by itself, and the document goes to a person.

The labels come from the text layer where the page has one (free), and from OCR of a small crop
around the box where it has none (:mod:`inkloop.documents.ocr`, a fraction of a second a box),
read only for boxes that could decide the verdict: confident ink on no place, in a document with
no signing place and no vendor mark.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from inkloop.verdict._base import BoxXYXY, PageResult, points_to_pixels
from inkloop.verdict.places import DocumentEvidence
from inkloop.verdict.record import Ink
from inkloop.verdict.rules import DATE_LINE

#: A label left of the box may end at most this many box heights before it.
LEFT_REACH = 1.5
#: A label left of the box has its centre at least this far down the box (its baseline's side).
LEFT_FROM = 0.6
#: A label under the box may sit at most this many box heights below its bottom.
BELOW_REACH = 0.8
#: The crop read around a box (no text layer), in box heights: left, above, right, below. Wide
#: enough on the left for a whole ``Date:`` label at ``LEFT_REACH``.
CROP = (3.0, 0.3, 0.3, 1.2)
#: Pages are read for OCR at this resolution (PDF pages); images at their own pixels.
OCR_DPI = 150.0

#: (page index, box in the page image's pixels) → the boxes of date labels around it.
LabelReader = Callable[[int, BoxXYXY], list[BoxXYXY]]


def on_date_line(box: BoxXYXY, label: BoxXYXY) -> bool:
    """Whether ``label`` (a date label's box) labels the ink in ``box`` (same units).

    Under: the label's centre is within the box's width, from half the box's height above its
    bottom (a label the writing runs over) to ``BELOW_REACH`` heights below. Left: the label ends
    before the box's first quarter, at most ``LEFT_REACH`` heights before it, its centre on the
    writing's baseline: from ``LEFT_FROM`` of the box's height down to a quarter height under its
    bottom. A label right of the box is another field's ("Signature ____ Date ____"); one above
    it, or left of its upper part, labels the line above (a typed date over a signature).
    """
    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    lx0, ly0, lx1, ly1 = label
    cx, cy = (lx0 + lx1) / 2, (ly0 + ly1) / 2
    under = x0 <= cx <= x1 and y1 - 0.5 * h <= cy <= y1 + BELOW_REACH * h
    left = lx1 <= x0 + 0.25 * w and x0 - lx1 <= LEFT_REACH * h and y0 + LEFT_FROM * h <= cy <= y1 + 0.25 * h
    return under or left


def crop_box(box: BoxXYXY, width: int, height: int) -> tuple[int, int, int, int]:
    """The pixels read around ``box`` (``CROP``), clipped to the page."""
    x0, y0, x1, y1 = box
    h = y1 - y0
    left, above, right, below = CROP
    return (
        max(0, int(x0 - left * h)),
        max(0, int(y0 - above * h)),
        min(width, int(x1 + right * h) + 1),
        min(height, int(y1 + below * h) + 1),
    )


def date_labels_around(image: np.ndarray, box: BoxXYXY) -> list[BoxXYXY]:
    """The date labels OCR reads around ``box`` on a page ``image``, in that image's pixels.

    The one reading of a crop, for the verdict and for measuring the rule (tools/date_lines.py).
    """
    from inkloop.documents.ocr import read_lines  # loads RapidOCR: most verdicts never need it

    cx0, cy0, cx1, cy1 = crop_box(box, image.shape[1], image.shape[0])
    if cx1 - cx0 < 8 or cy1 - cy0 < 8:
        return []
    return [
        (ln.box[0] + cx0, ln.box[1] + cy0, ln.box[2] + cx0, ln.box[3] + cy0)
        for ln in read_lines(image[cy0:cy1, cx0:cx1])
        if DATE_LINE.match(ln.text)
    ]


def ocr_label_reader(source: str | os.PathLike[str]) -> tuple[LabelReader, Callable[[], None]]:
    """A reader of date labels by OCR around boxes of ``source``'s pages, and its closer.

    Nothing is opened or loaded until the first box is read. Pages are rendered once each (PDF
    pages at ``OCR_DPI``, images at their own pixels); boxes are given in that page image's
    pixels. Raises :class:`~inkloop.documents.ocr.OcrUnavailable`
    (without RapidOCR) or the document's opening error when called.
    """
    opened = None
    pages: dict[int, np.ndarray] = {}

    def read(index: int, box: BoxXYXY) -> list[BoxXYXY]:
        from inkloop.documents.opening import open_document  # loads OpenCV: most verdicts never need it

        nonlocal opened
        if index not in pages:
            if opened is None:
                opened = open_document(source)
            pages[index] = opened.render_for_people(index, dpi=OCR_DPI)
        return date_labels_around(pages[index], box)

    def close() -> None:
        if opened is not None:
            opened.close()

    return read, close


def _ocr_frame(i: Ink, results: dict[int, PageResult]) -> BoxXYXY | None:
    """The box in the pixels :func:`ocr_label_reader` renders its page at."""
    r = results.get(i.page)
    if r is None:
        return None
    if r.page.pdf_size is not None:
        return None if i.pdf_xyxy is None else points_to_pixels(i.pdf_xyxy, OCR_DPI)
    return i.xyxy  # an image: its own pixels


def mark_dated(
    ink: list[Ink],
    ev: DocumentEvidence,
    results: Sequence[PageResult],
    reader: LabelReader,
) -> list[str]:
    """Make confident boxes on no place that sit on a date line ambiguous; return the reasons.

    Run after ``judge.join`` (a box on a signing place is that place's ink, whatever is printed
    near it). Text-layer pages use ``ev.date_lines``; pages without one use ``reader`` (OCR) when
    the document has no place and no vendor mark, the only case where such a box decides the
    verdict, and only until one confident box is on no date line (the document is ``signed``
    then, whatever the others are): boxes are read from the highest score down, so a signed scan
    costs one crop. When ``reader`` fails (RapidOCR missing, the file unreadable) the rest are
    not read, and a reason says so.
    """
    by_page = {r.page.index: r for r in results}
    text_pages = {p.index for p in ev.pages if p.text_layer}
    needs_ocr = not ev.places and not ev.marks
    n = 0
    unread = 0
    failure = ""
    settled = False  # a confident box on no date line: the document is signed by rule 7 anyway
    for i in sorted(ink, key=lambda k: -k.score):
        if i.ambiguous or i.place_id is not None:
            continue
        if i.page in text_pages:
            hit = i.pdf_xyxy is not None and any(
                on_date_line(i.pdf_xyxy, lb) for lb in ev.date_lines.get(i.page, [])
            )
        elif needs_ocr and not settled:
            box = _ocr_frame(i, by_page)
            if box is None:
                continue
            if failure:
                unread += 1
                continue
            try:
                hit = any(on_date_line(box, lb) for lb in reader(i.page, box))
            except Exception as exc:  # OCR missing or the file unreadable: judged on ink alone
                failure = f"{exc.__class__.__name__}: {str(exc)[:150]}"
                unread += 1
                continue
        else:
            continue
        if hit:
            i.ambiguous = True
            n += 1
        else:
            settled = True
    reasons = []
    if n:
        reasons.append(f"{n} box(es) of ink on a date line ('Date' beside or under it): ambiguous")
    if unread:
        reasons.append(f"{unread} box(es) on pages without a text layer not read for date lines ({failure})")
    return reasons

"""Join ink to places and decide the document's verdict (the rules are in ``docs/verdict.md``).

Why the rules lean to ``needs_review``: the costly error is calling an unsigned contract
``signed``. Whenever evidence conflicts or is weak (a score near the threshold, ink beside but
not on a line, a digital signature changed after signing, a page that cannot be read), the
document goes to a person instead of getting a confident answer.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from inkloop.geometry import covered_share
from inkloop.verdict._base import BoxXYXY, PageResult, Thresholds, pixels_to_points
from inkloop.verdict.dates import mark_dated, ocr_label_reader
from inkloop.verdict.places import DocumentEvidence, analyze_document
from inkloop.verdict.record import DocumentVerdict, Ink, SignaturePlace, Verdict


@dataclass(frozen=True, slots=True)
class VerdictConfig:
    """The geometric and score rules; recorded on every verdict.

    - ``threshold``: the detector's operating threshold (results hold only boxes at or above
      it; the bundled model's card gives it, ``conf_threshold``).
    - ``domain_thresholds``: the operating thresholds of page domains cut at another one (the
      card's ``domain_thresholds``): a page's band sits on its own domain's threshold.
    - ``band``: a box scoring below ``threshold + band`` is ambiguous: it never signs a place by
      itself, its place becomes ``uncertain``.
    - ``on_fraction``: a box signs a place when at least this share of the box's area, or of
      the place's zone, is inside the zone.
    - ``near_margin``: a box within this many points of a zone (but not on it) makes an
      otherwise empty place ``uncertain``.
    """

    threshold: float = 0.25
    band: float = 0.15
    on_fraction: float = 0.3
    near_margin: float = 36.0
    domain_thresholds: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def at(cls, thresholds: Thresholds, **rules: float) -> VerdictConfig:
        """The rules for results cut at ``thresholds`` (a detector's or a card's)."""
        return cls(threshold=thresholds.default, domain_thresholds=dict(thresholds.by_domain), **rules)

    def threshold_of(self, domain: str | None) -> float:
        """The operating threshold a page of ``domain`` was cut at."""
        return Thresholds(self.threshold, self.domain_thresholds).of(domain)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["domain_thresholds"] = dict(self.domain_thresholds)
        if not d["domain_thresholds"]:
            del d["domain_thresholds"]  # as verdicts recorded it before domains had their own
        return d


def _overlap(a: BoxXYXY, b: BoxXYXY) -> float:
    """How much ``a`` and ``b`` overlap: the larger of the shares of either's area (``on_fraction``)."""
    return max(covered_share(a, b), covered_share(b, a))


def _gap(a: BoxXYXY, b: BoxXYXY) -> float:
    dx = max(0.0, max(a[0], b[0]) - min(a[2], b[2]))
    dy = max(0.0, max(a[1], b[1]) - min(a[3], b[3]))
    return (dx * dx + dy * dy) ** 0.5


def ink_from_results(results: Sequence[PageResult], config: VerdictConfig) -> list[Ink]:
    """The detector's boxes as :class:`Ink`, in PDF points where the page has them."""
    out: list[Ink] = []
    for r in results:
        for d in r.detections:
            pts = None
            if r.page.pdf_size is not None and r.page.dpi:
                pts = pixels_to_points(d.xyxy, r.page.dpi)
            out.append(
                Ink(
                    page=r.page.index,
                    score=d.score,
                    xyxy=d.xyxy,
                    pdf_xyxy=pts,
                    label=d.label,
                    ambiguous=d.score < config.threshold_of(r.page.domain) + config.band,
                )
            )
    return out


#: A box at least this much covered by the text layer's typed words is treated as ambiguous.
TYPED_COVER = 0.5


def mark_typed(ink: list[Ink], ev: DocumentEvidence) -> list[str]:
    """Make boxes that lie on the page's own typed words ambiguous; return a reason if any did.

    Why: a name typed on a signing line (a form filled on a computer, often in a script-like
    font) can look like handwriting to the detector, and a confident box on it would sign the
    place. Typed words are in the text layer; handwriting (a placed image, vector ink) is not. A
    box mostly covered by typed words (``TYPED_COVER`` of its area) never signs a place by itself:
    its place becomes ``uncertain`` and the document goes to a person. A signature written over
    a printed name is covered only where the name is, and keeps its weight.
    """
    n = 0
    for i in ink:
        words = ev.typed.get(i.page, [])
        if i.pdf_xyxy is None or i.ambiguous or not words:
            continue
        cover = sum(covered_share(i.pdf_xyxy, w) for w in words)
        if cover >= TYPED_COVER:
            i.ambiguous = True
            n += 1
    return [f"{n} box(es) of ink on typed text (the text layer's words): ambiguous"] if n else []


#: Why a place with no box on it is not empty: a signature is in the file's structure.
FREEHAND_ON_PLACE = "hand-drawn vector ink on the place (an Ink annotation or paths) that no box covers"
IMAGE_ON_PLACE = "an image placed on the place (as e-signing tools place a signature) that no box covers"


def join(
    places: list[SignaturePlace],
    ink: list[Ink],
    config: VerdictConfig,
    freehand: dict[int, list[BoxXYXY]] | None = None,
    images: dict[int, list[BoxXYXY]] | None = None,
) -> None:
    """Give each box at most one place (the zone it overlaps most) and each place its status.

    A place is ``signed_digital`` when its field carries an intact digital signature,
    ``signed_ink`` when a confident box is on its zone, ``uncertain`` when only an ambiguous box
    is on it, a box is near it, hand-drawn vector ink (``freehand``: page → boxes of Ink
    annotations and freehand paths) lies on it that no box covers, or its digital signature
    failed integrity, or a signature-sized image (``images``: page → boxes) is placed on it that
    no box covers, else ``empty``. Why the vector ink and the images: a signature drawn with a
    stylus, or uploaded or drawn in an e-signing tool (which places it as an image), is in the
    file's structure, whatever the detector makes of it; not a confident ``signed`` on its own
    (a scribble, a tick, initials, a logo look the same), but never ``empty`` either.
    """
    by_page: dict[int, list[SignaturePlace]] = {}
    for p in places:
        if p.page is not None and p.zone is not None:
            by_page.setdefault(p.page, []).append(p)
    on: dict[str, list[Ink]] = {}
    near: dict[str, list[Ink]] = {}
    for i in ink:
        if i.pdf_xyxy is None:
            continue
        best, best_f = None, 0.0
        for p in by_page.get(i.page, []):
            assert p.zone is not None
            f = _overlap(i.pdf_xyxy, p.zone)
            if f >= config.on_fraction and f > best_f:
                best, best_f = p, f
        if best is not None:
            i.place_id = best.place_id
            on.setdefault(best.place_id, []).append(i)
            continue
        close = [
            (g, p)
            for p in by_page.get(i.page, [])
            if p.zone is not None and (g := _gap(i.pdf_xyxy, p.zone)) <= config.near_margin
        ]
        if close:
            p = min(close, key=lambda t: t[0])[1]
            i.near = p.place_id
            near.setdefault(p.place_id, []).append(i)
    for p in places:
        mine = on.get(p.place_id, [])
        confident = [i for i in mine if not i.ambiguous]
        if p.digital is not None:
            if p.digital.ok:
                p.status = "signed_digital"
            else:
                p.status = "uncertain"
                p.reasons.append(f"digital signature {p.digital.integrity}: {p.digital.detail}")
        elif confident:
            p.status = "signed_ink"
        elif mine:
            p.status = "uncertain"
            p.reasons.append(
                f"only ambiguous ink (score {max(i.score for i in mine):.2f} < "
                f"{config.threshold + config.band:.2f})"
            )
        elif near.get(p.place_id):
            p.status = "uncertain"
            p.reasons.append("ink near the place but not on it")
        elif why := _in_the_file(p, {FREEHAND_ON_PLACE: freehand, IMAGE_ON_PLACE: images}, config):
            p.status = "uncertain"
            p.reasons.append(why)
        else:
            p.status = "empty"


def _in_the_file(
    place: SignaturePlace, evidence: dict[str, dict[int, list[BoxXYXY]] | None], config: VerdictConfig
) -> str | None:
    """The reason of the first kind of ``evidence`` (reason → page → boxes) lying on the place."""
    if place.page is None or place.zone is None:
        return None
    for why, by_page in evidence.items():
        if _drawn_on(place.zone, (by_page or {}).get(place.page, []), config):
            return why
    return None


def _drawn_on(zone: BoxXYXY, drawn: list[BoxXYXY], config: VerdictConfig) -> bool:
    """Whether a hand-drawn ink or image box lies on ``zone`` by the boxes' own rule (``on_fraction``)."""
    return any(_overlap(b, zone) >= config.on_fraction for b in drawn)


def decide(ev: DocumentEvidence, ink: list[Ink]) -> tuple[Verdict, list[str]]:
    """The document's verdict from joined places and ink, and the reasons, in rule order."""
    places = ev.places
    st = [p.status for p in places]
    unplaced = [i for i in ink if i.place_id is None]
    unplaced_sure = [i for i in unplaced if not i.ambiguous]
    broken = [s for s in ev.digital_signatures if not s.ok]
    ink_only_pages = [p.index for p in ev.pages if not p.text_layer or p.places_from == "ink_only"]
    drawn = any(ev.freehand.values())  # hand-drawn vector ink anywhere (on a place: uncertain)
    reasons: list[str] = []
    if broken:
        names = ", ".join(f"{s.field_name} ({s.integrity})" for s in broken)
        return "needs_review", [f"digital signature failed integrity: {names}"]
    if not ev.pages:
        return "needs_review", ["document could not be read for places", *ev.reasons]
    if "uncertain" in st:
        ids = [p.place_id for p in places if p.status == "uncertain"]
        return "needs_review", [f"uncertain places: {', '.join(ids)}"]
    signed = [p for p in places if p.status in ("signed_ink", "signed_digital")]
    empty = [p for p in places if p.status == "empty"]
    esign = bool(ev.marks) or any(p.status == "signed_digital" for p in places)
    if ev.marks:
        reasons.append("e-signature vendor marks: " + ", ".join(sorted({m.vendor for m in ev.marks})))
    if ink_only_pages:
        reasons.append(f"pages without a text layer (places from ink only): {ink_only_pages}")
    if places and not empty:
        if unplaced_sure and not esign:
            reasons.append(f"{len(unplaced_sure)} more box(es) of ink on no place")
        return ("e_signed" if esign else "signed"), [
            f"{len(signed)} of {len(places)} places signed",
            *reasons,
        ]
    if places and signed and ev.marks:
        return "needs_review", [
            f"e-signature vendor mark but {len(empty)} of {len(places)} places look empty "
            "(a vendor's signature image may not look like ink)",
            *reasons,
        ]
    if places and signed:
        return "partially_signed", [f"{len(signed)} of {len(places)} places signed", *reasons]
    if places:  # every place empty
        if ev.marks:
            return "needs_review", ["e-signature vendor mark but every place looks empty", *reasons]
        if unplaced_sure:
            return "needs_review", ["every place empty but ink elsewhere on the page(s)", *reasons]
        if unplaced:
            return "needs_review", ["every place empty; ambiguous ink elsewhere", *reasons]
        if drawn:
            return "needs_review", ["every place empty but hand-drawn vector ink elsewhere", *reasons]
        return "unsigned", [f"{len(places)} place(s), all empty", *reasons]
    # no places
    if ev.marks:
        return "e_signed", ["no signing places; e-signature vendor marks", *reasons]
    if unplaced_sure:
        return "signed", [f"{len(unplaced_sure)} box(es) of ink, no labelled place", *reasons]
    if unplaced:
        return "needs_review", ["only ambiguous ink and no place", *reasons]
    if drawn:
        return "needs_review", ["hand-drawn vector ink the detector did not box, and no place", *reasons]
    if ink_only_pages:
        return "needs_review", [
            "no text layer and no ink: cannot tell unsigned from no signature expected",
            *reasons,
        ]
    return "no_signature_expected", ["no signature places, no ink", *reasons]


def verdict_for_document(
    source: str | os.PathLike[str],
    results: Sequence[PageResult],
    config: VerdictConfig | None = None,
    doc_id: str | None = None,
    evidence: DocumentEvidence | None = None,
) -> DocumentVerdict:
    """The verdict of one document from its page results and its file; never raises for bad files.

    ``results`` are the document's ``PageResult``s (any order); ``source`` is the file they came
    from (read again for fields, words and digital signatures).
    """
    cfg = config or VerdictConfig()
    ev = evidence if evidence is not None else analyze_document(source)
    pages = sorted(results, key=lambda r: r.page.index)
    ink = ink_from_results(pages, cfg)
    typed = mark_typed(ink, ev)
    join(ev.places, ink, cfg, ev.freehand, ev.images)
    read, close = ocr_label_reader(source)
    try:
        dated = mark_dated(ink, ev, pages, read)
    finally:
        close()
    verdict, reasons = decide(ev, ink)
    reasons += typed + dated
    return DocumentVerdict(
        doc_id=doc_id or (pages[0].page.doc_id if pages else ""),
        source=str(source),
        verdict=verdict,
        reasons=reasons + [r for r in ev.reasons if r not in reasons],
        pages=ev.pages,
        places=ev.places,
        ink=ink,
        marks=ev.marks,
        digital_signatures=ev.digital_signatures,
        model_version=pages[0].model_version if pages else "",
        config=cfg.to_dict(),
    )

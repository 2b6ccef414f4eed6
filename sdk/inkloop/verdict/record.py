"""The verdict record: one per document, versioned, written as ``verdicts.jsonl`` beside results.

Why a record and not a label: a verdict is only useful if a reviewer (or an auditor, later) can
see what it rests on, so every place, every box and every signature check that led to it is kept,
in PDF points with the origin at the top-left of the page as displayed (as ``pdf_xyxy`` in
``results.jsonl``).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from inkloop import storage
from inkloop.verdict._base import BoxXYXY

#: Version of the ``verdicts.jsonl`` record layout.
VERDICT_SCHEMA_VERSION = 1
VERDICTS = "verdicts.jsonl"

Verdict = Literal[
    "signed", "partially_signed", "unsigned", "e_signed", "no_signature_expected", "needs_review"
]
VERDICTS_ORDER: tuple[Verdict, ...] = (
    "signed",
    "partially_signed",
    "unsigned",
    "e_signed",
    "no_signature_expected",
    "needs_review",
)
PlaceStatus = Literal["signed_ink", "signed_digital", "empty", "uncertain"]
PlaceKind = Literal["field", "label"]
Integrity = Literal["intact", "intact_with_updates", "modified", "broken", "unreadable"]


def _box(v: Any) -> BoxXYXY | None:
    if v is None:
        return None
    x0, y0, x1, y1 = (float(a) for a in v)
    return (x0, y0, x1, y1)


def _round(b: BoxXYXY | None) -> list[float] | None:
    return None if b is None else [round(float(v), 2) for v in b]


@dataclass(slots=True)
class DigitalSignature:
    """A signature dictionary in a signature field, as pyHanko reads and checks it.

    ``integrity``: ``intact`` (the signature covers the whole file), ``intact_with_updates``
    (later incremental updates that pyHanko's diff policy allows: form filling, more signatures,
    annotations where permitted), ``modified`` (updates after signing that are not allowed, or a
    coverage pyHanko cannot vouch for), ``broken`` (bytes inside the signed range changed: the
    digest or the cryptographic signature does not match), ``unreadable`` (the dictionary is
    malformed). Trust in the signer's certificate is out of scope: ``trust`` is always
    ``"not_checked"``, so ``intact`` says "unchanged since signed by this key", not "by whom".
    """

    field_name: str
    integrity: Integrity
    signer: str | None = None
    signed_at: str | None = None
    reason: str | None = None
    location: str | None = None
    intact: bool | None = None
    valid: bool | None = None
    coverage: str | None = None
    modification_level: str | None = None
    docmdp_ok: bool | None = None
    trust: str = "not_checked"
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.integrity in ("intact", "intact_with_updates")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DigitalSignature:
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__ if k in d})  # type: ignore[arg-type]


@dataclass(slots=True)
class Ink:
    """One detector box, in PDF points when the page has them, and where it landed.

    ``place_id`` names the place it signs (``None``: unplaced); ``near`` names a place it is
    close to but not on; ``ambiguous`` marks a score inside the band around the threshold.
    """

    page: int
    score: float
    xyxy: BoxXYXY
    pdf_xyxy: BoxXYXY | None
    label: str = "signature"
    place_id: str | None = None
    near: str | None = None
    ambiguous: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "page": self.page,
            "label": self.label,
            "score": round(float(self.score), 5),
            "xyxy": _round(self.xyxy),
            "pdf_xyxy": _round(self.pdf_xyxy),
            "place_id": self.place_id,
            "near": self.near,
            "ambiguous": self.ambiguous,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Ink:
        return cls(
            page=int(d["page"]),
            score=float(d["score"]),
            xyxy=_box(d["xyxy"]) or (0.0, 0.0, 0.0, 0.0),
            pdf_xyxy=_box(d.get("pdf_xyxy")),
            label=d.get("label", "signature"),
            place_id=d.get("place_id"),
            near=d.get("near"),
            ambiguous=bool(d.get("ambiguous", False)),
        )


@dataclass(slots=True)
class SignaturePlace:
    """A place on a page that asks for a signature, and what was found there.

    ``box`` is what the page shows (the field's rectangle, or the label with its rule);
    ``zone`` is where a signature for it is expected (see ``docs/verdict.md``). Both are
    ``None`` for a field with no rectangle (an invisible digital signature).
    """

    place_id: str
    kind: PlaceKind
    page: int | None
    box: BoxXYXY | None
    zone: BoxXYXY | None
    text: str = ""
    language: str | None = None
    rule: Literal["drawn", "underscores", "none"] | None = None
    field_name: str | None = None
    digital: DigitalSignature | None = None
    status: PlaceStatus = "empty"
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "place_id": self.place_id,
            "kind": self.kind,
            "page": self.page,
            "box": _round(self.box),
            "zone": _round(self.zone),
            "text": self.text,
            "language": self.language,
            "rule": self.rule,
            "field_name": self.field_name,
            "digital": self.digital.to_dict() if self.digital else None,
            "status": self.status,
            "reasons": list(self.reasons),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SignaturePlace:
        return cls(
            place_id=d["place_id"],
            kind=d["kind"],
            page=d.get("page"),
            box=_box(d.get("box")),
            zone=_box(d.get("zone")),
            text=d.get("text", ""),
            language=d.get("language"),
            rule=d.get("rule"),
            field_name=d.get("field_name"),
            digital=DigitalSignature.from_dict(d["digital"]) if d.get("digital") else None,
            status=d.get("status", "empty"),
            reasons=list(d.get("reasons", [])),
        )


@dataclass(slots=True)
class VendorMark:
    """An e-signature vendor's stamp found in a page's text (vendor, its ID, where)."""

    vendor: str
    page: int
    mark_id: str
    box: BoxXYXY | None = None
    text: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "vendor": self.vendor,
            "page": self.page,
            "mark_id": self.mark_id,
            "box": _round(self.box),
            "text": self.text,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VendorMark:
        return cls(d["vendor"], int(d["page"]), d["mark_id"], _box(d.get("box")), d.get("text", ""))


@dataclass(slots=True)
class PageEvidence:
    """What could be read from one page's structure and words.

    ``text_layer`` is ``False`` on scanned pages (and images): their places come only from ink,
    and ``reasons`` says so; nothing is guessed for them.
    """

    index: int
    text_layer: bool
    language: str | None = None
    places_from: Literal["text_and_fields", "fields_only", "ink_only"] = "text_and_fields"
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PageEvidence:
        return cls(
            index=int(d["index"]),
            text_layer=bool(d["text_layer"]),
            language=d.get("language"),
            places_from=d.get("places_from", "text_and_fields"),
            reasons=list(d.get("reasons", [])),
        )


@dataclass(slots=True)
class DocumentVerdict:
    """The answer for one document, with every piece of evidence behind it."""

    doc_id: str
    source: str
    verdict: Verdict
    reasons: list[str] = field(default_factory=list)
    pages: list[PageEvidence] = field(default_factory=list)
    places: list[SignaturePlace] = field(default_factory=list)
    ink: list[Ink] = field(default_factory=list)
    marks: list[VendorMark] = field(default_factory=list)
    digital_signatures: list[DigitalSignature] = field(default_factory=list)
    model_version: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    schema_version: int = VERDICT_SCHEMA_VERSION

    @property
    def unplaced_ink(self) -> list[Ink]:
        return [i for i in self.ink if i.place_id is None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "kind": "verdict",
            "doc_id": self.doc_id,
            "source": self.source,
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "pages": [p.to_dict() for p in self.pages],
            "places": [p.to_dict() for p in self.places],
            "ink": [i.to_dict() for i in self.ink],
            "marks": [m.to_dict() for m in self.marks],
            "digital_signatures": [s.to_dict() for s in self.digital_signatures],
            "model_version": self.model_version,
            "config": dict(self.config),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DocumentVerdict:
        if d.get("kind") != "verdict":
            raise ValueError(f"not a verdict record: kind={d.get('kind')!r}")
        version = int(d.get("schema_version", 0))
        if version != VERDICT_SCHEMA_VERSION:
            raise ValueError(f"verdict schema_version {version} is not {VERDICT_SCHEMA_VERSION}")
        return cls(
            doc_id=d["doc_id"],
            source=d.get("source", ""),
            verdict=d["verdict"],
            reasons=list(d.get("reasons", [])),
            pages=[PageEvidence.from_dict(p) for p in d.get("pages", [])],
            places=[SignaturePlace.from_dict(p) for p in d.get("places", [])],
            ink=[Ink.from_dict(i) for i in d.get("ink", [])],
            marks=[VendorMark.from_dict(m) for m in d.get("marks", [])],
            digital_signatures=[DigitalSignature.from_dict(s) for s in d.get("digital_signatures", [])],
            model_version=d.get("model_version", ""),
            config=dict(d.get("config", {})),
        )


def write_verdicts(out_dir: str | os.PathLike[str], verdicts: Iterable[DocumentVerdict]) -> str:
    """Write ``verdicts.jsonl`` in ``out_dir`` (replacing it, all or nothing; a local folder or a
    storage URL)."""
    return storage.write_log(storage.join(out_dir, VERDICTS), (v.to_dict() for v in verdicts))


def append_verdicts(out_dir: str | os.PathLike[str], verdicts: Iterable[DocumentVerdict]) -> str:
    """Add one run's verdicts to ``verdicts.jsonl`` without reading it (its cost follows the run,
    not the folder); a document judged again gets a newer line, which readers take."""
    return storage.append_log(
        storage.join(out_dir, VERDICTS), storage.jsonl_bytes(v.to_dict() for v in verdicts)
    )


def iter_verdicts(out_dir: str | os.PathLike[str]) -> Iterator[DocumentVerdict]:
    """The records of ``verdicts.jsonl`` as written (a cut last line is skipped, as in
    results.jsonl; a document judged twice appears twice: :func:`read_verdicts` keeps the last)."""
    for d in storage.read_log(storage.join(out_dir, VERDICTS)):
        yield DocumentVerdict.from_dict(d)


def read_verdicts(out_dir: str | os.PathLike[str]) -> list[DocumentVerdict]:
    """One verdict per document, the latest written (in the order documents first appear)."""
    latest: dict[str, DocumentVerdict] = {}
    for v in iter_verdicts(out_dir):
        latest[v.doc_id or v.source] = v
    return list(latest.values())


def count_verdicts(verdicts: Iterable[DocumentVerdict]) -> dict[str, int]:
    """Documents per verdict, every verdict present (zeros included), for summaries and XCom."""
    c = Counter(v.verdict for v in verdicts)
    return {k: c.get(k, 0) for k in VERDICTS_ORDER}

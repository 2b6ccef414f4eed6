"""The one data model that crosses every boundary: documents, pages, detections, results.

Every integration (Label Studio, FiftyOne, YOLO files, PDF annotation) converts to and from these
types in its own module under :mod:`inkloop.convert`, so a box means the same thing everywhere:
``xyxy`` in pixels of the page as rendered at ``Page.dpi`` (or the image's own pixels).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

#: Version of the JSON Lines record layout written by :mod:`inkloop.detection.results`.
SCHEMA_VERSION = 1

Decision = Literal["auto_accept", "review", "audit"]
BoxXYXY = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class Document:
    """A source file, identified by the SHA-256 of its bytes so renames never duplicate work."""

    doc_id: str
    url: str
    media_type: str
    page_count: int
    size_bytes: int


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a document: its pixel size at ``dpi`` and, for PDFs, its size in PDF points.

    ``dpi`` is ``None`` for raster inputs whose pixels *are* the page (PNG, JPEG, TIFF).
    ``domain`` is ``scan`` or ``digital`` (:mod:`inkloop.documents.domain`): which operating
    threshold the page was cut at, and which domain curation files it under; ``None`` in records
    written before detection recorded it.
    """

    doc_id: str
    index: int
    width: int
    height: int
    dpi: float | None = None
    pdf_size: tuple[float, float] | None = None
    domain: str | None = None

    @property
    def page_key(self) -> str:
        """The idempotency key used by results, review tasks and dataset samples."""
        return f"{self.doc_id}:{self.index}"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "doc_id": self.doc_id,
            "index": self.index,
            "width": self.width,
            "height": self.height,
            "dpi": self.dpi,
            "pdf_size": list(self.pdf_size) if self.pdf_size else None,
        }
        if self.domain is not None:
            d["domain"] = self.domain
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Page:
        pdf = d.get("pdf_size")
        return cls(
            doc_id=d["doc_id"],
            index=int(d["index"]),
            width=int(d["width"]),
            height=int(d["height"]),
            dpi=d.get("dpi"),
            pdf_size=(float(pdf[0]), float(pdf[1])) if pdf else None,
            domain=d.get("domain"),
        )


@dataclass(frozen=True, slots=True)
class Detection:
    """One detected object: class label, confidence and a box in page pixels."""

    label: str
    score: float
    xyxy: BoxXYXY

    @property
    def width(self) -> float:
        return self.xyxy[2] - self.xyxy[0]

    @property
    def height(self) -> float:
        return self.xyxy[3] - self.xyxy[1]

    def to_dict(self, page: Page | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {
            "label": self.label,
            "score": round(float(self.score), 5),
            "xyxy": [round(float(v), 2) for v in self.xyxy],
        }
        if page is not None and page.pdf_size is not None and page.dpi:
            d["pdf_xyxy"] = [round(v, 3) for v in pixels_to_points(self.xyxy, page.dpi)]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Detection:
        x0, y0, x1, y1 = (float(v) for v in d["xyxy"])
        return cls(label=str(d["label"]), score=float(d["score"]), xyxy=(x0, y0, x1, y1))


@dataclass(slots=True)
class PageResult:
    """What inkloop concluded about one page; one JSON Lines record in the results file."""

    page: Page
    detections: list[Detection]
    model_version: str
    source: str = ""
    uncertainty: float | None = None
    decision: Decision | None = None
    reasons: list[str] = field(default_factory=list)

    @property
    def page_key(self) -> str:
        return self.page.page_key

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "page",
            "page_key": self.page.page_key,
            "source": self.source,
            "page": self.page.to_dict(),
            "model_version": self.model_version,
            "detections": [d.to_dict(self.page) for d in self.detections],
            "uncertainty": self.uncertainty,
            "decision": self.decision,
            "reasons": list(self.reasons),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PageResult:
        if d.get("kind") != "page":
            raise ValueError(f"not a page record: kind={d.get('kind')!r}")
        return cls(
            page=Page.from_dict(d["page"]),
            detections=[Detection.from_dict(x) for x in d.get("detections", [])],
            model_version=d["model_version"],
            source=d.get("source", ""),
            uncertainty=d.get("uncertainty"),
            decision=d.get("decision"),
            reasons=list(d.get("reasons", [])),
        )


@dataclass(frozen=True, slots=True)
class QuarantineRecord:
    """An input that could not be processed, and why, so nothing is silently lost."""

    source: str
    reason: str
    error: str
    doc_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "quarantine",
            "source": self.source,
            "doc_id": self.doc_id,
            "error": self.error,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QuarantineRecord:
        return cls(source=d["source"], reason=d["reason"], error=d["error"], doc_id=d.get("doc_id"))


# Page pixels at a render DPI ⇄ PDF points (1/72 inch, origin top-left as pymupdf uses it).
POINTS_PER_INCH = 72.0


def pixels_to_points(xyxy: BoxXYXY, dpi: float) -> BoxXYXY:
    f = POINTS_PER_INCH / dpi
    x0, y0, x1, y1 = xyxy
    return (x0 * f, y0 * f, x1 * f, y1 * f)


def points_to_pixels(xyxy: BoxXYXY, dpi: float) -> BoxXYXY:
    f = dpi / POINTS_PER_INCH
    x0, y0, x1, y1 = xyxy
    return (x0 * f, y0 * f, x1 * f, y1 * f)

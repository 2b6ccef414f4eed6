"""From Label Studio annotations to ground truth: the rules, the record, the reviews file.

Why these rules (documented in docs/review.md):

- a submitted annotation with no regions is a *negative* (``ground_truth == []``: no signature on
  the page), the most useful thing a reviewer can say about a false box;
- a skipped task (``was_cancelled``) is recorded as ``skipped`` with no ground truth;
- when a task has several annotations, one marked ``ground_truth`` in Label Studio wins, otherwise
  the most recently updated submitted one;
- a rotated rectangle becomes the axis-aligned box that encloses it and the page is flagged
  ``rotated`` so curation can look at it (the data model's boxes are axis-aligned).

The reviews file (``reviews.jsonl``, the hand-off to curation) is a log on the storage layer: a
local file gets appended to; on an object store every pull writes whole objects
(:func:`inkloop.storage.append_log`), since there is no append there. Readers keep each page's
latest review, so a pull written twice (a retry after a failed cursor write) changes nothing.

Coordinates go through :mod:`inkloop.convert.labelstudio` only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from inkloop import storage
from inkloop.convert.labelstudio import from_labelstudio
from inkloop.geometry import clip
from inkloop.types import Detection


@dataclass
class ReviewedPage:
    """One page's outcome in Label Studio, ready to become ground truth."""

    page_key: str
    task_id: int
    status: Literal["submitted", "skipped"]
    ground_truth: list[Detection] | None
    width: int
    height: int
    image: str
    source: str = ""
    doc_id: str = ""
    page_index: int = 0
    annotation_id: int | None = None
    annotator: str | None = None
    updated_at: str = ""
    rotated: bool = False
    annotations_seen: int = 1
    model_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ground_truth"] = None if self.ground_truth is None else [g.to_dict() for g in self.ground_truth]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ReviewedPage:
        d = dict(d)
        gt = d.pop("ground_truth")
        return cls(ground_truth=None if gt is None else [Detection.from_dict(g) for g in gt], **d)


def timestamp(value: Any) -> str:
    """An annotation's ``updated_at`` as ISO text (the SDK gives datetimes, the REST API strings)."""
    return value.isoformat() if hasattr(value, "isoformat") else str(value or "")


def resolve_task(task: Any, anns: list[dict[str, Any]]) -> ReviewedPage | None:
    """Apply the ground-truth rules to one task's annotations (None: nothing to record yet)."""
    data = task.data or {}
    for a in anns:
        a["updated_at"] = timestamp(a.get("updated_at"))
    w, h = int(data.get("page_width") or 0), int(data.get("page_height") or 0)
    base = dict(
        page_key=str(data.get("page_key", "")),
        task_id=int(task.id),
        width=w,
        height=h,
        image=str(data.get("image", "")),
        source=str(data.get("source", "")),
        doc_id=str(data.get("doc_id", "")),
        page_index=int(data.get("page_index") or 0),
        model_version=str(data.get("model_version", "")),
        annotations_seen=len(anns),
    )
    submitted = [a for a in anns if not a.get("was_cancelled")]
    if not submitted:
        if not anns:
            return None
        last = max(anns, key=lambda a: a["updated_at"])
        return ReviewedPage(status="skipped", ground_truth=None, **_based_on(last), **base)  # type: ignore[arg-type]
    marked = [a for a in submitted if a.get("ground_truth")]
    chosen = max(marked or submitted, key=lambda a: a["updated_at"])
    boxes: list[Detection] = []
    rotated = False
    for region in chosen.get("result") or []:
        if region.get("type") != "rectanglelabels":
            continue
        value = region["value"]
        ow = int(region.get("original_width") or w)
        oh = int(region.get("original_height") or h)
        if float(value.get("rotation") or 0.0) % 360.0:
            rotated = True
        xyxy = clip(from_labelstudio(value, ow, oh), float(ow), float(oh))  # rotated: corners stick out
        for label in value.get("rectanglelabels") or ["signature"]:
            boxes.append(Detection(label=label, score=1.0, xyxy=xyxy))
    return ReviewedPage(status="submitted", ground_truth=boxes, rotated=rotated, **_based_on(chosen), **base)  # type: ignore[arg-type]


def _based_on(a: dict[str, Any]) -> dict[str, Any]:
    """What a reviewed page records of the annotation it is based on: its id, who, when."""
    return {"annotation_id": a.get("id"), "annotator": _who(a), "updated_at": a["updated_at"]}


def _who(a: dict[str, Any]) -> str | None:
    by = a.get("completed_by")
    if isinstance(by, dict):
        return str(by.get("email") or by.get("id"))
    return None if by is None else str(by)


def write_reviews(pages: Iterable[ReviewedPage], path: str | os.PathLike[str]) -> int:
    """Add pulled reviews to a JSON Lines file or storage URL (the hand-off to curation); returns
    how many. Local: appended; object store: whole objects (see the module docstring)."""
    records = [page.to_dict() for page in pages]
    data = storage.jsonl_bytes(records)
    try:
        if data or not storage.log_exists(path):  # an empty pull still leaves the file, as it always did
            storage.append_log(path, data)
    except storage.StorageError as exc:  # named for the reviews file, not a segment of it
        raise storage.StorageError(os.fspath(path), exc.reason, "add reviews to", exc.kind) from exc
    return len(records)


def read_reviews(path: str | os.PathLike[str]) -> list[ReviewedPage]:
    """Latest review per page_key from a reviews file or URL (none if it is not there)."""
    latest: dict[str, ReviewedPage] = {}
    for d in storage.read_log(path):
        r = ReviewedPage.from_dict(d)
        latest[r.page_key] = r
    return list(latest.values())

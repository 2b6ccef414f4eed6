"""The review cursor: where the last pull stopped, so the next one returns only what changed.

Why this shape: Label Studio can list annotations, not "annotations since my last visit". The
cursor keeps the newest ``updated_at`` a pull saw plus the ids of the annotations at exactly that
instant (several can share a timestamp; one arriving later with the same timestamp is still new).
An annotation edited after the pull gets a newer ``updated_at`` and is pulled again.

The cursor is a small JSON file (``{"cursor": …, "seen_at_cursor": […]}``, the format is kept)
written whole through :mod:`inkloop.storage`: on a local disk a temporary file and ``os.replace``,
on an object store one PUT; never an append or a rename there. A pull writes its reviews first and
the cursor after them: a cursor that could not be written only means the next pull returns the
same pages again (readers keep each page's latest review), never that a review is lost.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from inkloop import storage


def cursor_location(reviews: str | os.PathLike[str]) -> str:
    """The default cursor beside a reviews file: ``reviews.jsonl`` → ``reviews.cursor.json``
    (``Path.with_suffix`` spelled for URLs too: a URL never goes through pathlib)."""
    head, sep, name = os.fspath(reviews).rpartition("/")
    dot = name.rfind(".")
    stem = name[:dot] if dot > 0 else name
    return f"{head}{sep}{stem}.cursor.json"


@dataclass
class ReviewCursor:
    """The newest annotation time a pull saw (``updated_at``) and the annotation ids at it."""

    updated_at: str = ""
    seen_at_cursor: set[int] = field(default_factory=set)

    def is_new(self, annotation: dict[str, Any]) -> bool:
        """Created or changed since the pull that left this cursor."""
        ts = annotation.get("updated_at") or ""
        if ts == self.updated_at:
            return annotation.get("id") not in self.seen_at_cursor
        return ts > self.updated_at

    def advanced(self, annotations: Iterable[dict[str, Any]]) -> ReviewCursor:
        """The cursor after also seeing ``annotations`` (this one is left as it is)."""
        newest, ids = self.updated_at, set(self.seen_at_cursor)
        for a in annotations:
            ts = a.get("updated_at") or ""
            if ts > newest:
                newest, ids = ts, {a.get("id")}
            elif ts == newest:
                ids.add(a.get("id"))
        return ReviewCursor(newest, {i for i in ids if i is not None})

    def to_dict(self) -> dict[str, Any]:
        return {"cursor": self.updated_at, "seen_at_cursor": sorted(self.seen_at_cursor)}

    @classmethod
    def load(cls, location: str | os.PathLike[str] | None) -> ReviewCursor:
        """The cursor stored at ``location`` (a path or storage URL); the start when there is none.
        A file that is not a cursor is an error naming it (rather than pulling everything again)."""
        if location is None:
            return cls()
        text = storage.read_text_if_exists(location)
        if text is None:
            return cls()
        try:
            state = json.loads(text)
            return cls(str(state.get("cursor") or ""), {int(i) for i in state.get("seen_at_cursor") or []})
        except (ValueError, TypeError, AttributeError) as exc:
            raise ValueError(
                f"review cursor {os.fspath(location)} is not a cursor file ({exc}); "
                "fix or delete it (deleting it pulls every review again)"
            ) from None

    def save(self, location: str | os.PathLike[str]) -> str:
        """Write the cursor whole (atomic rename locally, one PUT on object stores)."""
        return storage.write_text(location, json.dumps(self.to_dict(), indent=2))

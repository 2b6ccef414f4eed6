"""Why a document cannot be processed: :class:`DocumentError` (its ``kind`` is the quarantine
reason, its ``reason`` a sentence for people) and the :class:`Limits` beyond which a document is
quarantined."""

from __future__ import annotations

import re
from dataclasses import dataclass

DAMAGE_WORDS = re.compile(r"cannot|failed|not a stream|truncated|premature|syntax error|unexpected", re.I)


class DocumentError(Exception):
    """A document that cannot be processed; ``reason`` is short and meant for people."""

    def __init__(self, source: str, reason: str, kind: str = "unreadable") -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason
        self.kind = kind


@dataclass(frozen=True)
class Limits:
    """Guards against documents that would exhaust a worker."""

    max_pages: int = 2000
    max_pixels: int = 200_000_000  # per page, at its native or reading resolution
    max_bytes: int = 2_000_000_000


def _clean(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    return msg[:200]

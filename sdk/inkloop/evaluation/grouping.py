"""Which images form which group, for metrics per group: by a pattern over file names (the
collections a split pools), or by domain (``scan``, ``digital``). Scoring each group is
:func:`inkloop.evaluation.report.metrics_by_group` / :func:`~inkloop.evaluation.report.metrics_by_domain`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, TypeVar

from inkloop.evaluation.domains import UNKNOWN_DOMAIN

NO_GROUP = "(no match)"


class _Image(Protocol):
    @property
    def path(self) -> str: ...

    @property
    def domain(self) -> str | None: ...


ImageT = TypeVar("ImageT", bound=_Image)


def group_of(path: str, pattern: re.Pattern[str]) -> str:
    """The group an image belongs to: ``pattern``'s first capture group (or whole match) in the
    file name; :data:`NO_GROUP` when it does not match."""
    m = pattern.search(Path(path).name)
    if m is None:
        return NO_GROUP
    return str(m.group(1) if m.groups() else m.group(0))


def split_by_pattern(images: Sequence[ImageT], pattern: re.Pattern[str]) -> dict[str, list[ImageT]]:
    """Images by :func:`group_of` their file name, in their order."""
    members: dict[str, list[ImageT]] = {}
    for im in images:
        members.setdefault(group_of(im.path, pattern), []).append(im)
    return members


def split_by_domain(images: Sequence[ImageT]) -> dict[str, list[ImageT]]:
    """Images by domain; those without a recorded domain form :data:`UNKNOWN_DOMAIN`, so the
    domains always add up to the whole split."""
    members: dict[str, list[ImageT]] = {}
    for im in images:
        members.setdefault(im.domain or UNKNOWN_DOMAIN, []).append(im)
    return members

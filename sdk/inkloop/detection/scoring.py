"""The seam between detection and the stages that score its pages while they are at hand.

Some scores need the page itself, not only its boxes: routing's uncertainty compares the boxes
with those of a second, altered view of the page (test-time augmentation, one more inference in
the same batch), reads the PDF's text layer, and looks at boxes just below the threshold. Those
can only be computed during the run, when the image and the document are open. Detection does
not know about routing (routing is a later stage, :mod:`inkloop.routing`): it asks a
:class:`PageScorer` for what it needs and writes the score into each page result
(``uncertainty``, ``reasons``). Decisions over the whole run (the review budget) are made after
the run, on the results folder, by the caller (:func:`inkloop.api.detect`).

The decoder's rule for keeping a box (:func:`is_kept`) lives here too: a scorer that decodes down
to a lower floor must cut the results exactly where a run without it would.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from inkloop.types import Detection

if TYPE_CHECKING:
    from inkloop.detection.detector import Detector, Prepared
    from inkloop.documents.opening import OpenedDocument
    from inkloop.models.references import Thresholds

log = logging.getLogger(__name__)


class PageScorer(Protocol):
    """What a detection run asks of a per-page scorer (:class:`inkloop.routing.RoutingScorer`)."""

    @property
    def reads_text(self) -> bool:
        """Whether :meth:`score` wants the page's PDF text layer (read under the run's PDF lock)."""
        ...

    def floor(self, threshold: float) -> float:
        """The score to decode down to, at most ``threshold``: boxes between the two are seen by
        :meth:`score` but never written as results (:func:`kept`)."""
        ...

    def second_view(self, detector: Detector, image: np.ndarray) -> Prepared | None:
        """Another model input of the page's model image, inferred beside the plain one (or None)."""
        ...

    def score(
        self,
        detections: Sequence[Detection],
        threshold: float,
        second: Sequence[Detection] | None,
        text: str,
    ) -> tuple[float, list[str]]:
        """The page's score and its reasons, from its boxes decoded down to :meth:`floor`, the boxes
        of the second view (None when there was none), both in page pixels, and its text layer."""
        ...


def is_kept(score: float, threshold: float) -> bool:
    """Whether the detector keeps a box: ``score > threshold`` compared in float32, as the decoder does.

    Compared in float64 instead, a score equal to ``float32(threshold)`` would be kept here and
    dropped by a run without routing.
    """
    return bool(np.float32(score) > np.float32(threshold))


def kept(detections: Sequence[Detection], threshold: float) -> list[Detection]:
    """The boxes a run at ``threshold`` reports, out of boxes decoded at a lower floor."""
    return [d for d in detections if is_kept(d.score, threshold)]


@contextlib.contextmanager
def decoding_floor(detector: Detector, scorer: PageScorer | None) -> Iterator[Thresholds]:
    """Temporarily decode down to the lowest score anyone needs; yields the operating thresholds.

    That floor is the lowest domain's operating threshold (:attr:`Detector.thresholds`), and
    the scorer's floor below it. Greedy NMS visits boxes by descending score, so boxes below a
    threshold never suppress boxes above it: filtering ``score > threshold`` afterwards
    (:func:`kept`, each page at its domain's threshold) gives exactly the boxes a run at that
    threshold gives. The detector's ``conf`` is restored on exit, so a detector shared between
    runs is left as it was.
    """
    thresholds = detector.thresholds
    floor = thresholds.floor
    if scorer is not None:
        floor = min(floor, scorer.floor(floor))
    saved = detector.conf
    if floor >= saved:
        yield thresholds
        return
    detector.conf = floor
    try:
        yield thresholds
    finally:
        detector.conf = saved


def page_text(doc: OpenedDocument, index: int) -> str:
    """The page's text layer, or '' if it cannot be read: a score's hint, never a reason to fail."""
    try:
        return doc.page_text(index)
    except Exception as exc:
        log.debug("%s: page %d: no text layer (%s)", doc.source, index + 1, exc)
        return ""

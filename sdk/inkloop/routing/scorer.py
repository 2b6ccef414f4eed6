"""Routing's side of :class:`inkloop.detection.scoring.PageScorer`: what a detection run computes
per page for routing while the page is at hand (the band's floor, the TTA view, the text cues)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from inkloop.routing.config import RoutingConfig
from inkloop.routing.signals import page_uncertainty
from inkloop.routing.views import prepare_tta
from inkloop.types import Detection

if TYPE_CHECKING:
    from inkloop.detection.detector import Detector, Prepared


@dataclass(frozen=True)
class RoutingScorer:
    """Scores each page's uncertainty during a detection run (into ``results.jsonl``), by ``config``.

    Pass it to :class:`inkloop.detection.pipeline.DetectionRun` (``scorer=``);
    :func:`inkloop.api.detect` does so for ``routing=``, then makes the run's decisions.
    """

    config: RoutingConfig

    @property
    def reads_text(self) -> bool:
        return self.config.cues

    def floor(self, threshold: float) -> float:
        """The bottom of the ambiguous band: near misses below the threshold count as signals."""
        return min(threshold, self.config.band(threshold)[0])

    def second_view(self, detector: Detector, image: np.ndarray) -> Prepared | None:
        return prepare_tta(detector, image, self.config) if self.config.tta else None

    def score(
        self,
        detections: Sequence[Detection],
        threshold: float,
        second: Sequence[Detection] | None,
        text: str,
    ) -> tuple[float, list[str]]:
        return page_uncertainty(detections, threshold, self.config, tta_detections=second, text=text)

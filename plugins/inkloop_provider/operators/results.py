"""Fold the per-batch result folders of a mapped detection into one results folder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context


class InkloopMergeResultsOperator(BaseOperator):
    """Thin shell over :func:`inkloop.detection.results.merge_parts`; returns the merged summary."""

    template_fields: Sequence[str] = ("out_dir", "parts")

    def __init__(self, *, out_dir: str, parts: list[str] | str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.out_dir = out_dir
        self.parts = parts

    def execute(self, context: Context) -> dict[str, Any]:
        from inkloop.detection.results import merge_parts

        parts = [self.parts] if isinstance(self.parts, str) else list(self.parts)
        summary = merge_parts(self.out_dir, parts).to_dict()
        for asset in self.outlets or []:  # consumers read which folder each event is about
            context["outlet_events"][asset].extra = {"results_dir": str(self.out_dir)}
        return summary

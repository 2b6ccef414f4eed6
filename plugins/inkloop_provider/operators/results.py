"""Fold the per-batch result folders of a mapped detection into one results folder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from inkloop_provider.operators.base import InkloopStorageOperator


class InkloopMergeResultsOperator(InkloopStorageOperator):
    """Thin shell over :func:`inkloop.verdict.integrate.merge_results` (results, quarantine and
    verdicts of the parts); returns the merged summary, with ``verdicts`` (counts) and
    ``verdicts_path`` when the parts derived verdicts. ``storage_conn_id``: as for
    :class:`~inkloop_provider.operators.detect.InkloopDetectOperator`."""

    template_fields: Sequence[str] = ("out_dir", "parts", "storage_conn_id")

    def __init__(self, *, out_dir: str, parts: list[str] | str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.out_dir = out_dir
        self.parts = parts

    def execute(self, context: Context) -> dict[str, Any]:
        from inkloop.verdict.integrate import merge_results

        parts = [self.parts] if isinstance(self.parts, str) else list(self.parts)
        with self.storage():
            out = merge_results(self.out_dir, parts).to_dict()
        if out.get("verdicts") is not None:
            out["verdicts_path"] = f"{self.out_dir}/verdicts.jsonl"
        for asset in self.outlets or []:  # consumers read which folder each event is about
            context["outlet_events"][asset].extra = {"results_dir": str(self.out_dir)}
        return out

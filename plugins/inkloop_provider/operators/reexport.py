"""Re-export a registered model to extra formats (OpenVINO on CPU workers, TensorRT on GPU workers)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from inkloop_provider.operators.base import InkloopStorageOperator


class InkloopReexportOperator(InkloopStorageOperator):
    """Build variants of an existing registry version into ``out_dir`` (not re-registered).

    Run the ``tensorrt`` format with ``queue="gpu"``: TensorRT engines are built per GPU kind, on
    the worker that will serve them. Where a format's toolchain is missing the variant is skipped
    with its reason, and the task still succeeds.
    """

    template_fields: Sequence[str] = ("model", "out_dir", "data", "storage_conn_id")

    def __init__(self, *, model: str, out_dir: str, data: str, formats: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model, self.out_dir, self.data, self.formats = model, out_dir, data, list(formats)

    def execute(self, context: Context) -> dict[str, Any]:
        from pathlib import Path

        from inkloop.lifecycle.promotion import export_candidate, find_weights
        from inkloop.models.registry import is_registry_ref

        with self.storage():
            if is_registry_ref(self.model):
                from inkloop.lifecycle.retrain import resolve_start

                weights = Path(resolve_start(self.model)[0])
            else:
                weights, _ = find_weights(self.model)
            res = export_candidate(
                weights, self.out_dir, data=self.data, register=False, formats=tuple(self.formats)
            )
        return {"out_dir": str(res.out_dir), "variants": res.card.extra.get("variants", {})}

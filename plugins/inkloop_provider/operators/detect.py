"""Detection operators: thin shells over :func:`inkloop.detect` (:func:`inkloop.api.detect`)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from inkloop_provider.operators.base import InkloopStorageOperator


class InkloopDetectOperator(InkloopStorageOperator):
    """Detect signatures in documents (paths or storage URLs) and write results to ``out_dir``.

    Returns the run summary (small and JSON-able) for XCom. Map it over batches with
    ``.partial(...).expand(inputs=...)`` so detection spreads across workers. With ``verdict``
    (default) each document's signing verdict is derived into ``verdicts.jsonl``; the counts per
    verdict are in the summary (``verdicts``) and pushed as the XCom ``verdict_counts``, the
    file's path as ``verdicts_path``. With ``triton_conn_id``, inference runs on that Triton server
    (``model`` then names the model on it, default the connection's); rendering and decoding stay
    on the worker. With ``storage_conn_id``, storage URLs (``s3://…`` inputs and ``out_dir``) use
    that connection's endpoint and keys (:mod:`inkloop_provider.hooks.storage`). ``conf``,
    ``route`` and ``verdict`` are typed (a float or None, bools): templated, they need the DAG's
    native rendering (:mod:`inkloop_provider.operators.base`). Each document and quarantined file
    is logged as it is done, so a batch's progress shows in its task log.
    """

    template_fields: Sequence[str] = (
        "inputs",
        "out_dir",
        "model",
        "conf",
        "route",
        "verdict",
        "storage_conn_id",
    )
    ui_color = "#f4d7dd"

    def __init__(
        self,
        *,
        inputs: list[str] | str,
        out_dir: str,
        model: str | None = None,
        conf: float | None = None,
        batch_size: int = 4,
        force: bool = False,
        route: bool = False,
        verdict: bool = True,
        triton_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.inputs = inputs
        self.out_dir = out_dir
        self.model = model
        self.conf = conf
        self.batch_size = batch_size
        self.force = force
        self.route = route
        self.verdict = verdict
        self.triton_conn_id = triton_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from inkloop.api import DetectOptions, detect
        from inkloop.routing import RoutingConfig

        inputs = [self.inputs] if isinstance(self.inputs, str) else list(self.inputs)
        conf, route, verdict = (
            self.typed(f, t) for f, t in (("conf", float), ("route", bool), ("verdict", bool))
        )
        model, token, served = self.model or None, None, contextlib.nullcontext()
        if self.triton_conn_id:
            from inkloop_provider.hooks.triton import TritonHook

            hook = TritonHook(self.triton_conn_id)
            model, token = hook.get_model_ref(self.model or None)
            served = hook.token_in_environment(token)
        with served, self.storage() as storage_options:
            summary = detect(
                inputs,
                self.out_dir,
                DetectOptions(
                    model=model,
                    conf=conf,
                    batch_size=self.batch_size,
                    force=self.force,
                    storage_options=storage_options,
                ),
                routing=RoutingConfig() if route else None,
                verdict=bool(verdict),
                progress=self._progress,
            )
        self.log.info(
            "%d documents, %d pages, %d with detections, %d quarantined, %.1f pages/s (%s); verdicts %s",
            summary.documents,
            summary.pages,
            summary.pages_with_detections,
            summary.quarantined,
            summary.pages_per_second,
            summary.model_version,
            summary.verdicts,
        )
        out = summary.to_dict()
        if summary.verdicts is not None:
            out["verdicts_path"] = f"{self.out_dir}/verdicts.jsonl"
            context["ti"].xcom_push(key="verdict_counts", value=summary.verdicts)
            context["ti"].xcom_push(key="verdicts_path", value=out["verdicts_path"])
        return out

    def _progress(self, event: str, info: dict[str, Any]) -> None:
        """One log line per document done or quarantined (how far a batch got, for people and
        for the deployment test that kills a worker mid-batch)."""
        if event == "document":
            self.log.info(
                "detected %s: %d pages, %d signatures", info["source"], info["pages"], info["detections"]
            )
        elif event == "quarantine":
            self.log.info("quarantined %s: %s", info["source"], info["reason"])

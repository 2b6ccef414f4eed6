"""Lifecycle operators: retrain, export + register a candidate, gate + promote.

Thin shells over :func:`inkloop.lifecycle.retrain.retrain`,
:func:`inkloop.lifecycle.promotion.export_candidate` and :func:`inkloop.lifecycle.gate.promote`.
Training runs in a child process with a time limit, so a worker in a
dedicated ``training`` queue (and TensorRT export in a ``gpu`` queue) keeps the scheduler free.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from inkloop_provider.operators.base import InkloopStorageOperator

MLFLOW_CONN_ID = "mlflow"


def use_mlflow_connection(conn_id: str = MLFLOW_CONN_ID) -> str | None:
    """Point MLflow tracking at the Airflow connection ``mlflow`` (host, port, schema = http/https),
    unless ``MLFLOW_TRACKING_URI`` is already set; without either, tracking stays off."""
    import os

    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    try:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
    except Exception:  # no such connection: tracking off
        return None
    host = (conn.host or "").rstrip("/")
    if not host:
        return None
    if "://" not in host:
        host = f"{conn.schema or 'http'}://{host}"
    uri = f"{host}:{conn.port}" if conn.port else host
    os.environ["MLFLOW_TRACKING_URI"] = uri
    return uri


class InkloopTrainOperator(InkloopStorageOperator):
    """Fine-tune from the production model on curated data; returns the run's outcome.

    With ``multiple_outputs`` (the default) each key of the outcome is also an XCom of its own, so
    a DAG passes ``train.output["best"]`` and ``train.output["data"]`` to the export and the gate.
    ``epochs``, ``imgsz`` (ints) and ``time_limit`` (seconds) are typed: templated, they need the
    DAG's native rendering.
    """

    template_fields: Sequence[str] = (
        "data",
        "run_dir",
        "start_from",
        "registry",
        "epochs",
        "imgsz",
        "time_limit",
        "storage_conn_id",
    )

    def __init__(
        self,
        *,
        data: str,
        run_dir: str,
        start_from: str = "registry://signature-detector@production",
        registry: str | None = None,
        epochs: int | None = None,
        imgsz: int | None = None,
        time_limit: float | None = None,
        resume: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("multiple_outputs", True)
        super().__init__(**kwargs)
        self.data, self.run_dir, self.start_from = data, run_dir, start_from
        #: Where ``registry://`` in ``start_from`` resolves (a folder/fsspec URL or ``mlflow``); None:
        #: ``$INKLOOP_REGISTRY``. The export and promote tasks take the same value.
        self.registry = registry
        self.epochs, self.imgsz, self.time_limit, self.resume = epochs, imgsz, time_limit, resume

    def execute(self, context: Context) -> dict[str, Any]:
        use_mlflow_connection()
        from inkloop.lifecycle.promotion import latest_export
        from inkloop.lifecycle.retrain import retrain

        overrides = {k: v for k in ("epochs", "imgsz") if (v := self.typed(k, int)) is not None}
        time_limit = self.typed("time_limit", float)
        with self.storage():
            data = latest_export(self.data)  # a version itself, or the newest under an export folder
            result = retrain(
                data,
                self.run_dir,
                start_from=self.start_from,
                registry=self.registry or None,
                overrides=overrides or None,
                time_limit=None if time_limit is None else float(time_limit),
                resume=self.resume,  # a run there (local or stored) continues; none: a new one
                on_progress=lambda p: self.log.info("training: %s", p),
            )
        if not result.ok:
            hint = " (resumable: re-run the task)" if result.resumable else ""
            raise RuntimeError(f"training ended {result.status}: {result.message}{hint}")
        stored = result.to_dict()  # a run kept at a URL: where it is stored, not the local scratch
        return {
            "status": result.status,
            "run_dir": stored["run_dir"],
            "best": stored["best"],
            "epochs": result.epochs_done,
            "data": data,
            "data_version": result.data_version,
        }


class InkloopExportOperator(InkloopStorageOperator):
    """Export a trained run to ONNX (+ INT8/OpenVINO/TensorRT where possible), register a candidate.

    ``parent_weight`` (0 < w < 1; None or 0: off) first averages the run's checkpoint with the
    parent it was fine-tuned from (typed: templated, it needs the DAG's native rendering).
    """

    template_fields: Sequence[str] = (
        "source",
        "out_dir",
        "data",
        "registry",
        "parent_weight",
        "storage_conn_id",
    )

    def __init__(
        self,
        *,
        source: str,
        out_dir: str,
        data: str,
        registry: str | None = None,
        parent_weight: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source, self.out_dir, self.data, self.registry = source, out_dir, data, registry
        self.parent_weight = parent_weight

    def execute(self, context: Context) -> dict[str, Any]:
        use_mlflow_connection()
        from inkloop.lifecycle.promotion import export_candidate

        with self.storage():
            res = export_candidate(
                self.source,
                self.out_dir,
                data=self.data,
                registry=self.registry or None,
                parent_weight=self.typed("parent_weight", float) or 0.0,
            )
        return {
            "version": res.version,
            "model_ref": res.model_ref,
            "alias": res.alias,
            "variants": res.registered_variants,
            "metrics": res.card.metrics,
        }


class InkloopPromoteOperator(InkloopStorageOperator):
    """Gate the candidate against production on the frozen test split; move the alias only if it wins.

    A refused candidate skips the task (so the production-model Asset is not updated) after
    recording the decision and its reasons in XCom and beside the candidate in the registry.
    ``margin`` (a float) and ``policy`` (a dict of other :class:`~inkloop.lifecycle.gate.GatePolicy`
    fields) are typed: templated, they need the DAG's native rendering.
    """

    template_fields: Sequence[str] = ("name", "data", "registry", "margin", "policy", "storage_conn_id")

    def __init__(
        self,
        *,
        name: str,
        data: str,
        registry: str | None = None,
        margin: float | None = None,
        policy: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.name, self.data, self.registry, self.margin, self.policy = name, data, registry, margin, policy

    def execute(self, context: Context) -> dict[str, Any]:
        use_mlflow_connection()
        from airflow.sdk.exceptions import AirflowSkipException

        from inkloop.lifecycle.gate import GatePolicy, promote

        fields = dict(self.typed("policy", dict) or {})
        margin = self.typed("margin", float)
        if margin is not None:
            fields.setdefault("min_map50_gain", float(margin))
        policy = GatePolicy(**fields) if fields else None
        with self.storage():
            decision = promote(str(self.name), self.data, registry=self.registry or None, policy=policy)
        summary = decision.to_dict()
        context["ti"].xcom_push(key="gate", value=summary)
        if not decision.promoted:
            self.log.warning("candidate refused: %s", "; ".join(decision.reasons))
            raise AirflowSkipException(f"gate refused the candidate: {'; '.join(decision.reasons)}")
        self.log.info("promoted %s to %s (was %s)", decision.candidate, decision.alias, decision.previous)
        return summary

"""Lifecycle operators: retrain, export + register a candidate, gate + promote.

Thin shells over :func:`inkloop.lifecycle.retrain.retrain`,
:func:`inkloop.lifecycle.promotion.export_candidate` and :func:`inkloop.lifecycle.gate.promote`.
Training runs in a child process with a time limit, so a worker in a
dedicated ``training`` queue (and TensorRT export in a ``gpu`` queue) keeps the scheduler free.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

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


class InkloopTrainOperator(BaseOperator):
    """Fine-tune from the production model on curated data; returns the run's outcome."""

    template_fields: Sequence[str] = (
        "data",
        "run_dir",
        "start_from",
        "registry",
        "epochs",
        "imgsz",
        "time_limit",
    )

    def __init__(
        self,
        *,
        data: str,
        run_dir: str,
        start_from: str = "registry://signature-detector@production",
        registry: str | None = None,
        epochs: int | str | None = None,
        imgsz: int | str | None = None,
        time_limit: float | str | None = None,
        resume: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.data, self.run_dir, self.start_from = data, run_dir, start_from
        #: Where ``registry://`` in ``start_from`` resolves (a folder/fsspec URL or ``mlflow``); None:
        #: ``$INKLOOP_REGISTRY``. The export and promote tasks take the same value.
        self.registry = registry
        self.epochs, self.imgsz, self.time_limit, self.resume = epochs, imgsz, time_limit, resume

    def execute(self, context: Context) -> dict[str, Any]:
        use_mlflow_connection()
        from pathlib import Path

        from inkloop.lifecycle.promotion import latest_export
        from inkloop.lifecycle.retrain import retrain

        data = self.data if Path(self.data, "data.yaml").exists() else latest_export(self.data)
        overrides = {
            k: int(v)
            for k, v in (("epochs", self.epochs), ("imgsz", self.imgsz))
            if v not in (None, "", "None")
        }
        result = retrain(
            data,
            self.run_dir,
            start_from=self.start_from,
            registry=self.registry or None,
            overrides=overrides or None,
            time_limit=float(self.time_limit) if self.time_limit not in (None, "", "None") else None,
            resume=self.resume and Path(self.run_dir, "weights", "last.pt").exists(),
            on_progress=lambda p: self.log.info("training: %s", p),
        )
        if not result.ok:
            hint = " (resumable: re-run the task)" if result.resumable else ""
            raise RuntimeError(f"training ended {result.status}: {result.message}{hint}")
        return {
            "status": result.status,
            "run_dir": str(result.run_dir),
            "best": str(result.best),
            "epochs": result.epochs_done,
            "data": data,
            "data_version": result.data_version,
        }


class InkloopExportOperator(BaseOperator):
    """Export a trained run to ONNX (+ INT8/OpenVINO/TensorRT where possible), register a candidate."""

    template_fields: Sequence[str] = ("source", "out_dir", "data", "registry")

    def __init__(
        self, *, source: str, out_dir: str, data: str, registry: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.source, self.out_dir, self.data, self.registry = source, out_dir, data, registry

    def execute(self, context: Context) -> dict[str, Any]:
        use_mlflow_connection()
        from inkloop.lifecycle.promotion import export_candidate

        res = export_candidate(self.source, self.out_dir, data=self.data, registry=self.registry or None)
        return {
            "version": res.version,
            "model_ref": res.model_ref,
            "alias": res.alias,
            "variants": res.registered_variants,
            "metrics": res.card.metrics,
        }


class InkloopPromoteOperator(BaseOperator):
    """Gate the candidate against production on the frozen test split; move the alias only if it wins.

    A refused candidate skips the task (so the production-model Asset is not updated) after
    recording the decision and its reasons in XCom and beside the candidate in the registry.
    """

    template_fields: Sequence[str] = ("name", "data", "registry", "margin", "policy")

    def __init__(
        self,
        *,
        name: str,
        data: str,
        registry: str | None = None,
        margin: float | str | None = None,
        policy: dict[str, Any] | str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.name, self.data, self.registry, self.margin, self.policy = name, data, registry, margin, policy

    def execute(self, context: Context) -> dict[str, Any]:
        use_mlflow_connection()
        import ast

        from airflow.sdk.exceptions import AirflowSkipException

        from inkloop.lifecycle.gate import GatePolicy, promote

        raw = self.policy
        fields = dict(ast.literal_eval(raw) if isinstance(raw, str) and raw.strip() else raw or {})
        if self.margin not in (None, "", "None"):
            fields.setdefault("min_map50_gain", float(self.margin))
        policy = GatePolicy(**fields) if fields else None
        decision = promote(self.name, self.data, registry=self.registry or None, policy=policy)
        summary = decision.to_dict()
        context["ti"].xcom_push(key="gate", value=summary)
        if not decision.promoted:
            self.log.warning("candidate refused: %s", "; ".join(decision.reasons))
            raise AirflowSkipException(f"gate refused the candidate: {'; '.join(decision.reasons)}")
        self.log.info("promoted %s to %s (was %s)", decision.candidate, decision.alias, decision.previous)
        return summary

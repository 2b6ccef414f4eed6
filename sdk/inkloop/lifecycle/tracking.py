"""Experiment tracking in MLflow: one run per training, evaluation, gate decision or sweep trial.

Optional in every sense: without ``mlflow`` installed, or without a tracking URI
(``$MLFLOW_TRACKING_URI``, or an Airflow connection ``mlflow`` given as ``$AIRFLOW_CONN_MLFLOW``),
:func:`start_run` returns a tracker that does nothing, and nothing else changes.

What a training run holds (see docs/experiments.md): the recipe and seed as params, the data
version, the data manifest and ``recipe.json``, the starting weights' name and SHA-256; per-epoch
metrics come from ultralytics' own MLflow callback in the training process, which joins the same
run (``MLFLOW_RUN_ID`` in its environment; see :meth:`Tracker.child_env`); export adds the
evaluator's report, PR curve, errors file and the model card; the gate adds its decision.

A tracking server that cannot be reached never stops training: the tracker says so once (a
warning) and logs to a local store in the run folder (``<run_dir>/mlflow-offline``), which
:func:`sync_offline` (``inkloop sync-mlflow-runs RUN_DIR``) copies to the server later. Any error
while logging disables the tracker for the rest of the run, again with one warning.
"""

from __future__ import annotations

import json
import logging
import math
import os
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inkloop.net import answers

if TYPE_CHECKING:
    from inkloop.evaluation.evaluator import EvalReport
    from inkloop.models.references import ModelCard

logger = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "inkloop"
RUN_FILE = "mlflow-run.json"
OFFLINE_DIR = "mlflow-offline"


def tracking_uri() -> str | None:
    """``$MLFLOW_TRACKING_URI``, else the Airflow connection ``mlflow`` (``$AIRFLOW_CONN_MLFLOW``, URI or
    JSON form), else None (tracking off)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if uri:
        return uri
    conn = os.environ.get("AIRFLOW_CONN_MLFLOW", "").strip()
    if not conn:
        return None
    if conn.startswith("{"):
        d = json.loads(conn)
        host, port = d.get("host", ""), d.get("port")
        if "://" in host:
            return f"{host}:{port}" if port else host
        return f"{d.get('schema') or 'http'}://{host}" + (f":{port}" if port else "")
    parts = urllib.parse.urlsplit(conn)
    scheme = "https" if parts.scheme in ("https", "mlflow+https") else "http"
    return f"{scheme}://{parts.netloc.rsplit('@', 1)[-1]}{parts.path}"


def mlflow_available() -> bool:
    """Whether mlflow can be imported (with its telemetry switched off before the import)."""
    from inkloop.models.mlflow_registry import offline_mlflow_env

    offline_mlflow_env()
    try:
        import mlflow  # noqa: F401
    except ImportError:
        return False
    return True


def server_reachable(uri: str, timeout: float = 3.0) -> bool:
    """True for non-HTTP stores; for a server, whether ``/health`` answers within ``timeout``."""
    if not uri.startswith(("http://", "https://")):
        return True
    return answers(f"{uri.rstrip('/')}/health", timeout=timeout)


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{key}."))
        else:
            out[key] = v
    return out


class Tracker:
    """One MLflow run (or nothing, when tracking is off); every method is safe to call either way."""

    def __init__(
        self, client: Any = None, run_id: str | None = None, uri: str | None = None, experiment: str = ""
    ) -> None:
        self.client, self.run_id, self.uri, self.experiment = client, run_id, uri, experiment
        self.offline_dir: Path | None = None
        self._warned = False

    @property
    def active(self) -> bool:
        return self.client is not None and self.run_id is not None

    def _fail(self, what: str, exc: BaseException) -> None:
        if not self._warned:
            logger.warning("MLflow: %s failed (%s); not tracking the rest of this run", what, exc)
            self._warned = True
        self.client = None

    def _do(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> None:
        if not self.active:
            return
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # tracking must never break the work it records
            self._fail(what, exc)

    def log_params(self, params: Mapping[str, Any]) -> None:
        if not self.active:
            return
        from mlflow.entities import Param

        flat = [Param(k, str(v)[:6000]) for k, v in _flat(params).items()]
        for i in range(0, len(flat), 100):
            self._do("log params", self.client.log_batch, self.run_id, params=flat[i : i + 100])

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        if not self.active:
            return
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        ms = [
            Metric(k.replace("(", "").replace(")", ""), float(v), now, step or 0)
            for k, v in _flat(metrics).items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))
        ]
        if ms:
            self._do("log metrics", self.client.log_batch, self.run_id, metrics=ms)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if not self.active:
            return
        for k, v in tags.items():
            self._do("set tag", self.client.set_tag, self.run_id, k, str(v))

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        if not self.active:
            return
        if Path(path).exists():
            fn = self.client.log_artifacts if Path(path).is_dir() else self.client.log_artifact
            self._do(f"log {path}", fn, self.run_id, str(path), artifact_path)

    def log_dict(self, data: Any, artifact_file: str) -> None:
        if not self.active:
            return
        self._do(
            f"log {artifact_file}",
            self.client.log_text,
            self.run_id,
            json.dumps(data, indent=2, default=str),
            artifact_file,
        )

    def end(self, status: str = "FINISHED") -> None:
        if not self.active:
            return
        self._do("end run", self.client.set_terminated, self.run_id, status)

    def child_env(self) -> dict[str, str]:
        """Environment for a training process so ultralytics' MLflow callback logs into this run."""
        if not self.active or self.uri is None:
            return {}
        from inkloop.models.mlflow_registry import OFFLINE_ENV

        return {
            **OFFLINE_ENV,
            "MLFLOW_TRACKING_URI": self.uri,
            "MLFLOW_RUN_ID": str(self.run_id),
            "MLFLOW_EXPERIMENT_NAME": self.experiment,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "tracking_uri": self.uri,
            "run_id": self.run_id,
            "experiment": self.experiment,
            "offline": str(self.offline_dir) if self.offline_dir else None,
        }


def _client_for(uri: str, experiment: str, artifact_root: Path | None = None) -> tuple[Any, str]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        return client, exp.experiment_id
    loc = artifact_root.resolve().as_uri() if artifact_root is not None else None
    return client, client.create_experiment(experiment, artifact_location=loc)


def start_run(
    kind: str,
    *,
    run_dir: str | os.PathLike[str] | None = None,
    run_name: str | None = None,
    experiment: str | None = None,
    tags: Mapping[str, Any] | None = None,
    uri: str | None = None,
) -> Tracker:
    """A new MLflow run (``kind``: train, evaluate, gate, simulate, tune-trial…), or a no-op tracker.

    With ``run_dir``, the run's id is written to ``<run_dir>/mlflow-run.json`` (so export and the gate
    find the training's run later) and an unreachable server falls back to a local store there.
    """
    uri = uri or tracking_uri()
    if not uri or not mlflow_available():
        return Tracker()
    from inkloop.models.mlflow_registry import offline_mlflow_env

    offline_mlflow_env()
    experiment = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    tracker_uri, offline = uri, None
    if not server_reachable(uri):
        if run_dir is None:
            logger.warning("MLflow: tracking server %s unreachable; %s not tracked", uri, kind)
            return Tracker()
        offline = Path(run_dir).resolve() / OFFLINE_DIR
        offline.mkdir(parents=True, exist_ok=True)
        tracker_uri = f"sqlite:///{offline / 'mlflow.db'}"
        logger.warning(
            "MLflow: tracking server %s unreachable; logging this %s run to %s instead "
            "(copy it later with `inkloop sync-mlflow-runs %s`)",
            uri,
            kind,
            offline,
            run_dir,
        )
    try:
        client, exp_id = _client_for(tracker_uri, experiment, offline / "artifacts" if offline else None)
        run = client.create_run(
            exp_id,
            run_name=run_name,
            tags={"inkloop.kind": kind, **{k: str(v) for k, v in (tags or {}).items()}},
        )
    except Exception as exc:
        logger.warning("MLflow: cannot start a run at %s (%s); %s not tracked", tracker_uri, exc, kind)
        return Tracker()
    tracker = Tracker(client, run.info.run_id, tracker_uri, experiment)
    tracker.offline_dir = offline
    if run_dir is not None:
        record = {**tracker.to_dict(), "server": uri, "kind": kind}
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        (Path(run_dir) / RUN_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return tracker


def resume_run(run_dir: str | os.PathLike[str] | None) -> Tracker:
    """The tracker of the run recorded in ``<run_dir>/mlflow-run.json`` (a no-op one if none/off)."""
    if run_dir is None or not (Path(run_dir) / RUN_FILE).is_file() or not mlflow_available():
        return Tracker()
    path = Path(run_dir) / RUN_FILE
    rec = json.loads(path.read_text())
    uri = rec.get("tracking_uri")
    if not uri or not server_reachable(uri):
        return Tracker()
    from mlflow import MlflowClient

    return Tracker(MlflowClient(tracking_uri=uri), rec.get("run_id"), uri, rec.get("experiment", ""))


def tracker_for_card(card: ModelCard) -> Tracker:
    """The training run a registered model came from (its card's ``extra["tracking"]``)."""
    rec = (getattr(card, "extra", None) or {}).get("tracking") or {}
    uri, run_id = rec.get("tracking_uri"), rec.get("run_id")
    if not uri or not run_id or not mlflow_available() or not server_reachable(uri):
        return Tracker()
    from mlflow import MlflowClient

    return Tracker(MlflowClient(tracking_uri=uri), run_id, uri, rec.get("experiment", ""))


def log_evaluation(tracker: Tracker, report: EvalReport | Mapping[str, Any], prefix: str = "eval") -> None:
    """The evaluator's report: P/R/F1 at the operating threshold, mAP50, mAP50-95, the per-group table,
    and its files (report.json, pr_curve.png, errors.jsonl)."""
    if not tracker.active:
        return
    d = report.to_dict() if hasattr(report, "to_dict") else dict(report)
    scalars = {k: v for k, v in d.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    tracker.log_metrics({f"{prefix}.{k}": v for k, v in scalars.items()})
    groups = d.get("groups") or {}
    for g, m in groups.items():
        tracker.log_metrics(
            {f"{prefix}.group.{g}.{k}": v for k, v in m.items() if isinstance(v, int | float)}
        )
    tracker.log_dict(d, f"{prefix}/report.json")
    for key in ("pr_curve_path", "errors_path"):
        if d.get(key):
            tracker.log_artifact(d[key], prefix)


def sync_offline(run_dir: str | os.PathLike[str], uri: str | None = None) -> list[str]:
    """Copy the runs kept in ``<run_dir>/mlflow-offline`` (server was down) to the tracking server.

    Params, tags, every metric's history and all artifacts are copied into new runs of the same
    experiment names; ``mlflow-run.json`` then points at the copy of the training run. Returns the
    new run ids. The local store is kept (remove it by hand once the copy is checked).
    """
    if not mlflow_available():
        raise RuntimeError("mlflow is not installed (pip install 'inkloop[experiments]')")
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    uri = uri or tracking_uri()
    if not uri:
        raise RuntimeError("no tracking URI: set MLFLOW_TRACKING_URI")
    offline = Path(run_dir).resolve() / OFFLINE_DIR
    if not (offline / "mlflow.db").is_file():
        raise FileNotFoundError(f"{offline}: no offline MLflow store")
    src = MlflowClient(tracking_uri=f"sqlite:///{offline / 'mlflow.db'}")
    dst = MlflowClient(tracking_uri=uri)
    new_ids: dict[str, str] = {}
    import tempfile

    for exp in src.search_experiments():
        runs = src.search_runs([exp.experiment_id])
        if not runs:
            continue
        target = dst.get_experiment_by_name(exp.name)
        exp_id = target.experiment_id if target else dst.create_experiment(exp.name)
        for run in runs:
            tags = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}
            tags["inkloop.synced_from"] = f"{offline}:{run.info.run_id}"
            new = dst.create_run(exp_id, run_name=run.info.run_name, tags=tags)
            rid = new.info.run_id
            params = [Param(k, v) for k, v in run.data.params.items()]
            metrics = [m for key in run.data.metrics for m in src.get_metric_history(run.info.run_id, key)]
            for i in range(0, max(len(params), len(metrics)), 100):
                dst.log_batch(
                    rid,
                    params=params[i : i + 100],
                    metrics=[Metric(m.key, m.value, m.timestamp, m.step) for m in metrics[i : i + 100]],
                )
            with tempfile.TemporaryDirectory() as tmp:
                if src.list_artifacts(run.info.run_id):
                    local = src.download_artifacts(run.info.run_id, "", tmp)
                    dst.log_artifacts(rid, local)
            dst.set_terminated(rid, run.info.status)
            new_ids[run.info.run_id] = rid
    rec_path = Path(run_dir) / RUN_FILE
    if rec_path.is_file():
        rec = json.loads(rec_path.read_text())
        if rec.get("run_id") in new_ids:
            rec.update(run_id=new_ids[rec["run_id"]], tracking_uri=uri, offline=None, synced=True)
            rec_path.write_text(json.dumps(rec, indent=2) + "\n")
    return list(new_ids.values())

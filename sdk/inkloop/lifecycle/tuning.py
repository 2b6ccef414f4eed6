"""``inkloop tune``: an Optuna study over a recipe's knobs, resumable, pruned, optionally tracked.

- **Search space** (:data:`DEFAULT_SPACE`): ``lr0`` (log scale), ``box``, ``cls``, ``optimizer``,
  ``dropout``, plus ``imgsz`` (from a list) and ``epochs`` (a budget range); every trial is a
  short training of the base recipe with those values.
- **Pruning**: an ultralytics ``on_fit_epoch_end`` callback reports the epoch's validation F1
  (``2PR/(P+R)`` from ultralytics' P and R) or mAP50 to the trial; when ``trial.should_prune()``
  the callback sets ``trainer.stop`` and training ends cleanly after that epoch (MedianPruner).
- **Objective** (what the study maximises): the evaluator's F1 at the operating threshold
  (``--conf``, default the card default 0.25) on the val split, measured on the trial's
  ``best.pt`` exported to ONNX (``objective="f1"``), or its mAP50 (``objective="map50"``).
  The frozen test split is never seen: training withholds it and the objective reads val.
- **Storage**: an RDB URL (default ``sqlite:///<out>/study.db``), with a heartbeat: a sweep
  killed mid-trial leaves that trial RUNNING; the next run of the same command marks it FAIL
  once its heartbeat is older than the grace period and retries it with the same parameters
  (``RetryHeartbeatStaleTrialCallback``), then continues until ``n_trials`` trials have
  completed or been pruned.
- **Tracking**: with a tracking URI, every trial is an MLflow run (params, per-epoch metrics,
  objective, state) in the experiment ``inkloop-tune-<study>``; Optuna's own MLflowCallback is
  deprecated and not used.
- **Output**: ``<out>/best-recipe.json``, a recipe that ``inkloop train --recipe-file`` accepts.
- **Baseline** (``baseline=True``): the base recipe untouched, trained with the same budget (the
  first input size, the largest epoch count, the same starting weights) and scored by the same
  objective, outside the study, so a sweep's table says what tuning bought. Kept in
  ``<out>/baseline.json`` (not trained again on resume).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from inkloop.lifecycle.training import RECIPES, Recipe, recipe_from_record

logger = logging.getLogger(__name__)

OBJECTIVES = ("f1", "map50")

#: name → (kind, arguments): "float" (low, high, log), "cat" (choices).
DEFAULT_SPACE: dict[str, tuple[str, tuple[Any, ...]]] = {
    "lr0": ("float", (1e-4, 2e-2, True)),
    "box": ("float", (3.0, 10.0, False)),
    "cls": ("float", (0.2, 1.5, False)),
    "optimizer": ("cat", ("SGD", "AdamW")),
    "dropout": ("float", (0.0, 0.3, False)),
}


def default_storage(out_dir: str | os.PathLike[str]) -> str:
    return f"sqlite:///{Path(out_dir).resolve() / 'study.db'}"


def _epoch_value(metrics: dict[str, Any], objective: str) -> float | None:
    if objective == "map50":
        v = metrics.get("metrics/mAP50(B)")
        return float(v) if v is not None else None
    p, r = metrics.get("metrics/precision(B)"), metrics.get("metrics/recall(B)")
    if p is None or r is None:
        return None
    return 0.0 if p + r == 0 else float(2 * p * r / (p + r))


def suggest(trial: Any, imgsz: list[int], epochs: tuple[int, int]) -> dict[str, Any]:
    """The trial's knobs: :data:`DEFAULT_SPACE` plus ``imgsz`` and the ``epochs`` budget."""
    params: dict[str, Any] = {}
    for name, (kind, args) in DEFAULT_SPACE.items():
        if kind == "float":
            params[name] = trial.suggest_float(name, args[0], args[1], log=args[2])
        else:
            params[name] = trial.suggest_categorical(name, list(args))
    params["imgsz"] = trial.suggest_categorical("imgsz", list(imgsz))
    params["epochs"] = trial.suggest_int("epochs", epochs[0], epochs[1])
    return params


def trial_recipe(base: Recipe, params: dict[str, Any], model: str | None) -> Recipe:
    extra = {**base.extra, **{k: v for k, v in params.items() if k not in ("imgsz", "epochs")}}
    r = replace(base, imgsz=int(params["imgsz"]), epochs=int(params["epochs"]), extra=extra)
    if model:
        r = replace(r, model=model)
    return replace(r, name=f"{base.name}-tuned")


def tune(
    data: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    recipe: Recipe | str = "tiny",
    model: str | None = None,
    study_name: str = "inkloop-tune",
    storage: str | None = None,
    n_trials: int = 10,
    objective: str = "f1",
    imgsz: list[int] | None = None,
    epochs: tuple[int, int] | None = None,
    conf: float = 0.25,
    seed: int = 0,
    heartbeat_interval: int = 30,
    grace_period: int = 90,
    max_retry: int = 2,
    on_trial: Any = None,
    pruner: Any = None,
    baseline: bool = False,
) -> dict[str, Any]:
    """Run (or resume) a sweep; return a summary (best trial, its value and params, every trial,
    and with ``baseline`` the untuned recipe's value under the same budget).

    ``pruner`` defaults to ``MedianPruner(n_startup_trials=2, n_warmup_steps=1)``."""
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    base = RECIPES[recipe] if isinstance(recipe, str) else recipe
    imgsz = imgsz or [base.imgsz]
    epochs = epochs or (max(1, base.epochs // 2), base.epochs)
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    storage_url = storage or default_storage(out)
    rdb = RDBStorage(
        storage_url,
        heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=max_retry),
    )
    study = optuna.create_study(
        study_name=study_name,
        storage=rdb,
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    )
    study.set_user_attr("objective", objective)
    study.set_user_attr("base_recipe", asdict(base))

    def done() -> int:
        states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        return len(study.get_trials(deepcopy=False, states=states))

    def run_trial(trial: Any) -> float:
        return _objective(trial, data, out, base, model, imgsz, epochs, objective, conf, study_name, on_trial)

    # Each optimize() first fails trials whose heartbeat is stale (a killed sweep's RUNNING trial),
    # and the retry callback queues them again with the same parameters.
    while done() < n_trials:
        study.optimize(run_trial, n_trials=1, catch=())
    summary = write_best(study, out, base, model)
    if baseline:
        summary["baseline"] = run_baseline(
            data, out, base, model, imgsz[0], epochs[1], objective, conf, study_name
        )
        (out / "study.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def run_baseline(
    data: Any,
    out: Path,
    base: Recipe,
    model: str | None,
    imgsz: int,
    epochs: int,
    objective: str,
    conf: float,
    study_name: str,
) -> dict[str, Any]:
    """The untuned recipe under the sweep's budget and objective (``<out>/baseline.json``).

    Why outside the study: its optimizer may be one the search space does not offer (``auto``), and
    a baseline is a reference, not a candidate for the sampler to learn from."""
    import time

    from inkloop.lifecycle.tracking import start_run
    from inkloop.lifecycle.training import train

    record_path = out / "baseline.json"
    if record_path.is_file():
        return dict(json.loads(record_path.read_text()))
    r = replace(base, imgsz=int(imgsz), epochs=int(epochs))
    if model:
        r = replace(r, model=model)
    run_dir = out / "baseline"
    if run_dir.exists():  # a half-written baseline (killed sweep) is trained again
        shutil.rmtree(run_dir)
    tracker = start_run(
        "tune-baseline",
        run_dir=run_dir,
        run_name="baseline",
        experiment=f"inkloop-tune-{study_name}",
        tags={"optuna.study": study_name},
    )
    tracker.log_params(
        {"imgsz": r.imgsz, "epochs": r.epochs, "objective": objective, "base_recipe": base.name}
    )
    t0 = time.monotonic()
    try:
        train(data, r, project=out, name="baseline")
    except BaseException:
        tracker.end("FAILED")
        raise
    value = _final_value(run_dir, data, r, objective, conf)
    record = {
        "value": value,
        "objective": objective,
        "recipe": asdict(r),
        "seconds": round(time.monotonic() - t0, 1),
        "run_dir": str(run_dir),
    }
    tracker.log_metrics({f"objective_{objective}": value})
    tracker.end("FINISHED")
    record_path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return record


def _objective(
    trial: Any,
    data: Any,
    out: Path,
    base: Recipe,
    model: str | None,
    imgsz: list[int],
    epochs: tuple[int, int],
    objective: str,
    conf: float,
    study_name: str,
    on_trial: Any,
) -> float:
    import optuna

    from inkloop.lifecycle.tracking import start_run
    from inkloop.lifecycle.training import train

    frozen = trial.study._storage.get_trial(trial._trial_id)
    retried = frozen.system_attrs.get("failed_trial")  # set by RetryHeartbeatStaleTrialCallback
    params = suggest(trial, imgsz, epochs)  # a retried trial already holds its parameters: same values
    r = trial_recipe(base, params, model)
    name = f"trial-{trial.number:04d}"
    run_dir = out / "trials" / name
    if run_dir.exists():  # a retried number never reuses a half-written run
        shutil.rmtree(run_dir)
    tracker = start_run(
        "tune-trial",
        run_dir=run_dir,
        run_name=name,
        experiment=f"inkloop-tune-{study_name}",
        tags={"optuna.study": study_name, "optuna.trial": trial.number, "optuna.retry_of": retried or ""},
    )
    tracker.log_params({**params, "objective": objective, "base_recipe": base.name})
    state = {"pruned": False, "best": -math.inf}

    def on_model(yolo: Any) -> None:
        def on_fit_epoch_end(trainer: Any) -> None:
            value = _epoch_value(dict(trainer.metrics or {}), objective)
            if value is None:
                return
            step = int(trainer.epoch) + 1
            if step > int(trainer.epochs):  # ultralytics' final validation of best.pt: not an epoch
                return
            state["best"] = max(state["best"], value)
            tracker.log_metrics({**dict(trainer.metrics), f"val_{objective}": value}, step=step)
            trial.report(value, step)
            if trial.should_prune():
                state["pruned"] = True
                trainer.stop = True  # ultralytics ends after this epoch, checkpoints written

        yolo.add_callback("on_fit_epoch_end", on_fit_epoch_end)

    if on_trial is not None:
        on_trial(trial.number, params)
    try:
        train(data, r, project=out / "trials", name=name, on_model=on_model)
    except BaseException:
        tracker.end("FAILED")
        raise
    if state["pruned"]:
        tracker.set_tags({"optuna.state": "PRUNED"})
        tracker.end("KILLED")
        raise optuna.TrialPruned()
    value = _final_value(run_dir, data, r, objective, conf)
    trial.set_user_attr("run_dir", str(run_dir))
    trial.set_user_attr("recipe", asdict(r))
    tracker.log_metrics({f"objective_{objective}": value})
    tracker.set_tags({"optuna.state": "COMPLETE"})
    tracker.end("FINISHED")
    return value


def _final_value(run_dir: Path, data: Any, r: Recipe, objective: str, conf: float) -> float:
    """The evaluator's F1 at the operating threshold (or mAP50) on val, for the trial's best.pt."""
    from inkloop.evaluation.evaluator import evaluate
    from inkloop.lifecycle.export import export_onnx
    from inkloop.lifecycle.training import prepare_training_data

    weights = run_dir / "weights" / "best.pt"
    if not weights.is_file():
        weights = run_dir / "weights" / "last.pt"
    onnx_dir = run_dir / "onnx"
    export_onnx(
        weights,
        onnx_dir,
        imgsz=r.imgsz,
        name="trial",
        version=run_dir.name,
        conf_threshold=conf,
        copy_pt=False,
    )
    data_yaml, _ = prepare_training_data(data, run_dir / "eval-data")
    report = evaluate(
        str(onnx_dir / "model.onnx"), data_yaml, split="val", conf=conf, plot=False, target_recall=None
    )
    return float(report.f1 if objective == "f1" else report.map50)


def write_best(study: Any, out: Path, base: Recipe, model: str | None) -> dict[str, Any]:
    """``best-recipe.json`` (a recipe ``inkloop train --recipe-file`` accepts) and ``study.json``."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    rows = [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params} for t in trials]
    summary: dict[str, Any] = {"study": study.study_name, "trials": rows, "best": None}
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        r = trial_recipe(base, best.params, model)
        record = {
            **asdict(r),
            "tuned": {
                "study": study.study_name,
                "trial": best.number,
                "value": best.value,
                "objective": study.user_attrs.get("objective"),
            },
        }
        (out / "best-recipe.json").write_text(json.dumps(record, indent=2) + "\n")
        assert recipe_from_record(record) == r
        summary["best"] = {
            "number": best.number,
            "value": best.value,
            "params": best.params,
            "recipe_file": str(out / "best-recipe.json"),
        }
    (out / "study.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary

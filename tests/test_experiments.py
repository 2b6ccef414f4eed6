"""MLflow tracking, the MLflow registry in the lifecycle, and `inkloop tune`, against real services.

A real MLflow server (session fixture ``mlflow_server``) and a real Optuna SQLite storage; real
(tiny) trainings on the committed fixture pages. Test names start with ``test_mlflow`` where
ultralytics' own MLflow callback should run: it stays silent under pytest otherwise.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixture_data import make_dataset

from inkloop.devservers.mlflow.server import free_port
from inkloop.lifecycle.retrain import retrain
from inkloop.lifecycle.tracking import OFFLINE_DIR, RUN_FILE, start_run, sync_offline
from inkloop.models.mlflow_registry import MlflowRegistry
from inkloop.models.references import ModelError
from inkloop.models.resolve import resolve_model

NAME = "signature-detector"
TINY = {"epochs": 1, "batch": 2, "cache": "", "plots": False, "imgsz": 160}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, pages_dir: Path) -> Path:
    return make_dataset(tmp_path_factory.mktemp("ds"), pages_dir)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inkloop", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def test_no_tracking_uri_changes_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_MLFLOW", raising=False)
    tracker = start_run("train", run_dir=tmp_path)
    assert not tracker.active and tracker.child_env() == {}
    tracker.log_metrics({"a": 1.0})  # all no-ops
    tracker.end()
    assert list(tmp_path.iterdir()) == []


def test_mlflow_retrain_export_promote_rollback_through_mlflow_registry(
    tmp_path: Path, dataset: Path, mlflow_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = mlflow_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "lifecycle-test")
    reg = MlflowRegistry(f"mlflow+{url}", cache_dir=tmp_path / "cache")
    for rm in reg.client.search_registered_models(max_results=1000):
        reg.client.delete_registered_model(rm.name)
    bundled = resolve_model(None)
    v1 = reg.register(NAME, bundled.path, bundled.card, pt_path=bundled.path.with_name("model.pt"))
    reg.promote(NAME, v1)
    assert resolve_model(f"mlflow://{NAME}@production").card.version == v1

    # Retrain from the MLflow registry's production, tracked.
    run = retrain(
        dataset,
        tmp_path / "runs" / "ft",
        start_from=f"mlflow://{NAME}@production",
        overrides={**TINY, "imgsz": bundled.card.input_size, "lr0": 1e-5, "warmup_epochs": 0, "mosaic": 0.0},
    )
    assert run.ok, run.message
    rec = json.loads((run.run_dir / RUN_FILE).read_text())
    client = reg.client
    mrun = client.get_run(rec["run_id"])
    assert mrun.data.params["seed"] == "0" and mrun.data.params["data_version"].startswith("sha256:")
    assert mrun.data.params["parent.ref"] == f"mlflow://{NAME}@production"
    assert client.get_metric_history(rec["run_id"], "metrics/mAP50B"), (
        "per-epoch metrics (ultralytics' callback)"
    )
    arts = {a.path for a in client.list_artifacts(rec["run_id"], "run")}
    assert {"run/recipe.json", "run/data_manifest.json"} <= arts

    # Export registers the ONNX (with its signature) and the card as an MLflow model version.
    p = run_cli(
        "export", str(run.run_dir), "--out", str(tmp_path / "export"), "--data", str(dataset),
        "--registry", "mlflow", "--formats", "", "--json",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    v2 = json.loads(p.stdout)["version"]
    assert reg.aliases(NAME) == {"candidate": v2, "production": v1}
    card = reg.show(NAME, v2)
    mv = client.get_model_version(NAME, card.extra["mlflow"]["version"])
    from mlflow.models import get_model_info

    assert get_model_info(f"models:/{NAME}/{mv.version}").signature.inputs.input_names() == ["images"]
    mrun = client.get_run(rec["run_id"])
    assert "eval.test.f1" in mrun.data.metrics and "eval.test.map50_95" in mrun.data.metrics
    assert any(k.startswith("eval.test.group.") for k in mrun.data.metrics)
    arts = {a.path for a in client.list_artifacts(rec["run_id"], "eval.test")}
    assert {"eval.test/report.json", "eval.test/pr_curve.png", "eval.test/errors.jsonl"} <= arts

    # Promote through the same gate; the decision lands in the training's run; rollback moves back.
    p = run_cli(
        "promote", NAME, "--data", str(dataset), "--registry", "mlflow", "--margin", "0",
        "--max-latency-ratio", "3", "--json",
    )  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    assert json.loads(p.stdout)["promoted"]
    assert reg.alias(NAME, "production") == v2
    tags = client.get_run(rec["run_id"]).data.tags
    assert tags["inkloop.gate.promote"] == "True" and tags["inkloop.gate.reasons"]
    p = run_cli("models", "rollback", NAME, "--registry", "mlflow", "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    assert reg.alias(NAME, "production") == v1

    # An alias pointing at no complete version, and an unknown alias: clear errors, production untouched.
    model_id = card.extra["mlflow"]["model_uri"].removeprefix("models:/")
    bad = client.create_model_version(NAME, source=mv.source, run_id=mv.run_id, model_id=model_id)
    client.set_registered_model_alias(NAME, "broken", bad.version)
    with pytest.raises(ModelError, match="not a complete inkloop version"):
        resolve_model(f"mlflow://{NAME}@broken")
    with pytest.raises(ModelError, match="has no alias or version 'staging'"):
        resolve_model(f"models:/{NAME}@staging")
    assert reg.alias(NAME, "production") == v1


def test_tracking_server_down_keeps_runs_locally_then_syncs(
    tmp_path: Path, dataset: Path, mlflow_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")  # nobody there
    caplog.set_level(logging.WARNING, logger="inkloop.lifecycle.tracking")
    run = retrain(dataset, tmp_path / "run", start_from="yolov8n.yaml", recipe="tiny", overrides=TINY)
    assert run.ok, run.message
    down = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(down) == 1 and "inkloop sync-runs" in down[0].getMessage()
    assert (tmp_path / "run" / OFFLINE_DIR / "mlflow.db").is_file()

    url, _ = mlflow_server
    ids = sync_offline(tmp_path / "run", uri=url)
    assert len(ids) == 1
    rec = json.loads((tmp_path / "run" / RUN_FILE).read_text())
    assert rec["run_id"] == ids[0] and rec["tracking_uri"] == url
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url)
    synced = client.get_run(ids[0])
    assert synced.data.params["seed"] == "0"
    assert client.get_metric_history(ids[0], "metrics/mAP50B")  # epochs from results.csv
    assert {a.path for a in client.list_artifacts(ids[0], "run")} >= {"run/recipe.json"}


def _trial_states(storage: str) -> list[tuple[int, str, dict]]:
    import optuna

    study = optuna.load_study(study_name="inkloop-tune", storage=storage)
    return [(t.number, t.state.name, dict(t.system_attrs)) for t in study.get_trials(deepcopy=False)]


def test_tune_killed_mid_trial_resumes_and_best_recipe_trains(
    tmp_path: Path, dataset: Path, mlflow_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = mlflow_server
    out = tmp_path / "sweep"
    storage = f"sqlite:///{out / 'study.db'}"
    args = [
        "tune", "--data", str(dataset), "--out", str(out), "--recipe", "tiny", "--model", "yolov8n.yaml",
        "--trials", "2", "--epochs", "2", "--imgsz", "160", "--heartbeat", "1", "--json",
    ]  # fmt: skip
    env = {**os.environ, "MLFLOW_TRACKING_URI": url}
    proc = subprocess.Popen(
        [sys.executable, "-m", "inkloop", *args], env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        first_epoch = out / "trials" / "trial-0000" / "results.csv"
        deadline = time.monotonic() + 240
        while not first_epoch.exists():  # mid-trial: one epoch of two done
            assert proc.poll() is None and time.monotonic() < deadline, (
                "the sweep never reached its first epoch"
            )
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert [s for _, s, _ in _trial_states(storage)] == ["RUNNING"]
    time.sleep(4)  # past the grace period: the heartbeat is stale

    p = run_cli(*args, env={"MLFLOW_TRACKING_URI": url})
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    summary = json.loads(p.stdout)
    states = _trial_states(storage)
    assert states[0][1] == "FAIL"
    retried = [s for s in states if s[2].get("failed_trial") == 0]
    assert retried and retried[0][1] in ("COMPLETE", "PRUNED")
    assert sum(s in ("COMPLETE", "PRUNED") for _, s, _ in states) == 2
    best = summary["best"]
    assert best is not None and 0.0 <= best["value"] <= 1.0

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url)
    exp = client.get_experiment_by_name("inkloop-tune-inkloop-tune")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == len(states)  # every trial, the killed one included, is a run
    done = [r for r in runs if r.data.tags.get("optuna.state") == "COMPLETE"]
    assert done and all("objective_f1" in r.data.metrics for r in done)

    recipe_file = Path(best["recipe_file"])
    record = json.loads(recipe_file.read_text())
    assert set(best["params"]) == {"lr0", "box", "cls", "optimizer", "dropout", "imgsz", "epochs"}
    assert record["extra"]["optimizer"] == best["params"]["optimizer"]
    p = run_cli(
        "train", "--data", str(dataset), "--run-dir", str(tmp_path / "tuned"), "--from", "yolov8n.yaml",
        "--recipe-file", str(recipe_file), "--epochs", "1", "--json", "-q",
        env={"MLFLOW_TRACKING_URI": ""},
    )  # fmt: skip
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    trained = json.loads((tmp_path / "tuned" / "recipe.json").read_text())
    assert trained["extra"]["lr0"] == record["extra"]["lr0"] and trained["name"] == record["name"]


def test_tune_prunes_a_trial_and_stops_its_training_after_the_epoch(
    tmp_path: Path, dataset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import optuna

    from inkloop.lifecycle.tuning import tune

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    summary = tune(
        dataset,
        tmp_path / "sweep",
        recipe="tiny",
        model="yolov8n.yaml",
        n_trials=1,
        imgsz=[160],
        epochs=(3, 3),
        pruner=optuna.pruners.ThresholdPruner(lower=2.0),  # every F1 is below 2: prune at once
    )
    assert [t["state"] for t in summary["trials"]] == ["PRUNED"] and summary["best"] is None
    results = (tmp_path / "sweep" / "trials" / "trial-0000" / "results.csv").read_text().splitlines()
    assert len(results) == 2  # header + one epoch of three: training stopped cleanly after it
    assert (tmp_path / "sweep" / "trials" / "trial-0000" / "weights" / "last.pt").is_file()

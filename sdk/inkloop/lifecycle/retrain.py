"""Retrain a detector in a child process: progress, a time limit, clean cancellation, resume.

Why a subprocess (``python -m inkloop.lifecycle.training``) and not an in-process ``YOLO.train``:

- a time limit or a cancellation must be able to stop training *now*, including torch's native
  threads, and only a process can be stopped like that; the run's process group is signalled, so
  dataloader workers go too;
- an Airflow worker, a CLI or a notebook keeps its own signal handling, memory and threads;
- a crash in native code (OOM, a bad image decoder) fails the job, not its host.

What stays behind is always a resumable run directory: ultralytics writes ``weights/last.pt`` at
the end of every epoch, the child holds a SIGTERM until a checkpoint write finishes (so it never
truncates one), and ``resume=True`` continues from it with the optimizer state and epoch counter.

Progress is read from ``results.csv``, which ultralytics appends one row to per finished epoch:
unlike its console output it does not depend on terminal width, tqdm or log levels.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from inkloop import storage
from inkloop.documents.hashing import sha256_file
from inkloop.lifecycle.training import (
    RECIPES,
    Recipe,
    fetch_run,
    offline_env,
    prepare_training_data,
    recipe_from_record,
    run_scratch,
    upload_run,
    write_run_record,
)
from inkloop.models.references import ModelError
from inkloop.processes import stop_group

logger = logging.getLogger(__name__)

Status = Literal["finished", "timed_out", "cancelled", "failed"]
STATUS_FILE = "inkloop-status.json"
LOG_FILE = "train.log"
DEFAULT_RECIPE = "finetune-v1"


class RetrainError(RuntimeError):
    """A training run that cannot be started (bad arguments, run directory in an unusable state)."""


@dataclass(frozen=True)
class TrainProgress:
    """One finished epoch, as read from ``results.csv``."""

    epoch: int
    epochs: int
    elapsed: float
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return self.epoch / self.epochs if self.epochs else 0.0


@dataclass
class RetrainResult:
    """How a run ended and where its outputs are. ``resumable`` runs continue with ``resume=True``.

    ``run_dir``, ``best`` and ``last`` are local files; for a run kept at a storage URL,
    ``output`` is that URL (the run's files were uploaded there) and :meth:`to_dict` reports the
    stored locations, with the local working folder as ``local_run_dir``.
    """

    status: Status
    run_dir: Path
    epochs_done: int
    epochs: int
    seconds: float
    returncode: int | None
    best: Path | None
    last: Path | None
    data_version: str | None
    message: str = ""
    resumed_from_epoch: int | None = None
    output: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "finished"

    @property
    def resumable(self) -> bool:
        return self.status != "finished" and self.last is not None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("run_dir", "best", "last"):
            d[key] = str(d[key]) if d[key] is not None else None
        d["resumable"] = self.resumable
        if self.output is not None:
            d["local_run_dir"] = d["run_dir"]
            d["run_dir"] = self.output
            for key, rel in (("best", "weights/best.pt"), ("last", "weights/last.pt")):
                if d[key] is not None:
                    d[key] = storage.join(self.output, rel)
        return d


def read_progress(run_dir: Path, epochs: int, started: float | None = None) -> TrainProgress | None:
    """The last finished epoch in ``run_dir/results.csv`` (None before the first one ends).

    Tolerates a half-written last line (the file is read while ultralytics appends to it).
    """
    path = run_dir / "results.csv"
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    rows = list(csv.reader(line for line in text.splitlines() if line.strip()))
    if len(rows) < 2:
        return None
    header = [h.strip() for h in rows[0]]
    for row in reversed(rows[1:]):
        if len(row) != len(header):
            continue  # the line being written
        try:
            values = {h: float(v) for h, v in zip(header, row, strict=True)}
        except ValueError:
            continue
        epoch = int(values.pop("epoch", 0))
        elapsed = values.pop("time", time.time() - started if started else 0.0)
        return TrainProgress(epoch=epoch, epochs=epochs, elapsed=elapsed, metrics=values)
    return None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _kill_group(proc: subprocess.Popen[bytes], grace: float) -> None:
    """Stop the training child's whole process group (dataloader workers too): SIGTERM, SIGKILL
    after ``grace`` seconds, then whatever outlived the leader."""
    stop_group(proc.pid, proc, timeout=grace, what="training process")


def _checkpoint_resumable(last: Path) -> bool:
    """Whether ``last.pt`` still carries optimizer state (ultralytics strips it when a run ends)."""
    try:
        import torch

        ckpt = torch.load(last, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated or unreadable checkpoint: say so, do not crash
        logger.warning("%s is not a readable checkpoint (%s)", last, exc)
        return False
    return isinstance(ckpt, dict) and ckpt.get("optimizer") is not None


def resolve_start(
    start_from: str | os.PathLike[str] | None, registry: str | None = None
) -> tuple[str, dict[str, Any]]:
    """The weights a retrain starts from and their lineage (recorded in ``recipe.json``).

    ``start_from``: ``registry://name@production`` (default alias production; the version's
    checksum-verified ``model.pt``), ``bundled``/None (the packaged model's ``model.pt``), a local
    ``.pt`` file, or an architecture ``.yaml`` (train from scratch; no parent).
    """
    from inkloop.models.references import bundled_model_path, load_local
    from inkloop.models.registry import is_registry_ref

    ref = "bundled" if start_from is None else str(start_from)
    if ref == "bundled":
        onnx = bundled_model_path()
        card = load_local(onnx, ref="bundled").card
        pt = onnx.with_name("model.pt")
        if not pt.is_file():
            raise ModelError(f"the bundled model has no model.pt to fine-tune from ({pt})")
        return str(pt), {
            "ref": "bundled",
            "model_version": card.model_version,
            "sha256": sha256_file(pt),
            "card": _card_defaults(card),
        }
    if is_registry_ref(ref):
        from inkloop.models.resolve import open_registry_ref

        reg, name, tag = open_registry_ref(ref, registry)
        model = reg.fetch(name, tag, with_pt=True, ref=ref)
        pt = model.path.with_name("model.pt")
        return str(pt), {
            "ref": ref,
            "registry": reg.url,
            "name": name,
            "version": model.card.version,
            "model_version": model.card.model_version,
            "sha256": sha256_file(pt),
            "card": _card_defaults(model.card),
        }
    path = Path(ref)
    if path.suffix in (".yaml", ".yml") and not path.exists():
        return ref, {"ref": ref, "from_scratch": True}  # an ultralytics architecture name
    if path.suffix == ".pt" and path.name == ref and not path.exists():
        # A hub name such as ``yolov8n.pt`` (COCO-pretrained): a local copy from $INKLOOP_PRETRAINED,
        # else ultralytics downloads it (a clear error when downloads are off).
        from inkloop.lifecycle.training import initial_weights

        weights, record = initial_weights(ref)
        return weights, {"ref": ref, **record}
    if not path.is_file():
        raise ModelError(f"starting model not found: {ref}")
    if path.suffix in (".yaml", ".yml"):
        return str(path.resolve()), {"ref": ref, "from_scratch": True}
    if path.suffix != ".pt":
        raise ModelError(f"{ref}: a retrain starts from a .pt checkpoint or an architecture .yaml")
    return str(path.resolve()), {"ref": ref, "sha256": sha256_file(path)}


def _card_defaults(card: Any) -> dict[str, Any]:
    """What a child model inherits from its parent's card unless told otherwise."""
    return {
        "name": card.name,
        "input_size": card.input_size,
        "preprocessing": card.preprocessing,
        "conf_threshold": card.conf_threshold,
        "iou_threshold": card.iou_threshold,
        "class_names": list(card.class_names),
    }


class RetrainJob:
    """One training run in a child process; :meth:`run` blocks, :meth:`cancel` may come from anywhere.

    ``time_limit`` (seconds) applies to this invocation; a resumed run gets its own limit.
    ``run_dir`` may be a storage URL: the run is worked on in a local folder
    (:func:`~inkloop.lifecycle.training.run_scratch`), downloaded from the URL first when it
    resumes (the stored run is the one that counts), and uploaded there when the child ends,
    however it ends. ``data`` may be a storage URL too (copied to local scratch for ultralytics).
    """

    def __init__(
        self,
        data: str | os.PathLike[str] | None,
        run_dir: str | os.PathLike[str],
        recipe: Recipe | None = None,
        *,
        metadata: dict[str, Any] | None = None,
        time_limit: float | None = None,
        resume: bool = False,
        poll_interval: float = 0.5,
        stop_grace: float = 60.0,
        python: str = sys.executable,
        fetched: bool = False,
    ) -> None:
        #: Where the run is kept when that is a storage URL (None: ``run_dir`` is local).
        self.output: str | None = os.fspath(run_dir) if storage.is_url(run_dir) else None
        self.run_dir = run_scratch(self.output) if self.output else Path(run_dir).resolve()
        self.data = data
        self.recipe = recipe
        self.metadata = dict(metadata or {})
        self.time_limit = time_limit
        self.resume = resume
        self.poll_interval = poll_interval
        self.stop_grace = stop_grace
        self.python = python
        #: The stored run was downloaded already (by :func:`retrain`): not again before resuming.
        self._fetched = fetched
        if self.output is not None and not resume:
            if storage.exists(storage.join(self.output, "recipe.json")):
                raise RetrainError(
                    f"{self.output} already holds a run; continue it with resume=True (--resume) "
                    "or choose another run directory"
                )
            shutil.rmtree(self.run_dir, ignore_errors=True)  # a local copy of a run no longer stored
        self._cancel = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        #: Added to the training process's environment (the MLflow run ultralytics logs into).
        self.extra_env: dict[str, str] = {}
        self._data_version: str | None = None

    # --------------------------------------------------------------- control

    def cancel(self) -> None:
        """Ask the run to stop: the child is terminated, ``last.pt`` stays, the run is resumable."""
        self._cancel.set()

    @property
    def weights_dir(self) -> Path:
        return self.run_dir / "weights"

    def _status(self, **fields: Any) -> None:
        path = self.run_dir / STATUS_FILE
        prev = json.loads(path.read_text()) if path.exists() else {}
        prev.update(fields, updated_at=_now())
        storage.write_local_atomic(str(path), json.dumps(prev, indent=2).encode())

    def _read_status(self) -> dict[str, Any]:
        path = self.run_dir / STATUS_FILE
        return json.loads(path.read_text()) if path.exists() else {}

    # ----------------------------------------------------------------- setup

    def _prepare(self) -> tuple[list[str], Recipe, int | None, str | None]:
        """The child's command line, the recipe, the epoch resumed from, and the data version."""
        record_path = self.run_dir / "recipe.json"
        last = self.weights_dir / "last.pt"
        base = [
            self.python,
            "-m",
            "inkloop.lifecycle.training",
            "--project",
            str(self.run_dir.parent),
            "--name",
            self.run_dir.name,
        ]
        if self.resume and record_path.exists():
            record = json.loads(record_path.read_text())
            recipe = recipe_from_record(record)
            data_yaml = self.run_dir.parent / f"{self.run_dir.name}-data" / "data.yaml"
            source = (record.get("data") or {}).get("source")
            if not data_yaml.exists() and source and storage.is_url(source):
                # another machine: its local copy of the stored data is made again
                prepare_training_data(source, data_yaml.parent)
            if last.exists() and _checkpoint_resumable(last):
                done = read_progress(self.run_dir, recipe.epochs)
                cmd = [*base, "--data", str(data_yaml), "--recipe-file", str(record_path), "--resume"]
                return cmd, recipe, (done.epoch if done else 0), record.get("data_version")
            if last.exists():
                raise RetrainError(
                    f"{last} cannot be resumed (it is damaged, or the run already finished and its "
                    "optimizer state was stripped); start a new run"
                )
            # Stopped before the first epoch ended: nothing to resume, start the same run again.
            (self.run_dir / "results.csv").unlink(missing_ok=True)
            cmd = [*base, "--data", str(data_yaml), "--recipe-file", str(record_path)]
            return cmd, recipe, None, record.get("data_version")
        if self.recipe is None or self.data is None:
            raise RetrainError("a new run needs data and a recipe")
        if last.exists() or record_path.exists():
            raise RetrainError(
                f"{self.run_dir} already holds a run; continue it with resume=True (--resume) "
                "or choose another run directory"
            )
        workdir = self.run_dir.parent / f"{self.run_dir.name}-data"
        data_yaml, data_info = prepare_training_data(self.data, workdir)  # refuses a leaking test split
        write_run_record(self.run_dir, self.recipe, data_info, self.metadata)
        record = json.loads(record_path.read_text())
        cmd = [*base, "--data", str(data_yaml), "--recipe-file", str(record_path)]
        return cmd, self.recipe, None, record.get("data_version")

    # ------------------------------------------------------------------- run

    def run(
        self,
        on_progress: Callable[[TrainProgress], None] | None = None,
        on_start: Callable[[int, int], None] | None = None,
    ) -> RetrainResult:
        """Train until done, the time limit, or :meth:`cancel` (also SIGTERM / Ctrl-C); never raises
        for a failed *training* (the result says ``failed`` with the log's tail), only for a run
        that cannot start (:class:`RetrainError`, :class:`~inkloop.lifecycle.training.DataLeakError`).
        A run kept at a storage URL is uploaded when it ends; a failed upload raises
        :class:`~inkloop.storage.StorageError` naming the URL (the local folder keeps the run)."""
        if self.output is None:
            return self._run(on_progress, on_start)
        if self.resume and not self._fetched:
            fetch_run(self.output, self.run_dir)
        try:
            result = self._run(on_progress, on_start)
        finally:
            self._upload()
        result.output = self.output
        return result

    def _upload(self) -> None:
        assert self.output is not None
        try:
            upload_run(self.run_dir, self.output)
        except storage.StorageError as exc:
            raise storage.StorageError(
                self.output,
                f"{exc.reason}; the run is kept in {self.run_dir} (a resume uploads it again)",
                "store the run at",
                exc.kind,
            ) from exc

    def _run(
        self,
        on_progress: Callable[[TrainProgress], None] | None,
        on_start: Callable[[int, int], None] | None,
    ) -> RetrainResult:
        status = self._read_status()
        if self.resume and status.get("state") == "finished":
            return self._result("finished", status.get("epochs", 0), 0.0, 0, None, "already finished")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        cmd, recipe, resumed_from, data_version = self._prepare()
        self._data_version = data_version
        epochs = recipe.epochs
        offline_env()
        env = {**os.environ, **self.extra_env, "PYTHONUNBUFFERED": "1"}
        log_path = self.run_dir / LOG_FILE
        t0 = time.monotonic()
        deadline = t0 + self.time_limit if self.time_limit else None
        restore = self._install_sigterm()
        state: Status = "failed"
        message = ""
        last_seen = resumed_from or 0
        try:
            with open(log_path, "ab") as log:
                log.write(f"\n==== {_now()} {' '.join(cmd)}\n".encode())
                log.flush()
                self._proc = proc = subprocess.Popen(
                    cmd,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                    cwd=str(self.run_dir.parent),
                )
            self._status(
                state="running", pid=proc.pid, epochs=epochs, started_at=_now(), time_limit=self.time_limit
            )
            if on_start is not None:  # the child runs: (epochs already done, total epochs)
                on_start(last_seen, epochs)
            while True:
                rc = proc.poll()
                prog = read_progress(self.run_dir, epochs)
                if prog is not None and prog.epoch > last_seen:
                    last_seen = prog.epoch
                    self._status(epochs_done=prog.epoch)
                    if on_progress is not None:
                        on_progress(prog)
                if rc is not None:
                    state = "finished" if rc == 0 else "failed"
                    if rc != 0:
                        message = f"training exited with code {rc}: {self._log_tail(log_path)}"
                    break
                if self._cancel.is_set():
                    _kill_group(proc, self.stop_grace)
                    state, message = "cancelled", "cancelled; resume with resume=True"
                    break
                if deadline is not None and time.monotonic() > deadline:
                    _kill_group(proc, self.stop_grace)
                    state = "timed_out"
                    message = f"time limit of {self.time_limit:g} s reached; resume with resume=True"
                    break
                self._cancel.wait(self.poll_interval)
        except KeyboardInterrupt:
            if self._proc is not None:
                _kill_group(self._proc, self.stop_grace)
            self._finish("cancelled", epochs, t0, resumed_from, "interrupted")
            raise
        finally:
            restore()
            if self._proc is not None and self._proc.poll() is None:  # never leave a child behind
                _kill_group(self._proc, self.stop_grace)
        return self._finish(state, epochs, t0, resumed_from, message)

    def _finish(
        self, state: Status, epochs: int, t0: float, resumed_from: int | None, message: str
    ) -> RetrainResult:
        prog = read_progress(self.run_dir, epochs)
        done = prog.epoch if prog else 0
        if state == "finished" and done < epochs:
            # ultralytics also ends early on its own (patience): that is a finished run, say so.
            message = message or f"stopped early after {done} of {epochs} epochs (no improvement)"
        self._status(
            state=state,
            epochs_done=done,
            returncode=self._proc.returncode if self._proc else None,
            message=message,
        )
        rc = self._proc.returncode if self._proc else None
        return self._result(state, done, time.monotonic() - t0, rc, resumed_from, message, epochs)

    def _result(
        self,
        state: Status,
        done: int,
        seconds: float,
        rc: int | None,
        resumed_from: int | None,
        message: str,
        epochs: int | None = None,
    ) -> RetrainResult:
        best = self.weights_dir / "best.pt"
        last = self.weights_dir / "last.pt"
        if epochs is None:
            record_path = self.run_dir / "recipe.json"
            epochs = json.loads(record_path.read_text()).get("epochs", done) if record_path.exists() else done
        data_version = self._data_version
        if data_version is None and (self.run_dir / "recipe.json").exists():
            data_version = json.loads((self.run_dir / "recipe.json").read_text()).get("data_version")
        return RetrainResult(
            status=state,
            run_dir=self.run_dir,
            epochs_done=done,
            epochs=int(epochs),
            seconds=round(seconds, 3),
            returncode=rc,
            best=best if best.exists() else None,
            last=last if last.exists() else None,
            data_version=data_version,
            message=message,
            resumed_from_epoch=resumed_from,
        )

    @staticmethod
    def _log_tail(path: Path, lines: int = 12) -> str:
        try:
            tail = path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return "\n".join(tail)

    def _install_sigterm(self) -> Callable[[], None]:
        """SIGTERM to this process cancels the run (only possible from the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = signal.getsignal(signal.SIGTERM)

        def on_sigterm(_signum: int, _frame: Any) -> None:
            self.cancel()

        signal.signal(signal.SIGTERM, on_sigterm)

        def restore() -> None:
            signal.signal(signal.SIGTERM, previous)

        return restore


def retrain(
    data: str | os.PathLike[str] | None,
    run_dir: str | os.PathLike[str],
    *,
    start_from: str | os.PathLike[str] | None = "registry://signature-detector@production",
    registry: str | None = None,
    recipe: Recipe | str = DEFAULT_RECIPE,
    overrides: dict[str, Any] | None = None,
    time_limit: float | None = None,
    resume: bool = False,
    on_progress: Callable[[TrainProgress], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
    job: Callable[[RetrainJob], None] | None = None,
) -> RetrainResult:
    """Fine-tune a model on curated data (old plus new pages) in a child process.

    ``start_from`` picks the weights (see :func:`resolve_start`); by default the recipe's input
    size is the parent card's, so the child serves at the size the parent did. ``overrides``
    change recipe fields (``epochs``, ``imgsz``, ``batch``, ``seed``…) or add ultralytics
    arguments (``lr0``, ``freeze``…). With ``resume=True`` an existing ``run_dir`` continues
    from its ``last.pt`` with its recorded recipe (``data``, ``start_from``, ``recipe`` and
    ``overrides`` are then ignored). ``on_start(epochs_done, epochs)`` is called once the child
    process runs, ``on_progress`` after every finished epoch. ``job`` receives the
    :class:`RetrainJob` before it starts, so a caller can keep a handle to
    :meth:`RetrainJob.cancel`. ``run_dir`` and ``data`` may be storage URLs (see
    :class:`RetrainJob`).
    """
    output = os.fspath(run_dir) if storage.is_url(run_dir) else None
    run_path = run_scratch(output) if output else Path(run_dir)
    fetched = bool(output and resume and fetch_run(output, run_path))
    if resume and (run_path / "recipe.json").exists():
        rj = RetrainJob(None, run_dir, None, time_limit=time_limit, resume=True, fetched=fetched)
    else:
        r = RECIPES[recipe] if isinstance(recipe, str) else recipe
        weights, parent = resolve_start(start_from, registry)
        fields_ = dict(overrides or {})
        if "imgsz" not in fields_ and "card" in parent:
            fields_["imgsz"] = parent["card"]["input_size"]
        known = {k: v for k, v in fields_.items() if k in Recipe.__dataclass_fields__ and k != "extra"}
        extra = {**r.extra, **{k: v for k, v in fields_.items() if k not in known}}
        r = replace(r, **known, model=weights, extra=extra)
        rj = RetrainJob(
            data,
            run_dir,
            r,
            metadata={"parent": parent},
            time_limit=time_limit,
            resume=resume,
            fetched=fetched,
        )
    tracker = _training_tracker(run_path, resume)
    rj.extra_env = tracker.child_env()
    if job is not None:
        job(rj)
    try:
        result = rj.run(on_progress, on_start)
    except BaseException:
        tracker.end("KILLED")
        raise
    _log_training(tracker, result)
    return result


def _training_tracker(run_path: Path, resume: bool) -> Any:
    """The MLflow run of a training (the recorded one when resuming), or a no-op tracker."""
    from inkloop.lifecycle.tracking import RUN_FILE, resume_run, start_run

    if resume and (run_path / RUN_FILE).is_file():
        tracker = resume_run(run_path)
        if tracker.active:
            return tracker
    return start_run("train", run_dir=run_path, run_name=run_path.name)


def _log_training(tracker: Any, result: RetrainResult) -> None:
    """Recipe, seed, data version and manifest, starting weights, per-epoch metrics (when ultralytics'
    own callback did not log them), the run's files and how it ended."""
    if not tracker.active:
        return
    run_dir = result.run_dir
    record_path = run_dir / "recipe.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    recipe_fields = {k: record.get(k) for k in Recipe.__dataclass_fields__ if k != "extra"}
    params = {
        "recipe": recipe_fields,
        "train": record.get("extra") or {},
        "seed": record.get("seed"),
        "data_version": record.get("data_version"),
        "init_weights": {k: v for k, v in (record.get("init_weights") or {}).items() if k != "file"},
        "parent": {
            k: v for k, v in (record.get("parent") or {}).items() if k in ("ref", "model_version", "sha256")
        },
    }
    params["recipe"].pop("seed", None)
    tracker.log_params(params)
    tracker.set_tags(
        {
            "inkloop.status": result.status,
            "inkloop.data_version": result.data_version or "",
            "inkloop.run_dir": result.output or str(run_dir),
        }
    )
    for name in ("recipe.json", "data_manifest.json", "results.csv", LOG_FILE, STATUS_FILE):
        tracker.log_artifact(run_dir / name, "run")
    try:
        has_epochs = bool(tracker.client.get_metric_history(tracker.run_id, "metrics/mAP50B"))
    except Exception:
        has_epochs = False
    if not has_epochs:  # ultralytics' callback was off (settings mlflow=False, or under pytest)
        results = run_dir / "results.csv"
        if results.is_file():
            with open(results, newline="") as f:
                for row in csv.DictReader(f):
                    row = {k.strip(): v for k, v in row.items() if k}
                    try:
                        step = int(float(row.pop("epoch")))
                        values = {k: float(v) for k, v in row.items() if v not in (None, "")}
                    except (KeyError, ValueError):
                        continue
                    tracker.log_metrics(values, step=step)
    tracker.log_metrics({"epochs_done": result.epochs_done, "train_seconds": result.seconds})
    tracker.end({"finished": "FINISHED", "failed": "FAILED"}.get(result.status, "KILLED"))

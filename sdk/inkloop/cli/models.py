"""``inkloop train``, ``inkloop export`` and ``inkloop models list/show/promote/rollback``.

The model lifecycle from the command line; each command is a thin shell over one SDK function
(:func:`inkloop.lifecycle.retrain.retrain`, :func:`inkloop.lifecycle.promotion.export_candidate`,
:func:`inkloop.lifecycle.gate.promote`, :class:`inkloop.models.registry.Registry`). ``inkloop.cli``
only registers them.

Every command takes ``--json``: stdout then carries one JSON document (the summary), and people's
output (progress bars, tables) goes to stderr.

Exit codes (extend those of ``inkloop.cli``):

- 0: done (trained to the end, exported, promoted, listed…);
- 1: unexpected error, or the training process failed (the log's tail is shown);
- 2: usage error, or a dataset that cannot be used (missing, a test split leaking into train/val);
- 4: model error (missing, corrupt — checksum mismatch —, unloadable model or registry entry);
- 5: the gate refused the candidate; production is unchanged (the reasons are printed and stored
  as ``gate.json`` beside the candidate);
- 6: training stopped before its last epoch (time limit, SIGTERM, cancel); the run is resumable
  with ``inkloop train --resume --run-dir <same folder>``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from inkloop.cli.common import ExitCode, JsonOpt, QuietOpt, count_progress, fail, fail_for, parse_settings
from inkloop.cli.console import make_console as _console

if TYPE_CHECKING:  # the registry modules load on first use, not when the CLI starts
    from inkloop.models.registry import ModelRegistry

RegistryOpt = Annotated[
    str | None,
    typer.Option(
        "--registry",
        help="Registry URL or folder (default: $INKLOOP_REGISTRY or ~/.local/share/inkloop/registry).",
    ),
]

models_app = typer.Typer(
    name="models",
    help="List and inspect models in the registry; promote a candidate (gated) or roll an alias back.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def parse_duration(text: str | None) -> float | None:
    """``90``, ``90s``, ``45m``, ``2h``, ``1h30m`` → seconds (None stays None)."""
    if text is None or not text.strip():
        return None
    s = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return float(s)
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", s)
    if not parts or "".join(n + u for n, u in parts) != s:
        raise typer.BadParameter(f"cannot read {text!r} as a duration (e.g. 3600, 90m, 2h, 1h30m)")
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


@contextlib.contextmanager
def _stdout_to_stderr(active: bool) -> Iterator[None]:
    """Send everything written to file descriptor 1 to stderr while the work runs.

    ultralytics' logger and onnxruntime print to stdout through handles taken at import time
    (and C code), which ``contextlib.redirect_stdout`` cannot reach; with ``--json`` stdout must
    carry the JSON document only.
    """
    if not active:
        yield
        return
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no real stdout (embedded use): nothing to protect
        yield
        return
    try:
        os.dup2(2, 1)
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _emit(json_out: bool, payload: dict[str, Any]) -> None:
    if json_out:
        typer.echo(json.dumps(payload, indent=2, ensure_ascii=False, default=str))


# ------------------------------------------------------------------------------------------ train


def train_command(
    run_dir: Annotated[
        str,
        typer.Option(
            "--run-dir",
            help="Folder of this training run (created; reused with --resume); a path or a storage URL "
            "(s3://…: trained in local scratch, uploaded when it ends).",
        ),
    ],
    data: Annotated[
        str | None,
        typer.Option(
            help="Curated YOLO dataset (folder or data.yaml; old plus new pages). "
            "Its test split is never trained on."
        ),
    ] = None,
    start_from: Annotated[
        str,
        typer.Option(
            "--from",
            help="Starting weights: registry://name@production, 'bundled', a .pt, or an architecture .yaml.",
        ),
    ] = "registry://signature-detector@production",
    registry: RegistryOpt = None,
    recipe: Annotated[
        str, typer.Option(help="Named recipe (inkloop.lifecycle.training.RECIPES).")
    ] = "finetune-v1",
    recipe_file: Annotated[
        Path | None,
        typer.Option(
            "--recipe-file",
            help="A recipe JSON (best-recipe.json from `inkloop tune`, or a run's recipe.json); "
            "overrides --recipe.",
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (default: the recipe's).")] = None,
    imgsz: Annotated[
        int | None, typer.Option(help="Training input size (default: the parent model's).")
    ] = None,
    batch: Annotated[int | None, typer.Option(help="Batch size (default: the recipe's).")] = None,
    seed: Annotated[
        int | None, typer.Option(help="Random seed (default: the recipe's; recorded either way).")
    ] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", help="Extra ultralytics/recipe setting KEY=VALUE (repeatable)."),
    ] = None,
    time_limit: Annotated[
        str | None, typer.Option(help="Stop after this long (e.g. 3600, 90m, 2h); resumable.")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --run-dir from its last.pt.")
    ] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Fine-tune a model on curated data in a child process, with progress, a time limit and resume."""

    from inkloop.evaluation.evaluator import DatasetError
    from inkloop.lifecycle.retrain import RetrainError, TrainProgress, retrain
    from inkloop.lifecycle.training import RECIPES, DataLeakError
    from inkloop.models.references import ModelError
    from inkloop.storage import StorageError

    console = _console(json_out)
    chosen: Any = recipe
    if recipe_file is not None:
        from inkloop.lifecycle.training import recipe_from_record

        try:
            chosen = recipe_from_record(json.loads(recipe_file.read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise typer.BadParameter(f"--recipe-file {recipe_file}: not a recipe ({exc})") from None
    elif recipe not in RECIPES:
        raise typer.BadParameter(f"unknown recipe {recipe!r}; choose from {', '.join(sorted(RECIPES))}")
    if data is None and not resume:
        raise typer.BadParameter("--data is required (unless --resume)")
    overrides = parse_settings(sets or [])
    for key, value in (("epochs", epochs), ("imgsz", imgsz), ("batch", batch), ("seed", seed)):
        if value is not None:
            overrides[key] = value
    limit = parse_duration(time_limit)

    progress = count_progress(console, "{task.fields[info]}", quiet=quiet)
    task = progress.add_task("epochs", total=None, info="starting…")

    def on_start(done: int, total: int) -> None:
        # Shown only once the training process runs, so a refusal is not preceded by a bar.
        progress.update(task, total=total, completed=done)
        progress.start()

    def on_progress(p: TrainProgress) -> None:
        m50 = p.metrics.get("metrics/mAP50(B)")
        info = f"val mAP50 {m50:.3f}" if m50 is not None else ""
        progress.update(task, total=p.epochs, completed=p.epoch, info=info)

    try:
        with _stdout_to_stderr(json_out):
            result = retrain(
                data,
                run_dir,
                start_from=start_from,
                registry=registry,
                recipe=chosen,
                overrides=overrides or None,
                time_limit=limit,
                resume=resume,
                on_progress=on_progress,
                on_start=on_start,
            )
    except (DataLeakError, DatasetError, RetrainError, FileNotFoundError) as exc:
        raise fail(console, "cannot train", exc, ExitCode.USAGE) from None
    except StorageError as exc:
        raise fail(console, "storage error", exc, ExitCode.ERROR) from None
    except ModelError as exc:
        raise fail(console, "model error", exc, ExitCode.MODEL) from None
    finally:
        if progress.live.is_started:
            progress.stop()

    summary = result.to_dict()
    _emit(json_out, summary)
    if not json_out:
        _table(
            console,
            "inkloop train",
            {
                k: summary[k]
                for k in (
                    "status",
                    "epochs_done",
                    "epochs",
                    "seconds",
                    "best",
                    "last",
                    "data_version",
                    "run_dir",
                    "message",
                )
            },
        )
    if result.status == "failed":
        if json_out:
            console.print(f"[red]training failed:[/red] {result.message}")
        raise typer.Exit(ExitCode.ERROR)
    raise typer.Exit(ExitCode.OK if result.ok else ExitCode.INCOMPLETE)


# ----------------------------------------------------------------------------------------- export


def export_command(
    source: Annotated[
        str, typer.Argument(help="A training run folder (weights/best.pt) or a .pt checkpoint.")
    ],
    out: Annotated[
        str,
        typer.Option(
            "--out", "-o", help="Folder for model.onnx, variants and card.json (a path or a storage URL)."
        ),
    ],
    data: Annotated[
        str | None,
        typer.Option(
            help="YOLO dataset: its test split measures parity and mAP, its train/val pages calibrate INT8."
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Model name (default: the parent model's).")] = None,
    registry: RegistryOpt = None,
    register: Annotated[
        bool, typer.Option("--register/--no-register", help="Register the export as a new version.")
    ] = True,
    alias: Annotated[str, typer.Option(help="Alias to point at the new version.")] = "candidate",
    imgsz: Annotated[int | None, typer.Option(help="Input size (default: the parent model's).")] = None,
    formats: Annotated[
        str, typer.Option(help="Comma-separated variants: int8, openvino, tensorrt ('' for none).")
    ] = "int8,openvino,tensorrt",
    max_delta_map50: Annotated[
        float, typer.Option(help="Parity: largest |ΔmAP50| for a variant to be offered.")
    ] = 0.01,
    min_box_iou: Annotated[
        float, typer.Option(help="Parity: smallest mean box IoU for a variant to be offered.")
    ] = 0.9,
    calibration_images: Annotated[int, typer.Option(help="Pages for INT8 calibration.")] = 64,
    parent_weight: Annotated[
        float,
        typer.Option(
            help="First average the checkpoint with the parent it was fine-tuned from, this share of "
            "the parent (0.5: how signature-detector@4 kept the scans; 0: off)."
        ),
    ] = 0.0,
    triton_repo: Annotated[
        Path | None,
        typer.Option(
            "--triton-repo",
            help="Also write a model repository for a stock Triton (onnxruntime backend) here (for a "
            "registered version later: `inkloop serve --model registry://NAME@ALIAS --write-repo DIR`).",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Export ONNX (+ INT8 / OpenVINO / TensorRT where possible) with parity checks; register a candidate."""
    from inkloop.evaluation.evaluator import DatasetError
    from inkloop.lifecycle.promotion import export_candidate
    from inkloop.lifecycle.variants import FORMATS, ParityTolerance
    from inkloop.models.references import ModelError
    from inkloop.storage import StorageError

    console = _console(json_out)
    wanted = tuple(f.strip() for f in formats.split(",") if f.strip())
    bad = [f for f in wanted if f not in FORMATS]
    if bad:
        raise typer.BadParameter(f"unknown format(s) {', '.join(bad)}; choose from {', '.join(FORMATS)}")
    tol = ParityTolerance(max_abs_delta_map50=max_delta_map50, min_box_iou=min_box_iou)
    try:
        with console.status("exporting and checking variants…"), _stdout_to_stderr(json_out):
            result = export_candidate(
                source,
                out,
                data=data,
                name=name,
                registry=registry,
                register=register,
                alias=alias or None,
                imgsz=imgsz,
                formats=wanted,
                tolerance=tol,
                calibration_images=calibration_images,
                parent_weight=parent_weight,
            )
    except (DatasetError, ValueError) as exc:
        raise fail(console, "cannot export", exc, ExitCode.USAGE) from None
    except ModelError as exc:
        raise fail(console, "model error", exc, ExitCode.MODEL) from None
    except StorageError as exc:
        raise fail(console, "storage error", exc, ExitCode.ERROR) from None
    summary = result.to_dict()
    if triton_repo is not None:
        from inkloop.models.resolve import resolve_model
        from inkloop.serving.repository import write_triton_repository

        try:
            exported = resolve_model(str(result.out_dir / "model.onnx"))  # the version just registered
            folder = write_triton_repository(exported, triton_repo)
        except ModelError as exc:
            raise fail(console, "model error", exc, ExitCode.MODEL) from None
        summary["triton_repo"] = str(folder)
    _emit(json_out, summary)
    if not json_out:
        from rich.table import Table

        if triton_repo is not None:
            console.print(
                f"Triton model repository: {summary['triton_repo']} (config.pbtxt, 1/model.onnx, card.json)"
            )
        t = Table(title=f"inkloop export — {result.model_ref}")
        for col in ("variant", "status", "offered", "ΔmAP50", "box IoU", "ms/page", "note"):
            t.add_column(col)
        for k, v in summary["variants"].items():
            p = v.get("parity") or {}
            t.add_row(
                k,
                str(v.get("status")),
                str(v.get("offered")),
                str(p.get("delta_map50", "")),
                str(p.get("mean_iou", "")),
                str(p.get("latency_ms", "")),
                str(v.get("reason") or v.get("registry_version") or ""),
            )
        console.print(t)
    raise typer.Exit(ExitCode.OK)


# ---------------------------------------------------------------------------------------- promote


def promote_command(
    name: Annotated[str, typer.Argument(help="Model name in the registry.")],
    data: Annotated[
        str | None, typer.Option(help="YOLO dataset with the frozen test split (required unless --force).")
    ] = None,
    candidate: Annotated[str, typer.Option(help="Version or alias to promote.")] = "candidate",
    alias: Annotated[str, typer.Option(help="Alias to move.")] = "production",
    registry: RegistryOpt = None,
    split: Annotated[str, typer.Option(help="The frozen test split's name in the dataset.")] = "test",
    force: Annotated[
        bool, typer.Option("--force", help="Skip the gate (checksums are still verified).")
    ] = False,
    margin: Annotated[float, typer.Option(help="Required mAP50 gain over production.")] = 0.005,
    recall_tolerance: Annotated[
        float, typer.Option(help="Largest allowed recall drop at the operating threshold.")
    ] = 0.01,
    domain_tolerance: Annotated[
        float,
        typer.Option(
            help="Largest allowed drop of mAP50 or recall on any one domain (scan, digital, … as the "
            "test split's domains.json records them), however much the total gains (negative: not checked)."
        ),
    ] = 0.02,
    max_latency_ratio: Annotated[
        float, typer.Option(help="Largest candidate/production latency ratio (0: no limit).")
    ] = 2.0,
    json_out: JsonOpt = False,
) -> None:
    """Gate the candidate against production on the frozen test split; promote only if it passes."""
    from rich.markup import escape

    from inkloop.evaluation.evaluator import DatasetError
    from inkloop.lifecycle.gate import GatePolicy, promote
    from inkloop.models.references import ModelError

    console = _console(json_out)
    if data is None and not force:
        raise typer.BadParameter("--data (the dataset with the frozen test split) is required unless --force")
    policy = GatePolicy(
        min_map50_gain=margin,
        max_recall_drop=recall_tolerance,
        max_domain_regression=domain_tolerance if domain_tolerance >= 0 else None,
        max_latency_ratio=max_latency_ratio or None,
    )
    try:
        with console.status(f"gating {name}@{candidate} against {alias}…"), _stdout_to_stderr(json_out):
            decision = promote(
                name,
                data,
                registry=registry,
                candidate=candidate,
                alias=alias,
                split=split,
                policy=policy,
                force=force,
            )
    except (DatasetError, ModelError) as exc:
        raise fail_for(console, exc) from None
    d = decision.to_dict()
    _emit(json_out, d)
    if not json_out:
        verdict = "[green]promoted[/green]" if decision.promote else "[red]refused[/red]"
        console.print(f"{verdict} {name}@{decision.candidate} (production was {decision.production})")
        for reason in decision.reasons:
            console.print(f"  - {escape(reason)}")
        if decision.metrics.get("candidate"):
            rows: dict[str, Any] = {}
            for side in ("candidate", "production"):
                m = decision.metrics.get(side) or {}
                rows[side] = f"mAP50 {m.get('map50')}  recall {m.get('recall')}" if m else "—"
            per_domain = (decision.checks.get("domains") or {}).get("domains") or {}
            for dom, c in per_domain.items():
                rows[f"domain {dom} ({c['n_gt']} signatures)"] = (
                    f"mAP50 {c['map50']['candidate']:.4f} vs {c['map50']['production']:.4f}  "
                    f"recall {c['recall']['candidate']:.4f} vs {c['recall']['production']:.4f}"
                    + ("" if c["ok"] else "  REGRESSED")
                )
            rows["latency ratio"] = decision.latency.get("ratio")
            _table(console, "gate", rows)
    raise typer.Exit(ExitCode.OK if decision.promote else ExitCode.GATE_REFUSED)


# ----------------------------------------------------------------------------------------- models


def _registry(url: str | None) -> ModelRegistry:
    from inkloop.models.resolve import open_registry

    return open_registry(url)


def _table(console: Any, title: str, rows: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=title, show_header=False)
    for k, v in rows.items():
        t.add_row(escape(str(k)), escape("" if v is None else str(v)))
    console.print(t)


@models_app.command("list")
def models_list(registry: RegistryOpt = None, json_out: JsonOpt = False) -> None:
    """Models, their versions and aliases."""
    from inkloop.models.references import ModelError

    console = _console(json_out)
    try:
        reg = _registry(registry)
        out: dict[str, dict[str, Any]] = {
            n: {"versions": reg.list_versions(n), "aliases": reg.aliases(n)} for n in reg.list_models()
        }
    except ModelError as exc:
        raise fail(console, "model error", exc, ExitCode.MODEL) from None
    _emit(json_out, {"registry": reg.url, "models": out})
    if not json_out:
        from rich.table import Table

        t = Table(title=f"models in {reg.url}")
        for col in ("name", "versions", "aliases"):
            t.add_column(col)
        for n, info in out.items():
            t.add_row(
                n, ", ".join(info["versions"]), ", ".join(f"{a}→{v}" for a, v in info["aliases"].items())
            )
        console.print(t)
    raise typer.Exit(ExitCode.OK)


@models_app.command("show")
def models_show(
    ref: Annotated[str, typer.Argument(help="name, name@alias, name@v3 (or registry://name@tag).")],
    registry: RegistryOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """A version's card, the aliases pointing at it, and its last gate decision."""
    from inkloop.lifecycle.gate import read_decision
    from inkloop.models.references import ModelError
    from inkloop.models.registry import SCHEME, is_registry_ref
    from inkloop.models.resolve import open_registry_ref

    console = _console(json_out)
    try:
        reg, name, tag = open_registry_ref(ref if is_registry_ref(ref) else SCHEME + ref, registry)
        version = reg.resolve_version(name, tag)
        card = reg.show(name, version)
        payload: dict[str, Any] = {
            "name": name,
            "version": version,
            "aliases": [a for a, v in reg.aliases(name).items() if v == version],
            "card": card.to_dict(),
            "gate": read_decision(reg, name, version),
        }
    except ModelError as exc:
        raise fail(console, "model error", exc, ExitCode.MODEL) from None
    _emit(json_out, payload)
    if not json_out:
        variants = card.extra.get("variants") or {}
        gate = payload["gate"] or {}
        _table(
            console,
            f"{name}@{version}",
            {
                "aliases": ", ".join(payload["aliases"]) or "—",
                "input size / preprocessing": f"{card.input_size} / {card.preprocessing}",
                "thresholds (conf / iou)": f"{card.conf_threshold} / {card.iou_threshold}",
                "parent": card.parent_version,
                "data version": card.data_version,
                "metrics": json.dumps(card.metrics) if card.metrics else "—",
                "variants": ", ".join(
                    f"{k}: {'offered' if v.get('offered') else v.get('status')}" for k, v in variants.items()
                )
                or "—",
                "gate": ("promote" if gate.get("promote") else "refused")
                + f" ({'; '.join(gate.get('reasons', []))})"
                if gate
                else "—",
                "sha256": card.sha256,
            },
        )
    raise typer.Exit(ExitCode.OK)


@models_app.command("rollback")
def models_rollback(
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias: Annotated[str, typer.Option(help="Alias to move back.")] = "production",
    registry: RegistryOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Point an alias back at the version it pointed at before (checksum-verified)."""
    from inkloop.models.references import ModelError

    console = _console(json_out)
    try:
        reg = _registry(registry)
        before = reg.alias(name, alias)
        target = reg.rollback(name, alias)
    except ModelError as exc:
        raise fail(console, "model error", exc, ExitCode.MODEL) from None
    _emit(json_out, {"name": name, "alias": alias, "from": before, "to": target})
    if not json_out:
        console.print(f"{name}@{alias}: {before} → {target}")
    raise typer.Exit(ExitCode.OK)


# ------------------------------------------------------------------------------------------ tune


def tune_command(
    data: Annotated[str, typer.Option(help="YOLO dataset (folder or data.yaml); test split unseen.")],
    out: Annotated[Path, typer.Option(help="Sweep folder: trials, study.db, best-recipe.json.")],
    recipe: Annotated[str, typer.Option(help="Base recipe whose knobs are tuned.")] = "finetune-v1",
    model: Annotated[str | None, typer.Option(help="Starting .pt or .yaml (default: the recipe's).")] = None,
    trials: Annotated[int, typer.Option(help="Trials to finish (complete or pruned).")] = 10,
    objective: Annotated[str, typer.Option(help="f1 (F1 at --conf on val) or map50 (mAP50 on val).")] = "f1",
    imgsz: Annotated[list[int] | None, typer.Option(help="Input sizes to try (repeatable).")] = None,
    epochs: Annotated[str | None, typer.Option(help="Epoch budget MIN:MAX or N.")] = None,
    conf: Annotated[float, typer.Option(help="Operating threshold of the F1 objective.")] = 0.25,
    study: Annotated[str, typer.Option(help="Study name in the storage.")] = "inkloop-tune",
    storage: Annotated[str | None, typer.Option(help="Optuna RDB URL (default <out>/study.db).")] = None,
    seed: Annotated[int, typer.Option(help="Sampler seed.")] = 0,
    heartbeat: Annotated[int, typer.Option(help="Heartbeat, seconds; 3x silent: trial retried.")] = 30,
    baseline: Annotated[
        bool, typer.Option(help="Also train the untuned recipe with the same budget, for comparison.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Optuna sweep over a recipe's knobs (lr0, box, cls, optimizer, dropout, imgsz, epochs); resumable."""
    console = _console(json_out)
    from inkloop.lifecycle.training import RECIPES
    from inkloop.lifecycle.tuning import OBJECTIVES, tune

    if recipe not in RECIPES:
        raise typer.BadParameter(f"unknown recipe {recipe!r}; choose from {', '.join(sorted(RECIPES))}")
    if objective not in OBJECTIVES:
        raise typer.BadParameter(f"--objective must be one of {', '.join(OBJECTIVES)}")
    base = RECIPES[recipe]
    lo, hi = max(1, base.epochs // 2), base.epochs
    if epochs:
        first, _, last = epochs.partition(":")
        if not (first.isdigit() and (last or first).isdigit()):
            raise typer.BadParameter(f"--epochs expects MIN:MAX or N, got {epochs!r}")
        lo, hi = int(first), max(int(first), int(last or first))

    def on_trial(number: int, params: dict[str, Any]) -> None:
        console.print(f"trial {number}: {params}")

    with _stdout_to_stderr(json_out):
        summary = tune(
            data,
            out,
            recipe=recipe,
            model=model,
            study_name=study,
            storage=storage,
            n_trials=trials,
            objective=objective,
            imgsz=list(imgsz) if imgsz else None,
            epochs=(lo, hi),
            conf=conf,
            seed=seed,
            heartbeat_interval=heartbeat,
            grace_period=3 * heartbeat,
            on_trial=on_trial,
            baseline=baseline,
        )
    _emit(json_out, summary)
    if not json_out:
        for row in summary["trials"]:
            console.print(f"  #{row['number']:>3} {row['state']:<8} {row['value']}  {row['params']}")
        best = summary["best"]
        if best:
            console.print(f"best: trial {best['number']} = {best['value']:.4f} → {best['recipe_file']}")
        if summary.get("baseline"):
            console.print(f"baseline (untuned {recipe}, same budget): {summary['baseline']['value']:.4f}")
    raise typer.Exit(ExitCode.OK if summary["best"] else ExitCode.INCOMPLETE)


def sync_runs_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder holding mlflow-offline/ (server was down).")],
    json_out: JsonOpt = False,
) -> None:
    """Copy MLflow runs kept locally while the tracking server was down to $MLFLOW_TRACKING_URI."""
    from inkloop.lifecycle.tracking import sync_offline

    console = _console(json_out)
    try:
        with _stdout_to_stderr(json_out):  # mlflow prints run links on stdout
            ids = sync_offline(run_dir)
    except (RuntimeError, FileNotFoundError) as exc:
        raise fail(console, "cannot sync", exc, ExitCode.USAGE) from None
    _emit(json_out, {"run_dir": str(run_dir), "synced_runs": ids})
    if not json_out:
        console.print(f"synced {len(ids)} run(s): {', '.join(ids)}")

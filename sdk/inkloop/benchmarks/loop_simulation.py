"""Loop simulation: does reviewing the pages routing picks improve the model faster than random picks?

A team deciding whether to trust inkloop's routing wants the answer on *their* data before
reviewers spend weeks on it. With a labelled YOLO dataset the loop can be replayed offline, the
labels standing in for reviewers:

1. the dataset's training pages are shuffled (``seed``) into a *seed set* (``seed_fraction``; the
   labels a team starts with) and ``rounds`` equal *arrival batches* (new documents of a week);
2. round 0 trains a model on the seed set (from an architecture, or fine-tuning ``start_model``);
3. every round, each strategy's current model sees the round's arrivals; ``budget`` of them are
   "reviewed" — the pages inkloop's routing ranks most uncertain (the real detection pipeline with
   routing, :func:`inkloop.routing.route_results`) or the same number drawn at random — and their
   labels join that strategy's training set; the model is fine-tuned on it from its previous
   weights (``finetune-v1``), exported to ONNX, and scored on the held-out split
   (:func:`inkloop.evaluation.evaluator.evaluate`: mAP50, and P/R at the operating threshold).

Both strategies start from the same round-0 model and see the same arrivals with the same review
budget; only the choice of pages differs. The last checkpoint of every run is used (never the
epoch that scored best on the held-out split: that would select on the split being reported).
Every finished step is written to ``simulation.json`` and reused by a rerun with the same work
folder, so a long simulation survives interruption.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from inkloop.benchmarks.workfolder import ProgressFn, WorkFolderRun

if TYPE_CHECKING:
    from inkloop.evaluation.evaluator import EvalReport

log = logging.getLogger(__name__)

STRATEGIES = ("routing", "random")

# Progress events (:data:`~inkloop.benchmarks.workfolder.ProgressFn`): ("stage", {"strategy",
# "round", "what", ...}).


@dataclass(frozen=True)
class SimulationConfig:
    """What to replay; the defaults take about 35 minutes on a 2-core CPU for the shared dataset."""

    data: str
    workdir: str
    budget: float = 0.2
    rounds: int = 3
    seed_fraction: float = 0.2
    #: A ``.pt`` to fine-tune on the seed set, or an architecture yaml to train from scratch.
    start_model: str = "yolov8n.yaml"
    imgsz: int = 320
    seed_epochs: int = 40
    round_epochs: int = 10
    batch: int = 16
    train_split: str = "train"
    heldout_split: str = "val"
    seed: int = 0
    conf: float = 0.25  # the operating threshold written on every simulated model's card
    strategies: tuple[str, ...] = STRATEGIES
    time_limit: float | None = None  # per training run, seconds

    def __post_init__(self) -> None:
        if not 0 < self.budget <= 1:
            raise ValueError(f"budget must be in (0, 1], got {self.budget}")
        if not 0 < self.seed_fraction < 1:
            raise ValueError(f"seed_fraction must be in (0, 1), got {self.seed_fraction}")
        if self.rounds < 1:
            raise ValueError(f"rounds must be at least 1, got {self.rounds}")
        unknown = set(self.strategies) - set(STRATEGIES)
        if unknown:
            raise ValueError(f"unknown strategies {sorted(unknown)}; choose from {list(STRATEGIES)}")


@dataclass
class Step:
    """One model of the simulation: a strategy after a round (round 0 is shared by all)."""

    strategy: str
    round: int
    labeled_pages: int
    selected: list[str]
    map50: float
    map50_95: float
    precision: float
    recall: float
    train_seconds: float
    model: str
    errors_in_selected: int | None = None  # selected pages the model got wrong (missed/false box)


@dataclass
class SimulationReport:
    config: dict[str, Any]
    seed_pages: int
    arrivals_per_round: list[int]
    reviewed_per_round: list[int]
    heldout_pages: int
    steps: list[Step] = field(default_factory=list)
    seconds: float = 0.0

    def step(self, strategy: str, round_: int) -> Step | None:
        want = "seed" if round_ == 0 else strategy
        return next((s for s in self.steps if s.strategy == want and s.round == round_), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in asdict(self).items() if k != "steps"},
            "steps": [asdict(s) for s in self.steps],
        }

    def table(self) -> list[dict[str, Any]]:
        """One row per round: labelled pages and held-out mAP50/recall for each strategy."""
        rows = []
        for r in range(len(self.arrivals_per_round) + 1):
            row: dict[str, Any] = {"round": r}
            for strategy in self.config["strategies"]:
                s = self.step(strategy, r)
                if s is not None:
                    row[f"{strategy}_pages"] = s.labeled_pages
                    row[f"{strategy}_map50"] = round(s.map50, 4)
                    row[f"{strategy}_recall"] = round(s.recall, 4)
                    if s.errors_in_selected is not None:
                        row[f"{strategy}_errors_in_selected"] = s.errors_in_selected
            rows.append(row)
        return rows

    def markdown(self) -> str:
        strategies = list(self.config["strategies"])
        head = ["round", "labelled pages"]
        for s in strategies:
            head += [f"mAP50 {s}", f"recall {s}"]
        if "routing" in strategies:
            head.append("wrong pages picked (routing / random)")
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in self.table():
            pages = row.get(f"{strategies[0]}_pages", "")
            cells = [str(row["round"]), str(pages)]
            for s in strategies:
                cells += [
                    f"{row.get(f'{s}_map50', float('nan')):.3f}",
                    f"{row.get(f'{s}_recall', float('nan')):.3f}",
                ]
            if "routing" in strategies:
                picked = [row.get(f"{s}_errors_in_selected") for s in ("routing", "random")]
                cells.append(" / ".join("–" if p is None else str(p) for p in picked))
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------ data


def plan(
    n_train: int, seed_fraction: float, rounds: int, budget: float, seed: int
) -> tuple[list[int], list[list[int]], list[int]]:
    """Shuffle train indices into the seed set and ``rounds`` arrival batches; reviews per round.

    The review count per round is ``ceil(budget * arrivals)`` (as routing's budget rounds), so a
    small round still reviews a page.
    """
    order = np.random.default_rng(seed).permutation(n_train).tolist()
    n_seed = max(1, round(seed_fraction * n_train))
    if n_train - n_seed < rounds:
        raise ValueError(f"{n_train} training pages cannot fill a seed set of {n_seed} and {rounds} rounds")
    seed_idx, rest = order[:n_seed], order[n_seed:]
    arrivals = [part.tolist() for part in np.array_split(np.array(rest, dtype=int), rounds)]
    reviewed = [max(1, int(np.ceil(budget * len(a) - 1e-9))) for a in arrivals]
    return seed_idx, arrivals, reviewed


def write_subset(dest: Path, train: Sequence[Any], heldout: Sequence[Any], names: Sequence[str]) -> Path:
    """A YOLO dataset folder of symlinks: ``train`` samples as its train split, ``heldout`` as val.

    Links keep a simulation's many training sets free (the images are never copied); file names
    are prefixed with their index so pages with equal names from different folders stay apart.
    """
    for split, samples in (("train", train), ("val", heldout)):
        for kind in ("images", "labels"):
            d = dest / kind / split
            d.mkdir(parents=True, exist_ok=True)
            for old in d.iterdir():
                old.unlink()
        for i, s in enumerate(samples):
            stem = f"{i:05d}-{s.image.stem}"
            os.symlink(s.image.resolve(), dest / "images" / split / f"{stem}{s.image.suffix}")
            label = dest / "labels" / split / f"{stem}.txt"
            if s.label is not None and Path(s.label).is_file():
                os.symlink(Path(s.label).resolve(), label)
            else:
                label.write_text("")  # a page without signatures is a labelled negative
    import yaml

    cfg = {
        "path": str(dest.resolve()),
        "train": "images/train",
        "val": "images/val",
        "names": dict(enumerate(names)),
    }
    (dest / "data.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return dest


# ---------------------------------------------------------------------------------- the loop


class LoopSimulation(WorkFolderRun):
    """Runs :class:`SimulationConfig`; :meth:`run` returns the :class:`SimulationReport`."""

    def __init__(self, config: SimulationConfig, progress: ProgressFn | None = None) -> None:
        from inkloop.evaluation.evaluator import load_dataset

        super().__init__(config.workdir, progress)
        self.config = config
        self.train_set = load_dataset(config.data, config.train_split)
        self.heldout = load_dataset(config.data, config.heldout_split)
        if not len(self.heldout):
            raise ValueError(f"{config.data}: the held-out split {config.heldout_split!r} has no images")
        self.names = self.train_set.names or self.heldout.names or ["signature"]
        self.seed_idx, self.arrivals, self.reviewed = plan(
            len(self.train_set), config.seed_fraction, config.rounds, config.budget, config.seed
        )

    # ------------------------------------------------------------------ helpers

    def _load(self) -> SimulationReport:
        fresh = SimulationReport(
            config=self._config_dict(),
            seed_pages=len(self.seed_idx),
            arrivals_per_round=[len(a) for a in self.arrivals],
            reviewed_per_round=list(self.reviewed),
            heldout_pages=len(self.heldout),
        )
        old = self.previous_report(fresh.config, "a simulation")
        if old is None:
            return fresh
        fresh.steps = [Step(**s) for s in old.get("steps", [])]
        fresh.seconds = float(old.get("seconds", 0.0))
        return fresh

    def _config_dict(self) -> dict[str, Any]:
        d = asdict(self.config)
        d.pop("workdir")
        d.pop("time_limit")
        d["strategies"] = list(self.config.strategies)
        return d

    def _train(
        self, start: str, samples: Sequence[Any], tag: str, epochs: int, scratch: bool
    ) -> tuple[Path, float]:
        """Train on ``samples`` from ``start``; returns the last checkpoint and the seconds spent."""
        from inkloop.lifecycle.retrain import retrain
        from inkloop.lifecycle.training import RECIPES

        c = self.config
        data = write_subset(self.work / "data" / tag, samples, self.heldout.samples, self.names)
        base = RECIPES["bundled-v1" if scratch else "finetune-v1"]
        recipe = replace(
            base,
            name=f"sim-{tag}",
            epochs=epochs,
            imgsz=c.imgsz,
            batch=c.batch,
            seed=c.seed,
            patience=epochs + 1,
            extra={
                **base.extra,
                # no per-epoch validation (time; and the last checkpoint is used anyway)
                "val": False,
                "plots": False,
                "save_period": -1,
                "close_mosaic": max(1, min(int(base.extra.get("close_mosaic", 5)), epochs // 4)),
            },
        )
        run_dir = self.work / "runs" / tag
        last = run_dir / "weights" / "last.pt"
        done = run_dir / "inkloop-status.json"
        if last.is_file() and done.is_file() and json.loads(done.read_text()).get("state") == "finished":
            return last, 0.0
        resume = last.is_file()
        t0 = time.monotonic()

        def on_progress(p: Any) -> None:
            self.progress("epoch", {"tag": tag, "epoch": p.epoch, "epochs": p.epochs})

        self.progress("train", {"tag": tag, "pages": len(samples), "epochs": epochs})
        result = retrain(
            str(data),
            run_dir,
            start_from=start,
            recipe=recipe,
            time_limit=c.time_limit,
            resume=resume,
            on_progress=on_progress,
        )
        if not result.ok or not last.is_file():
            raise RuntimeError(f"simulation training {tag} did not finish: {result.state}: {result.message}")
        return last, time.monotonic() - t0

    def _export(self, weights: Path, tag: str) -> Path:
        from inkloop.lifecycle.export import export_onnx

        out = self.work / "models" / tag
        onnx = out / "model.onnx"
        if onnx.is_file() and (out / "card.json").is_file():
            return onnx
        self.progress("export", {"tag": tag})
        export_onnx(
            weights,
            out,
            imgsz=self.config.imgsz,
            name="loop-sim",
            version=tag,
            conf_threshold=self.config.conf,
            copy_pt=False,
        )
        return onnx

    def _evaluate(self, onnx: Path, tag: str) -> EvalReport:
        from inkloop.evaluation.evaluator import evaluate

        self.progress("evaluate", {"tag": tag, "pages": len(self.heldout)})
        return evaluate(str(onnx), self.config.data, self.config.heldout_split, plot=False)

    def _route(self, onnx: Path, pages: Sequence[Any], k: int, tag: str) -> tuple[list[Any], int]:
        """The ``k`` pages routing sends to review, through the real pipeline; and how many of
        all ``pages`` the model gets wrong among them (for the report)."""
        import tempfile

        from inkloop.api import DetectOptions, detect
        from inkloop.detection.results import read_results
        from inkloop.evaluation.routing_errors import page_has_error
        from inkloop.routing import RoutingConfig, route_results

        config = RoutingConfig(
            max_review_fraction=None, max_review_pages=k, review_min_uncertainty=0.0, audit_rate=0.0
        )
        self.progress("route", {"tag": tag, "pages": len(pages), "review": k})
        by_path = {str(s.image.resolve()): s for s in pages}
        with tempfile.TemporaryDirectory(dir=self.work) as tmp:
            detect(list(by_path), tmp, DetectOptions(model=str(onnx)), routing=config, verdict=False)
            results = read_results(tmp)
        missing = set(by_path) - {str(Path(r.source).resolve()) for r in results}
        if missing:
            raise RuntimeError(f"routing lost {len(missing)} page(s), e.g. {sorted(missing)[0]}")
        routed = route_results(results, config)
        chosen = [by_path[str(Path(r.source).resolve())] for r in routed if r.decision == "review"]
        wrong = sum(
            page_has_error(
                [d.xyxy for d in r.detections], by_path[str(Path(r.source).resolve())].boxes.tolist()
            )
            for r in routed
            if r.decision == "review"
        )
        return chosen, wrong

    def _wrong_pages(self, onnx: Path, pages: Sequence[Any]) -> int:
        """How many of ``pages`` the model gets wrong at its operating threshold."""
        from inkloop.detection.detector import Detector
        from inkloop.evaluation.evaluator import load_rgb
        from inkloop.evaluation.routing_errors import page_has_error
        from inkloop.models.references import load_local

        det = Detector(load_local(onnx))
        wrong = 0
        for s in pages:
            dets = det.run([det.prepare(load_rgb(s.image))])[0]
            wrong += page_has_error([d.xyxy for d in dets], s.boxes.tolist())
        return wrong

    def _step(
        self,
        strategy: str,
        round_: int,
        labeled: Sequence[Any],
        selected: Sequence[Any],
        start: str,
        epochs: int,
        scratch: bool,
        wrong: int | None,
    ) -> Step:
        tag = "seed" if round_ == 0 else f"{strategy}-r{round_}"
        weights, seconds = self._train(start, labeled, tag, epochs, scratch)
        onnx = self._export(weights, tag)
        rep = self._evaluate(onnx, tag)
        return Step(
            strategy=strategy,
            round=round_,
            labeled_pages=len(labeled),
            selected=[str(s.image) for s in selected],
            map50=float(rep.map50),
            map50_95=float(rep.map50_95),
            precision=float(rep.precision),
            recall=float(rep.recall),
            train_seconds=round(seconds, 1),
            model=str(onnx),
            errors_in_selected=wrong,
        )

    # ------------------------------------------------------------------ run

    def run(self) -> SimulationReport:
        c = self.config
        t0 = time.monotonic()
        report = self._load()
        samples = self.train_set.samples
        seed_samples = [samples[i] for i in self.seed_idx]
        seed = report.step("seed", 0)
        if seed is None:
            scratch = Path(c.start_model).suffix in (".yaml", ".yml")
            seed = self._step(
                "seed", 0, seed_samples, seed_samples, c.start_model, c.seed_epochs, scratch, None
            )
            report.steps.append(seed)
            self.save_report(report.to_dict())
        self.progress("done", {"tag": "seed", "map50": seed.map50})
        for strategy in c.strategies:
            labeled = list(seed_samples)
            model, weights = Path(seed.model), self.work / "runs" / "seed" / "weights" / "last.pt"
            rng = np.random.default_rng([c.seed, 1])  # the same random draws for every rerun
            for r, (arrival_idx, k) in enumerate(zip(self.arrivals, self.reviewed, strict=True), 1):
                arrivals = [samples[i] for i in arrival_idx]
                done = report.step(strategy, r)
                if strategy == "random":
                    picked = sorted(rng.choice(len(arrivals), size=k, replace=False).tolist())
                    chosen = [arrivals[i] for i in picked]
                if done is None:
                    if strategy == "routing":
                        chosen, wrong = self._route(model, arrivals, k, f"{strategy}-r{r}")
                    else:
                        wrong = self._wrong_pages(model, chosen)
                    labeled_now = labeled + chosen
                    done = self._step(
                        strategy, r, labeled_now, chosen, str(weights), c.round_epochs, False, wrong
                    )
                    report.steps.append(done)
                    report.seconds = round(report.seconds + time.monotonic() - t0, 1)
                    t0 = time.monotonic()
                    self.save_report(report.to_dict())
                else:
                    by_name = {str(s.image): s for s in arrivals}
                    chosen = [by_name[p] for p in done.selected]
                labeled += chosen
                model = Path(done.model)
                weights = self.work / "runs" / f"{strategy}-r{r}" / "weights" / "last.pt"
                self.progress("done", {"tag": f"{strategy}-r{r}", "map50": done.map50})
        report.seconds = round(report.seconds + time.monotonic() - t0, 1)
        self.save_report(report.to_dict())
        return report


def simulate(config: SimulationConfig, progress: ProgressFn | None = None) -> SimulationReport:
    """Replay the review loop on a labelled dataset; see the module docstring."""
    return LoopSimulation(config, progress).run()

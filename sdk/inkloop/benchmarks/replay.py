"""The loop replayed from production: does routed review close a domain gap faster than random review?

The question a team asks before trusting routing with its reviewers' time is not "can routing
help a model trained from scratch" but "our production model meets a new kind of document: which
pages should people look at?". This replay answers it offline, with labelled documents standing in
for the inbox and their labels standing in for reviewers:

1. **Start**: the production model (``bundled``, ``registry://name@production`` or a ``.pt``) is
   registered as ``v1`` and ``production`` in a registry of the strategy's own (one per strategy
   and seed, so promotions of one never leak into another).
2. **Stream**: new labelled *documents* as an inbox holds them (PDFs with text layer and fields
   from ``inkloop synth``, scanned images from a YOLO dataset), shuffled by the seed into
   ``rounds`` batches. Every strategy sees the same batches.
3. **Each round, per strategy**: the production model runs the real detection pipeline on the
   batch (rendering, TTA, text cues, the verdict stage and its places: :func:`inkloop.api.detect`);
   ``budget`` of the batch's pages are reviewed — the ones routing sends (``routing``), the same
   number drawn at random (``random``), or every page (``all``, the ceiling). The simulated
   reviewer answers with the label, written as Label Studio pull records
   (:class:`~inkloop.review.labelstudio.ReviewedPage`, ``reviews.jsonl``) and read back by the
   same functions a real pull goes through; the curation step turns them into
   :class:`~inkloop.curation.records.PageRecord` s (page images rendered for people, boxes
   rescaled to page pixels, the page's domain) and a YOLO training set of *everything reviewed so
   far*, beside the frozen test split. Then the retrain DAG's lifecycle: fine-tune production
   (:func:`~inkloop.lifecycle.retrain.retrain`, recipe ``finetune-v1``), export and register
   (:func:`~inkloop.lifecycle.promotion.export_candidate`), gate against production on the frozen
   test split, per domain (:func:`~inkloop.lifecycle.gate.promote`): the alias moves only if the
   gate passes, so a refused round keeps production.

Why not FiftyOne in the loop: a curation dataset per strategy and seed, in MongoDB, re-exported
every round, would add minutes per round and a database to a command meant to run on a laptop;
the steps that change the data (pull record → page record → YOLO label, domain per page) are the
curation stage's own functions. What FiftyOne adds on top (near-duplicates, likely label mistakes)
has nothing to find in labels that are the truth.

Everything lands in ``workdir``: ``simulation.json`` (rewritten after every finished round, so a
rerun continues where it stopped), ``simulation.png`` and, per seed and strategy, the registry,
detection runs, reviews and training runs.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from inkloop.benchmarks.workfolder import REPORT as REPORT  # the CLI reads the report by it
from inkloop.benchmarks.workfolder import ProgressFn, WorkFolderRun
from inkloop.models.references import BUNDLED_NAME

if TYPE_CHECKING:
    from inkloop.models.registry import ModelRegistry
    from inkloop.types import PageResult

log = logging.getLogger(__name__)

STRATEGIES = ("routing", "random", "all")
PLOT = "simulation.png"
#: The name the replay's start model and its retrained versions are registered under: the bundled
#: model's own.
MODEL_NAME = BUNDLED_NAME

# Progress events (:data:`~inkloop.benchmarks.workfolder.ProgressFn`): (stage, info); info has
# "seed", "strategy", "round" and stage details.


class ReplayError(ValueError):
    """An input the replay cannot use (the message names the file and why)."""


@dataclass(frozen=True)
class ReplayConfig:
    """What to replay. The defaults finish one seed in under an hour on a 2-core CPU (docs/evaluation.md)."""

    stream: tuple[str, ...]
    test: tuple[str, ...]
    workdir: str
    start_model: str = "bundled"
    strategies: tuple[str, ...] = STRATEGIES
    budget: float = 0.2
    rounds: int = 3
    #: Pages drawn from the stream (whole documents, in the seed's order); None: all of it.
    stream_pages: int | None = 90
    stream_split: str = "train"
    #: Labelled pages production already learned from (a YOLO dataset), ``base_pages`` of them
    #: (drawn per seed) added to every round's training set, as the curated dataset a real retrain
    #: reads holds the old pages beside the new ones; None: the reviewed pages alone.
    base: str | None = None
    base_split: str = "train"
    base_pages: int = 40
    test_split: str = "val"
    #: The domain the team is moving to: the label efficiency is measured on it.
    new_domain: str = "digital"
    recipe: str = "finetune-v1"
    epochs: int = 5
    #: The parent's share when each round's fine-tune is averaged with the production model it
    #: started from (:func:`~inkloop.lifecycle.soup.blend_with_parent`), as the retrain DAG does by
    #: default; 0: the fine-tune as trained, which lost the old domain in every round measured
    #: (docs/evaluation.md).
    parent_weight: float = 0.5
    imgsz: int | None = None  # None: the production model's input size
    batch: int = 16
    seeds: tuple[int, ...] = (0,)
    #: Gate tolerances (:class:`~inkloop.lifecycle.gate.GatePolicy`), e.g. {"min_map50_gain": 0}.
    gate: dict[str, Any] = field(default_factory=dict)
    time_limit: float | None = None  # per training run, seconds

    def __post_init__(self) -> None:
        if not 0 < self.budget <= 1:
            raise ReplayError(f"budget must be in (0, 1], got {self.budget}")
        if self.rounds < 1:
            raise ReplayError(f"rounds must be at least 1, got {self.rounds}")
        unknown = set(self.strategies) - set(STRATEGIES)
        if unknown or not self.strategies:
            raise ReplayError(f"unknown strategies {sorted(unknown)}; choose from {list(STRATEGIES)}")
        if not self.stream or not self.test:
            raise ReplayError("a replay needs --stream (new documents) and --test (the frozen test set)")
        if not self.seeds:
            raise ReplayError("give at least one seed")
        if self.epochs < 1:
            raise ReplayError(f"epochs must be at least 1, got {self.epochs}")
        from inkloop.lifecycle.soup import check_parent_weight

        try:
            check_parent_weight(self.parent_weight)
        except ValueError as exc:
            raise ReplayError(str(exc)) from None

    def key(self) -> dict[str, Any]:
        """The settings a report's numbers depend on (a rerun with others is refused)."""
        d = asdict(self)
        for k in ("workdir", "time_limit", "seeds"):
            d.pop(k)
        if d["base"] is None:  # reports written before --base existed stay resumable
            for k in ("base", "base_split", "base_pages"):
                d.pop(k)
        if not d["parent_weight"]:  # as do those written before --parent-weight
            d.pop("parent_weight")
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


# ------------------------------------------------------------------------------------- stream


@dataclass
class StreamDoc:
    """One document of the stream: the file an inbox would hold and the truth of each page
    (YOLO-normalized ``cx, cy, w, h`` boxes; a page without boxes is a labelled negative)."""

    path: Path
    pages: list[list[tuple[float, float, float, float]]]
    domain: str

    @property
    def n_pages(self) -> int:
        return len(self.pages)


def _yolo_boxes(label: Path | None) -> list[tuple[float, float, float, float]]:
    from inkloop.convert.yolo import read_labels

    if label is None or not label.is_file():
        return []
    return [box for _cls, box in read_labels(label.read_text())]


def _copy_label(sample: Any, dest: Path) -> None:
    """A dataset sample's YOLO label file to ``dest`` (empty for an unlabelled image: a negative)."""
    label = sample.label
    dest.write_bytes(label.read_bytes() if label is not None and label.is_file() else b"")


def _synth_docs(root: Path, split: str) -> list[StreamDoc]:
    """The documents of an ``inkloop synth`` folder (``provenance.jsonl`` names each page's label)."""
    rows = [json.loads(x) for x in (root / "provenance.jsonl").read_text().splitlines() if x.strip()]
    rows = [r for r in rows if r.get("split") == split]
    by_doc: dict[str, dict[int, Path]] = {}
    for r in rows:
        by_doc.setdefault(r["document"], {})[int(r["page"])] = root / r["label"]
    docs: list[StreamDoc] = []
    import pymupdf

    for rel, labels in sorted(by_doc.items()):
        path = root / rel
        with pymupdf.open(path) as pdf:
            n = pdf.page_count
        if sorted(labels) != list(range(n)):
            continue  # a document cut short by the set's page count: some pages have no label
        docs.append(StreamDoc(path, [_yolo_boxes(labels[i]) for i in range(n)], "digital"))
    return docs


def load_stream(sources: Sequence[str], split: str) -> list[StreamDoc]:
    """Documents of every source: an ``inkloop synth`` folder (its PDFs, by ``provenance.jsonl``), or a
    YOLO dataset whose ``split`` images are scanned pages (each image is a document of one page)."""
    from inkloop.evaluation.evaluator import DatasetError, load_dataset

    docs: list[StreamDoc] = []
    for src in sources:
        root = Path(src)
        if root.name == "data.yaml":
            root = root.parent
        if (root / "provenance.jsonl").is_file():
            found = _synth_docs(root, split)
        else:
            try:
                ds = load_dataset(src, split, default_domain="scan")
            except DatasetError as exc:
                raise ReplayError(f"--stream {src}: {exc}") from exc
            found = [StreamDoc(s.image, [_yolo_boxes(s.label)], s.domain or "scan") for s in ds.samples]
        if not found:
            raise ReplayError(f"--stream {src}: no labelled documents in split {split!r}")
        docs += found
    return docs


def plan_rounds(
    docs: Sequence[StreamDoc], rounds: int, budget: float, seed: int, max_pages: int | None
) -> tuple[list[list[int]], list[int]]:
    """The seed's order of documents, cut into ``rounds`` batches of about equal page counts; and
    how many pages each round reviews (``ceil(budget · pages)``, as routing's budget rounds)."""
    order = np.random.default_rng([seed, 35]).permutation(len(docs)).tolist()
    if max_pages is not None:
        take, total = [], 0
        for i in order:
            if total >= max_pages:
                break
            take.append(i)
            total += docs[i].n_pages
        order = take
    total = sum(docs[i].n_pages for i in order)
    if len(order) < rounds:
        raise ReplayError(f"{len(order)} documents cannot fill {rounds} rounds")
    batches: list[list[int]] = [[] for _ in range(rounds)]
    seen = 0
    for i in order:
        r = min(rounds - 1, int(seen * rounds / total)) if total else 0
        batches[r].append(i)
        seen += docs[i].n_pages
    for r in range(rounds):  # an empty round (one huge document before it) borrows a document
        if not batches[r]:
            donor = max(range(rounds), key=lambda k: len(batches[k]))
            batches[r].append(batches[donor].pop())
    reviewed = [max(1, math.ceil(budget * sum(docs[i].n_pages for i in b) - 1e-9)) for b in batches]
    return batches, reviewed


# ---------------------------------------------------------------------------------- test set


def build_test_set(sources: Sequence[str], split: str, dest: Path) -> Path:
    """The frozen test split: every source's ``split`` copied into ``dest/images/test`` with a
    ``domains.json`` (an image whose dataset records no domain counts as a scan). Built once; the
    gate records its content hash, so every round and strategy is judged on the same pages."""
    import yaml

    from inkloop.evaluation.domains import write_domains
    from inkloop.evaluation.evaluator import DatasetError, load_dataset

    if (dest / "data.yaml").is_file():
        return dest
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images" / "test").mkdir(parents=True)
    (tmp / "labels" / "test").mkdir(parents=True)
    domains: dict[str, str] = {}
    for k, src in enumerate(sources):
        try:
            ds = load_dataset(src, split, default_domain="scan")
        except DatasetError as exc:
            raise ReplayError(f"--test {src}: {exc}") from exc
        if not len(ds):
            raise ReplayError(f"--test {src}: no images in split {split!r}")
        for s in ds.samples:
            name = f"{k}-{s.image.name}"
            shutil.copyfile(s.image, tmp / "images" / "test" / name)
            label = tmp / "labels" / "test" / f"{Path(name).stem}.txt"
            _copy_label(s, label)
            domains[f"images/test/{name}"] = s.domain or "scan"
    write_domains(tmp, domains)
    cfg = {"path": ".", "test": "images/test", "names": {0: "signature"}}
    (tmp / "data.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    os.replace(tmp, dest)
    return dest


# ---------------------------------------------------------------------------------- report


@dataclass
class Round:
    """One round of one strategy (round 0: the start model, shared by every strategy of a seed)."""

    seed: int
    strategy: str
    round: int
    pages: int  # pages that arrived this round
    reviewed: int  # pages reviewed this round
    reviewed_total: int  # pages reviewed so far
    error_pages: int  # pages of the round production got wrong (a missed or false box)
    errors_caught: int  # of those, pages that were reviewed
    candidate: dict[str, Any] | None  # the round's fine-tuned model on the frozen test
    production: dict[str, Any]  # the model the team runs after the round
    promoted: bool
    gate_reasons: list[str]
    production_version: str
    candidate_version: str | None
    selected: list[str]  # page keys reviewed this round
    seconds: float = 0.0


def _metric(m: dict[str, Any] | None, key: str, domain: str | None = None) -> float | None:
    if not m:
        return None
    if domain is not None:
        m = (m.get("domains") or {}).get(domain)
        if not m:
            return None
    v = m.get(key)
    return None if v is None else float(v)


@dataclass
class ReplayReport:
    config: dict[str, Any]
    seeds: list[int]
    test_pages: dict[str, int]
    plans: dict[str, dict[str, Any]] = field(default_factory=dict)  # per seed: rounds, pages, reviews
    rounds: list[Round] = field(default_factory=list)
    seconds: float = 0.0

    def get(self, seed: int, strategy: str, round_: int) -> Round | None:
        return next(
            (
                r
                for r in self.rounds
                if r.seed == seed and r.round == round_ and r.strategy in (strategy, "start")
            ),
            None,
        )

    def series(self, seed: int, strategy: str) -> list[Round]:
        out = [self.get(seed, strategy, r) for r in range(int(self.config["rounds"]) + 1)]
        return [r for r in out if r is not None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "loop-replay",
            "config": self.config,
            "seeds": self.seeds,
            "test_pages": self.test_pages,
            "plans": self.plans,
            "rounds": [asdict(r) for r in self.rounds],
            "summary": self.summary(),
            "seconds": self.seconds,
        }

    # -- the team's question -----------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Per strategy, across seeds: final numbers (mean, min, max) and the label efficiency."""
        dom = str(self.config["new_domain"])
        out: dict[str, Any] = {"new_domain": dom, "strategies": {}, "label_efficiency": {}}
        finals: dict[str, dict[str, list[float]]] = {}
        for strategy in self.config["strategies"]:
            per: dict[str, list[float]] = {}
            for seed in self.seeds:
                s = self.series(seed, strategy)
                if len(s) < int(self.config["rounds"]) + 1:
                    continue
                last = s[-1]
                vals = {
                    "reviewed": float(last.reviewed_total),
                    "errors_caught": float(sum(r.errors_caught for r in s)),
                    "error_pages": float(sum(r.error_pages for r in s[1:])),
                    "promotions": float(sum(r.promoted for r in s[1:])),
                }
                for who in ("candidate", "production"):
                    m = getattr(last, who) or last.production
                    for key in ("map50", "recall"):
                        vals[f"{who}_{key}"] = _metric(m, key) or 0.0
                        vals[f"{who}_{dom}_{key}"] = _metric(m, key, dom) or 0.0
                for k, v in vals.items():
                    per.setdefault(k, []).append(v)
            finals[strategy] = per
            out["strategies"][strategy] = {k: _spread(v) for k, v in per.items()}
        if "routing" in finals and "random" in finals:
            out["label_efficiency"] = self._efficiency(dom)
        return out

    def _efficiency(self, dom: str) -> dict[str, Any]:
        """Reviewed pages routing needed to reach random's final candidate mAP50 (and recall) on the
        new domain, per seed; None where it never did."""
        rows: dict[str, Any] = {}
        for key in ("map50", "recall"):
            per_seed = []
            for seed in self.seeds:
                rnd, rt = self.series(seed, "random"), self.series(seed, "routing")
                if len(rnd) < int(self.config["rounds"]) + 1 or not rt:
                    continue
                target = _metric(rnd[-1].candidate, key, dom)
                if target is None:
                    continue
                reached = next(
                    (
                        r.reviewed_total
                        for r in rt
                        if (v := _metric(r.candidate or r.production, key, dom)) is not None
                        and v >= target - 1e-9
                    ),
                    None,
                )
                per_seed.append(
                    {
                        "seed": seed,
                        "random_final": target,
                        "random_reviewed": rnd[-1].reviewed_total,
                        "routing_reviewed_to_reach": reached,
                        "ratio": None
                        if reached is None
                        else round(reached / max(1, rnd[-1].reviewed_total), 3),
                    }
                )
            rows[key] = per_seed
        return rows

    def markdown(self) -> str:
        """One table row per round and strategy (mean over seeds; min–max when several)."""
        dom = str(self.config["new_domain"])
        others = sorted(d for d in self.test_pages if d != dom)  # the domains the gate also guards
        head = [
            "strategy",
            "round",
            "reviewed",
            "error pages caught / in round",
            "candidate mAP50",
            f"candidate mAP50 {dom}",
            f"candidate recall {dom}",
            *(f"candidate mAP50 {d}" for d in others),
            "production mAP50",
            f"production mAP50 {dom}",
            f"production recall {dom}",
            "promoted",
        ]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for strategy in self.config["strategies"]:
            for rnd in range(int(self.config["rounds"]) + 1):
                rs = [r for seed in self.seeds if (r := self.get(seed, strategy, rnd)) is not None]
                if not rs:
                    continue

                def cell(vals: list[float | None], count: bool = False) -> str:
                    v = [x for x in vals if x is not None]
                    return _fmt(_spread(v), count) if v else "–"

                lines.append(
                    "| "
                    + " | ".join(
                        [
                            strategy,
                            str(rnd),
                            cell([float(r.reviewed_total) for r in rs], True),
                            "–"
                            if rnd == 0
                            else cell([float(r.errors_caught) for r in rs], True)
                            + " / "
                            + cell([float(r.error_pages) for r in rs], True),
                            cell([_metric(r.candidate, "map50") for r in rs]),
                            cell([_metric(r.candidate, "map50", dom) for r in rs]),
                            cell([_metric(r.candidate, "recall", dom) for r in rs]),
                            *(cell([_metric(r.candidate, "map50", d) for r in rs]) for d in others),
                            cell([_metric(r.production, "map50") for r in rs]),
                            cell([_metric(r.production, "map50", dom) for r in rs]),
                            cell([_metric(r.production, "recall", dom) for r in rs]),
                            f"{sum(r.promoted for r in rs)}/{len(rs)}" if rnd else "–",
                        ]
                    )
                    + " |"
                )
        return "\n".join(lines)


def _spread(values: Sequence[float]) -> dict[str, float]:
    v = list(values)
    if not v:
        return {}
    return {
        "mean": round(statistics.fmean(v), 4),
        "min": round(min(v), 4),
        "max": round(max(v), 4),
        "sd": round(statistics.stdev(v), 4) if len(v) > 1 else 0.0,
        "n": len(v),
    }


def _fmt(s: dict[str, float], count: bool = False) -> str:
    """A metric as ``mean`` or ``mean (min–max)`` over seeds; counts without decimals."""
    if not s:
        return "–"
    if s["n"] == 1 or s["min"] == s["max"]:
        return f"{s['mean']:.0f}" if count else f"{s['mean']:.3f}"
    if count:
        return f"{s['mean']:.1f} ({s['min']:.0f}–{s['max']:.0f})"
    return f"{s['mean']:.3f} ({s['min']:.3f}–{s['max']:.3f})"


def plot_report(report: ReplayReport, path: Path) -> Path:
    """mAP50 of each round's candidate against reviewed pages, per strategy: total and the new
    domain side by side; the line is the mean over seeds, the band their min–max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dom = str(report.config["new_domain"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for ax, domain, title in ((axes[0], dom, f"{dom} pages"), (axes[1], None, "all test pages")):
        for strategy in report.config["strategies"]:
            xs: list[float] = []
            mean: list[float] = []
            lo: list[float] = []
            hi: list[float] = []
            for rnd in range(int(report.config["rounds"]) + 1):
                rs = [r for seed in report.seeds if (r := report.get(seed, strategy, rnd)) is not None]
                vals = [
                    v for r in rs if (v := _metric(r.candidate or r.production, "map50", domain)) is not None
                ]
                if not vals:
                    continue
                xs.append(statistics.fmean(r.reviewed_total for r in rs))
                mean.append(statistics.fmean(vals))
                lo.append(min(vals))
                hi.append(max(vals))
            if xs:
                style = {"routing": ("o", "-"), "random": ("s", "--"), "all": ("^", ":")}[strategy]
                (line,) = ax.plot(xs, mean, marker=style[0], linestyle=style[1], label=strategy)
                if len(report.seeds) > 1:
                    ax.fill_between(xs, lo, hi, alpha=0.2, color=line.get_color())
        ax.set_title(f"mAP50 on {title}")
        ax.set_xlabel("pages reviewed")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mAP50 (frozen test)")
    axes[0].legend()
    seeds = ", ".join(str(s) for s in report.seeds)
    fig.suptitle(f"loop replay from {report.config['start_model']} (seeds {seeds})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------- the loop


def page_truth(doc: StreamDoc, result: PageResult) -> list[tuple[float, float, float, float]]:
    """A page's true boxes in the pixels of its detection result (labels are resolution-free)."""
    from inkloop.convert.yolo import from_yolo

    boxes = doc.pages[result.page.index] if result.page.index < doc.n_pages else []
    return [from_yolo(b, result.page.width, result.page.height) for b in boxes]


def _is_model_folder(pt: Path) -> bool:
    """``model.pt`` with the ``model.onnx`` and ``card.json`` exported from it beside it."""
    beside = pt.parent
    return pt.name == "model.pt" and (beside / "model.onnx").is_file() and (beside / "card.json").is_file()


class Replay(WorkFolderRun):
    """Runs a :class:`ReplayConfig`; :meth:`run` returns the :class:`ReplayReport`."""

    def __init__(self, config: ReplayConfig, progress: ProgressFn | None = None) -> None:
        super().__init__(config.workdir, progress)
        self.config = config
        self.docs = load_stream(config.stream, config.stream_split)
        self.test = build_test_set(config.test, config.test_split, self.work / "test")
        self.test_yaml = self.test / "data.yaml"
        self._base: list[Any] | None = None  # the --base dataset's samples, read on first use

    # -- bookkeeping -----------------------------------------------------------------------------
    def _load(self) -> ReplayReport:
        from inkloop.evaluation.domains import read_domains

        doms = (read_domains(self.test) or (None, {}))[1]
        fresh = ReplayReport(
            config=self.config.key(),
            seeds=list(self.config.seeds),
            test_pages=dict(Counter(doms.values())),
        )
        old = self.previous_report(fresh.config, "a replay", ReplayError)
        if old is not None:
            fresh.rounds = [Round(**r) for r in old.get("rounds", []) if r["seed"] in self.config.seeds]
            fresh.plans = {k: v for k, v in old.get("plans", {}).items() if int(k) in self.config.seeds}
            fresh.seconds = float(old.get("seconds", 0.0))
        return fresh

    # -- the start model -------------------------------------------------------------------------
    def _start_model(self) -> Any:
        """The start model, resolved once per work folder and kept in ``workdir/start-registry``.

        Why a copy: a replay runs for hours, and what ``bundled`` or ``registry://…@production``
        means can change meanwhile (a new model shipped, a promotion); every strategy and seed must
        start from the same bytes, so the first resolution is the one used for the whole replay.
        """
        from inkloop.lifecycle.retrain import resolve_start
        from inkloop.models.references import bundled_model_path, load_local
        from inkloop.models.registry import is_registry_ref
        from inkloop.models.resolve import open_registry

        start = open_registry(str(self.work / "start-registry"), cache_dir=self.work / "cache")
        if MODEL_NAME not in start.list_models() or not start.list_versions(MODEL_NAME):
            ref = self.config.start_model
            pt, _ = resolve_start(ref)
            if ref == "bundled":
                model = load_local(bundled_model_path(), ref="bundled")
                onnx, card = model.path, model.card
            elif is_registry_ref(ref):
                onnx = Path(pt).with_name("model.onnx")
                card = load_local(onnx, ref=ref, verify=False).card
            elif _is_model_folder(Path(pt)):
                # a model folder (model.pt, model.onnx, card.json: a bundled model's or a registry
                # version's layout, e.g. an earlier bundled model taken from git history) starts
                # as its card describes it: its thresholds and input size, not export defaults
                model = load_local(Path(pt).with_name("model.onnx"), ref=ref)
                onnx, card = model.path, model.card
            else:
                from inkloop.lifecycle.export import export_onnx

                # exported from a copy: ultralytics writes the .onnx beside the weights it reads
                out = self.work / "start"
                out.mkdir(parents=True, exist_ok=True)
                pt = str(shutil.copyfile(pt, out / "start.pt"))
                card = export_onnx(pt, out, imgsz=self.config.imgsz or 416, name=MODEL_NAME, version="start")
                onnx = out / "model.onnx"
            start.register(MODEL_NAME, onnx, replace(card, name=MODEL_NAME), pt_path=pt)
        return start.fetch(MODEL_NAME, start.list_versions(MODEL_NAME)[0], with_pt=True)

    def _register_start(self, reg: ModelRegistry) -> str:
        """The start model as ``v1`` and ``production`` of a strategy's fresh registry."""
        if MODEL_NAME in reg.list_models() and reg.list_versions(MODEL_NAME):
            first = reg.list_versions(MODEL_NAME)[0]
            reg.set_alias(MODEL_NAME, "production", first)  # a restarted seed starts over
            return first
        model = self._start_model()
        pt = model.path.with_name("model.pt")
        version = str(reg.register(MODEL_NAME, model.path, model.card, pt_path=pt))
        reg.set_alias(MODEL_NAME, "production", version)
        return version

    def _start_metrics(self, seed: int, reg: ModelRegistry, version: str) -> dict[str, Any]:
        from inkloop.detection.detector import Detector
        from inkloop.evaluation.evaluator import EVAL_CONF, evaluate
        from inkloop.lifecycle.variants import summarize_report

        cache = self.work / "start-metrics.json"
        if cache.is_file():
            return dict(json.loads(cache.read_text()))
        ref = reg.fetch(MODEL_NAME, version)
        self.progress("evaluate", {"seed": seed, "strategy": "start", "round": 0})
        det = Detector(ref, conf=EVAL_CONF, iou=ref.card.iou_threshold)
        m = summarize_report(evaluate(det, self.test_yaml, "test", plot=False).to_dict())
        cache.write_text(json.dumps(m))
        return m

    # -- one round of one strategy ---------------------------------------------------------------
    def _round(
        self,
        seed: int,
        strategy: str,
        rnd: int,
        batch: list[int],
        k: int,
        reg: ModelRegistry,
        reviewed_before: int,
    ) -> Round:
        from inkloop.api import DetectOptions, detect
        from inkloop.detection.results import read_results
        from inkloop.evaluation.routing_errors import page_has_error
        from inkloop.routing import RoutingConfig, read_routing

        t0 = time.monotonic()
        c = self.config
        info = {"seed": seed, "strategy": strategy, "round": rnd}
        base = self.work / f"seed-{seed}" / strategy
        rdir = base / f"r{rnd}"
        production = reg.resolve_version(MODEL_NAME, "production")
        state = rdir / "round.json"
        if state.is_file():  # a round stopped half-way: start it again from the same production
            production = json.loads(state.read_text())["production"]
            reg.set_alias(MODEL_NAME, "production", production)
            shutil.rmtree(rdir / "detect", ignore_errors=True)
        rdir.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps({"production": production}))
        prod_ref = reg.fetch(MODEL_NAME, production)

        # 1. detection, as the inbox's run does (routing scored, verdicts judged, routed once)
        docs = {str(self.docs[i].path.resolve()): self.docs[i] for i in batch}
        self.progress("detect", {**info, "pages": sum(d.n_pages for d in docs.values())})
        routing = RoutingConfig(
            max_review_fraction=None, max_review_pages=k, review_min_uncertainty=0.0, audit_rate=0.0
        )
        detect(list(docs), rdir / "detect", DetectOptions(model=str(prod_ref.path)), routing=routing)
        results = read_results(rdir / "detect")
        truth = {r.page_key: page_truth(docs[str(Path(r.source).resolve())], r) for r in results}
        wrong = {
            r.page_key for r in results if page_has_error([d.xyxy for d in r.detections], truth[r.page_key])
        }

        # 2. which pages people review
        if strategy == "routing":
            decisions = read_routing(rdir / "detect")
            chosen = [r for r in results if decisions[r.page_key].decision == "review"]
        elif strategy == "random":
            rng = np.random.default_rng([seed, rnd, 7])
            keys = sorted(r.page_key for r in results)
            pick = set(rng.choice(len(keys), size=min(k, len(keys)), replace=False).tolist())
            chosen = [r for r in results if keys.index(r.page_key) in pick]
        else:
            chosen = list(results)

        # 3. the reviewer's answers as pull records, then curation's page records
        self.progress("review", {**info, "pages": len(chosen)})
        reviews = self._review(chosen, truth, rdir)

        # 4. the retrain DAG: train on everything reviewed so far, export, gate, promote
        data = self._training_set(base, rnd, self._base_samples(seed))
        self.progress("train", {**info, "pages": reviews + reviewed_before, "epochs": c.epochs})
        decision, cand_version = self._lifecycle(reg, data, rdir, info)
        prod_after = reg.resolve_version(MODEL_NAME, "production")
        metrics = decision.metrics or {}
        state.unlink()
        return Round(
            seed=seed,
            strategy=strategy,
            round=rnd,
            pages=len(results),
            reviewed=len(chosen),
            reviewed_total=reviewed_before + len(chosen),
            error_pages=len(wrong),
            errors_caught=len({r.page_key for r in chosen} & wrong),
            candidate=metrics.get("candidate"),
            production=(metrics.get("candidate") if decision.promoted else metrics.get("production")) or {},
            promoted=bool(decision.promoted),
            gate_reasons=list(decision.reasons),
            production_version=prod_after,
            candidate_version=cand_version,
            selected=sorted(r.page_key for r in chosen),
            seconds=round(time.monotonic() - t0, 1),
        )

    def _review(self, chosen: Sequence[Any], truth: dict[str, list[Any]], rdir: Path) -> int:
        """Write the simulated reviewer's answers as Label Studio pull records, read them back as a
        pull does, and make curation's page records (rendered page, boxes in its pixels, domain)."""
        from inkloop.convert.yolo import format_line, to_yolo
        from inkloop.curation.cycle import page_domains, render_pages
        from inkloop.curation.records import PageRecord
        from inkloop.geometry import clip
        from inkloop.review.labelstudio import ReviewedPage, read_reviews, write_reviews
        from inkloop.types import Detection

        pull = rdir / "reviews.jsonl"
        pull.unlink(missing_ok=True)
        write_reviews(
            (
                ReviewedPage(
                    page_key=r.page_key,
                    task_id=n + 1,
                    status="submitted",
                    ground_truth=[Detection("signature", 1.0, b) for b in truth[r.page_key]],
                    width=r.page.width,
                    height=r.page.height,
                    image="",
                    source=r.source,
                    doc_id=r.page.doc_id,
                    page_index=r.page.index,
                    annotator="simulated-reviewer (the label)",
                    model_version=r.model_version,
                )
                for n, r in enumerate(chosen)
            ),
            pull,
        )
        pulled = {p.page_key: p for p in read_reviews(pull)}
        paths, failed = render_pages(chosen, rdir / "review-images")
        if failed:
            raise ReplayError(f"pages could not be rendered for review: {failed}")
        domains = page_domains(chosen)
        cur = rdir / "curated"
        shutil.rmtree(cur, ignore_errors=True)
        (cur / "images").mkdir(parents=True)
        (cur / "labels").mkdir(parents=True)
        doms: dict[str, str] = {}
        for r in chosen:
            rec = PageRecord.from_result(r, paths[r.page_key], pulled[r.page_key], domains.get(r.page_key))
            stem = f"{rec.doc_id[:16]}-p{rec.page_index + 1}"
            os.symlink(Path(rec.image).resolve(), cur / "images" / f"{stem}.png")
            lines = []
            for d in rec.ground_truth or []:
                x0, y0, x1, y1 = clip(d.xyxy, rec.width, rec.height)
                if x1 > x0 and y1 > y0:
                    lines.append(format_line(0, to_yolo((x0, y0, x1, y1), rec.width, rec.height)) + "\n")
            (cur / "labels" / f"{stem}.txt").write_text("".join(lines))
            if rec.domain:
                doms[f"{stem}.png"] = rec.domain
        (cur / "domains.json").write_text(json.dumps(doms, sort_keys=True))
        return len(chosen)

    def _base_samples(self, seed: int) -> list[Any]:
        """The seed's draw of ``base_pages`` old labelled pages (the same for every strategy)."""
        from inkloop.evaluation.evaluator import DatasetError, load_dataset

        c = self.config
        if c.base is None or c.base_pages <= 0:
            return []
        if self._base is None:  # read once, not every round of every strategy
            try:
                self._base = load_dataset(c.base, c.base_split, default_domain="scan").samples
            except DatasetError as exc:
                raise ReplayError(f"--base {c.base}: {exc}") from exc
        samples = self._base
        rng = np.random.default_rng([seed, 36])
        pick = rng.permutation(len(samples))[: c.base_pages]
        return [samples[i] for i in sorted(pick.tolist())]

    def _training_set(self, base: Path, rnd: int, old: Sequence[Any] = ()) -> Path:
        """Everything reviewed in rounds 1..rnd as the train (and val: validation is off) split, with
        the ``old`` pages (``--base``) beside them; the frozen test split beside it."""
        import yaml

        from inkloop.evaluation.domains import write_domains

        data = base / f"r{rnd}" / "data"
        shutil.rmtree(data, ignore_errors=True)
        (data / "images" / "train").mkdir(parents=True)
        (data / "labels" / "train").mkdir(parents=True)
        doms: dict[str, str] = {}
        for r in range(1, rnd + 1):
            cur = base / f"r{r}" / "curated"
            round_doms = json.loads((cur / "domains.json").read_text())
            for img in sorted((cur / "images").iterdir()):
                if (data / "images" / "train" / img.name).exists():
                    continue  # the same page reviewed again (a document sent twice): its latest label
                os.symlink(img.resolve(), data / "images" / "train" / img.name)
                shutil.copyfile(
                    cur / "labels" / f"{img.stem}.txt",
                    data / "labels" / "train" / f"{img.stem}.txt",
                )
                if img.name in round_doms:
                    doms[f"images/train/{img.name}"] = round_doms[img.name]
        for k, sample in enumerate(old):
            name = f"base-{k:04d}-{sample.image.name}"
            os.symlink(sample.image.resolve(), data / "images" / "train" / name)
            label = data / "labels" / "train" / f"{Path(name).stem}.txt"
            _copy_label(sample, label)
            doms[f"images/train/{name}"] = sample.domain or "scan"
        write_domains(data, doms)
        cfg = {
            "path": ".",
            "train": "images/train",
            "val": "images/train",
            "test": str((self.test / "images" / "test").resolve()),
            "names": {0: "signature"},
        }
        (data / "data.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        return data

    def _lifecycle(
        self, reg: ModelRegistry, data: Path, rdir: Path, info: dict[str, Any]
    ) -> tuple[Any, str | None]:
        """retrain → export_candidate → promote, as the retrain DAG's tasks call them."""
        from inkloop.lifecycle.gate import GatePolicy, promote
        from inkloop.lifecycle.promotion import export_candidate
        from inkloop.lifecycle.retrain import retrain

        c = self.config
        run = rdir / "train"
        finished = (run / "inkloop-status.json").is_file() and json.loads(
            (run / "inkloop-status.json").read_text()
        ).get("state") == "finished"
        if not finished:
            overrides: dict[str, Any] = {
                "epochs": c.epochs,
                "batch": c.batch,
                "seed": int(info["seed"]),
                "patience": c.epochs + 1,
                "plots": False,
                "val": False,  # validation would be on the reviewed pages themselves: time, no signal
                "close_mosaic": max(1, c.epochs // 4),
            }
            if c.imgsz:
                overrides["imgsz"] = c.imgsz
            resume = (run / "weights" / "last.pt").is_file()
            if not resume:
                shutil.rmtree(run, ignore_errors=True)
                shutil.rmtree(rdir / "train-data", ignore_errors=True)
            result = retrain(
                str(data),
                run,
                start_from=f"registry://{MODEL_NAME}@production",
                registry=reg.url,
                recipe=c.recipe,
                overrides=overrides,
                time_limit=c.time_limit,
                resume=resume,
                on_progress=lambda p: self.progress("epoch", {**info, "epoch": p.epoch, "epochs": p.epochs}),
            )
            if not result.ok:
                raise RuntimeError(f"replay training {run} did not finish: {result.status}: {result.message}")
        self.progress("export", info)
        shutil.rmtree(rdir / "export", ignore_errors=True)
        exported = export_candidate(
            run,
            rdir / "export",
            data=str(data),
            registry=reg,
            formats=(),
            split="test",
            imgsz=c.imgsz,
            parent_weight=c.parent_weight,
        )
        self.progress("gate", info)
        decision = promote(MODEL_NAME, str(data), registry=reg, policy=GatePolicy(**c.gate))
        return decision, exported.version

    # -- the whole replay ------------------------------------------------------------------------
    def run(self) -> ReplayReport:
        from inkloop.models.resolve import open_registry

        c = self.config
        report = self._load()
        t0 = time.monotonic()
        for seed in c.seeds:
            batches, reviews = plan_rounds(self.docs, c.rounds, c.budget, seed, c.stream_pages)
            plan = {
                "rounds": [[str(self.docs[i].path) for i in b] for b in batches],
                "pages": [sum(self.docs[i].n_pages for i in b) for b in batches],
                "reviews": reviews,
                "domains": [
                    dict(Counter(self.docs[i].domain for i in b for _ in range(self.docs[i].n_pages)))
                    for b in batches
                ],
            }
            report.plans[str(seed)] = plan
            for strategy in c.strategies:
                reg = open_registry(str(self.work / f"seed-{seed}" / strategy / "registry"))
                done = [r for r in report.rounds if r.seed == seed and r.strategy == strategy]
                if len(done) == c.rounds:
                    self.progress("skip", {"seed": seed, "strategy": strategy, "round": c.rounds})
                    continue
                start = self._register_start(reg) if not done else None
                if report.get(seed, strategy, 0) is None:
                    assert start is not None
                    m = self._start_metrics(seed, reg, start)
                    report.rounds.append(
                        Round(
                            seed=seed,
                            strategy="start",
                            round=0,
                            pages=0,
                            reviewed=0,
                            reviewed_total=0,
                            error_pages=0,
                            errors_caught=0,
                            candidate=None,
                            production=m,
                            promoted=False,
                            gate_reasons=[],
                            production_version=start,
                            candidate_version=None,
                            selected=[],
                        )
                    )
                    self.save_report(report.to_dict())
                total = 0
                for rnd, (batch, k) in enumerate(zip(batches, reviews, strict=True), 1):
                    prev = report.get(seed, strategy, rnd)
                    if prev is not None and prev.strategy == strategy:
                        total = prev.reviewed_total
                        self.progress("done", {"seed": seed, "strategy": strategy, "round": rnd, "row": prev})
                        continue
                    k_round = sum(self.docs[i].n_pages for i in batch) if strategy == "all" else k
                    row = self._round(seed, strategy, rnd, batch, k_round, reg, total)
                    total = row.reviewed_total
                    report.rounds.append(row)
                    report.seconds = round(report.seconds + time.monotonic() - t0, 1)
                    t0 = time.monotonic()
                    self.save_report(report.to_dict())
                    self.progress("done", {"seed": seed, "strategy": strategy, "round": rnd, "row": row})
        report.seconds = round(report.seconds + time.monotonic() - t0, 1)
        self.save_report(report.to_dict())
        plot_report(report, self.work / PLOT)
        return report


def replay(config: ReplayConfig, progress: ProgressFn | None = None) -> ReplayReport:
    """Replay the loop from production over a stream of new documents; see the module docstring."""
    return Replay(config, progress).run()

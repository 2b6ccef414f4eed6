"""The promotion gate: a candidate replaces production only if it is measurably better.

Both models are scored in one run, on the same frozen test split, with the same evaluator
(:func:`inkloop.evaluation.evaluator.evaluate`), and timed side by side (interleaved, so a busy machine slows
both equally). The candidate is promoted only if all of these hold (:class:`GatePolicy`):

- mAP50 ≥ production's + ``min_map50_gain`` (default 0.005: on a test split of a few hundred
  pages one more or one fewer found signature moves mAP50 by about 0.003, so a smaller gain is
  indistinguishable from noise and would churn production; set 0 to accept ties);
- recall at each model's operating threshold is not lower than production's by more than
  ``max_recall_drop`` (default 0.01): a missed signature is the expensive error of this loop,
  it is never reviewed;
- no domain regresses: on every domain of the test split (``scan``, ``digital``, … as recorded
  in the dataset's ``domains.json``), mAP50 and recall at the operating threshold are not lower
  than production's by more than ``max_domain_regression`` (default 0.02), even when the total
  improves. Why: a split that is mostly scans lets a candidate buy a total gain on scans with a
  collapse on born-digital pages, and the total would call that progress. Why 0.02 and not the
  total's 0.01: each domain is a part of the split, so one signature more or less moves its
  recall by 0.01–0.02 on a domain of 50–100 signatures; a tighter tolerance would refuse noise,
  a looser one would let a domain lose several signatures in a hundred;
- latency ratio candidate/production ≤ ``max_latency_ratio`` (default 2.0: a switch to a bigger
  architecture is a decision to make with ``--force`` or a policy, not by accident);
- parity holds: the candidate's fp32 ONNX file gives the same boxes and mAP50 as the checkpoint it
  was exported from (recorded at export time by :mod:`inkloop.lifecycle.variants`);
- the candidate was trained with this same frozen test split held out (its recipe records the
  split's content hash), so it has not seen these pages.

Whatever the outcome, the decision (:class:`GateDecision`) is returned and written next to the
candidate as ``gate.json`` in its registry version folder; the registry itself (versions, card
checksums) is never modified, only the alias moves on promotion.
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from inkloop.models.references import ModelCard, ModelError, ModelRef

if TYPE_CHECKING:
    from inkloop.models.registry import ModelRegistry
    from inkloop.models.resolve import RegistryArg

logger = logging.getLogger(__name__)

GATE_FILE = "gate.json"


@dataclass(frozen=True)
class GatePolicy:
    """What "better" means for a promotion (see the module docstring for why these defaults)."""

    min_map50_gain: float = 0.005
    max_recall_drop: float = 0.01
    #: Largest drop of mAP50 or recall allowed on any one domain (None: domains not checked).
    max_domain_regression: float | None = 0.02
    max_latency_ratio: float | None = 2.0
    require_parity: bool = True
    #: Refuse a candidate whose recorded frozen test split differs from the one it is gated on.
    require_same_test_split: bool = True
    latency_images: int = 8
    latency_repeats: int = 3

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GateDecision:
    """The gate's verdict and everything it was based on; :meth:`to_dict` is ``gate.json``."""

    name: str
    candidate: str
    production: str | None
    promote: bool
    reasons: list[str]
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    latency: dict[str, float | None] = field(default_factory=dict)
    test_set: dict[str, Any] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)
    forced: bool = False
    promoted: bool = False
    alias: str = "production"
    previous: str | None = None
    decided_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _at_least(
    checks: dict[str, dict[str, Any]],
    metric: str,
    candidate: dict[str, Any],
    production: dict[str, Any],
    required: float,
) -> bool:
    """Whether the candidate's ``metric`` reaches ``required`` (within float noise: a candidate
    exactly at the bar passes); records the check under ``checks[metric]``."""
    ok = candidate[metric] >= required - 1e-12
    checks[metric] = {
        "ok": ok,
        "candidate": candidate[metric],
        "production": production[metric],
        "required": round(required, 6),
    }
    return ok


def decide(
    candidate: dict[str, Any],
    production: dict[str, Any] | None,
    policy: GatePolicy,
    *,
    latency_ratio: float | None = None,
    parity: tuple[bool, str] = (True, ""),
    test_split: tuple[bool, str] = (True, ""),
) -> tuple[bool, list[str], dict[str, dict[str, Any]]]:
    """The pure decision: ``(promote, reasons, checks)`` from already measured numbers.

    ``candidate``/``production`` hold ``map50`` and ``recall`` (and, when the test split records
    domains, ``domains``: per-domain ``map50`` and ``recall``); ``production`` None means there is
    nothing to beat (the first model of a name). Every failed check adds a reason; a promotion's
    reasons say what it beat.
    """
    checks: dict[str, dict[str, Any]] = {}
    reasons: list[str] = []
    if production is not None:
        need = production["map50"] + policy.min_map50_gain
        ok = _at_least(checks, "map50", candidate, production, need)
        if not ok:
            reasons.append(
                f"mAP50 {candidate['map50']:.4f} < production {production['map50']:.4f} + margin "
                f"{policy.min_map50_gain} (needs {need:.4f})"
            )
        floor = production["recall"] - policy.max_recall_drop
        ok = _at_least(checks, "recall", candidate, production, floor)
        if not ok:
            reasons.append(
                f"recall at the operating threshold {candidate['recall']:.4f} < production "
                f"{production['recall']:.4f} - tolerance {policy.max_recall_drop}"
            )
        domain_check = _domain_check(candidate, production, policy.max_domain_regression)
        if domain_check is not None:
            checks["domains"], domain_reasons = domain_check
            reasons.extend(domain_reasons)
        if policy.max_latency_ratio is not None and latency_ratio is not None:
            ok = latency_ratio <= policy.max_latency_ratio
            checks["latency"] = {"ok": ok, "ratio": round(latency_ratio, 4), "max": policy.max_latency_ratio}
            if not ok:
                reasons.append(
                    f"latency ratio {latency_ratio:.2f} > {policy.max_latency_ratio} (candidate/production)"
                )
    if policy.require_parity:
        checks["parity"] = {"ok": parity[0], "detail": parity[1]}
        if not parity[0]:
            reasons.append(f"parity: {parity[1]}")
    if policy.require_same_test_split:
        checks["test_split"] = {"ok": test_split[0], "detail": test_split[1]}
        if not test_split[0]:
            reasons.append(f"test split: {test_split[1]}")
    promote = not reasons
    if promote:
        if production is None:
            reasons.append("no production model yet: nothing to beat")
        else:
            reasons.append(
                f"mAP50 {candidate['map50']:.4f} ≥ {production['map50']:.4f} + {policy.min_map50_gain}, "
                f"recall {candidate['recall']:.4f} vs {production['recall']:.4f}"
            )
            if "domains" in checks:
                reasons.append(
                    f"no domain regressed beyond {policy.max_domain_regression}: "
                    + ", ".join(sorted(checks["domains"]["domains"]))
                )
    return promote, reasons, checks


#: The numbers compared per domain: the ranking metric and the expensive error (a missed signature).
DOMAIN_METRICS = (("map50", "mAP50"), ("recall", "recall at the operating threshold"))


def _domain_check(
    candidate: dict[str, Any], production: dict[str, Any], tolerance: float | None
) -> tuple[dict[str, Any], list[str]] | None:
    """Per-domain comparison (``checks["domains"]`` and the reasons of a refusal), or None when
    the policy does not check domains or the test split records none.

    A domain production has and the candidate lacks cannot happen on one test split; a domain
    only one side has is skipped (there is nothing to compare).
    """
    cand_d, prod_d = candidate.get("domains") or {}, production.get("domains") or {}
    if tolerance is None or not cand_d or not prod_d:
        return None
    per: dict[str, Any] = {}
    reasons: list[str] = []
    for dom in sorted(set(cand_d) & set(prod_d)):
        row: dict[str, Any] = {"n_images": cand_d[dom].get("n_images"), "n_gt": cand_d[dom].get("n_gt")}
        for key, label in DOMAIN_METRICS:
            c, p = float(cand_d[dom][key]), float(prod_d[dom][key])
            floor = p - tolerance
            ok = c >= floor - 1e-12
            row[key] = {"ok": ok, "candidate": c, "production": p, "required": round(floor, 6)}
            if not ok:
                reasons.append(
                    f"domain {dom!r}: {label} {c:.4f} < production {p:.4f} - tolerance {tolerance} "
                    f"(the total does not hide a domain)"
                )
        row["ok"] = all(row[k]["ok"] for k, _ in DOMAIN_METRICS)
        per[dom] = row
    return {"ok": not reasons, "tolerance": tolerance, "domains": per}, reasons


def candidate_parity(card: ModelCard) -> tuple[bool, str]:
    """Whether the export recorded parity between the candidate's ONNX file and its checkpoint."""
    variant = card.extra.get("variant")
    if isinstance(variant, dict):  # the candidate *is* a variant (e.g. v3-int8): its own record
        return bool(variant.get("offered")), variant.get(
            "reason"
        ) or f"{variant.get('name')} variant within tolerance"
    record = (card.extra.get("variants") or {}).get("onnx")
    if not isinstance(record, dict):
        return False, "no parity record on the card (export it with `inkloop export` to measure it)"
    if record.get("reference") is None:
        return False, record.get("note", "parity with the checkpoint was not checked")
    if not record.get("offered"):
        return False, record.get("reason", "fp32 ONNX outside parity tolerance")
    p = record.get("parity") or {}
    return True, f"fp32 ONNX vs .pt: mean box IoU {p.get('mean_iou')}, ΔmAP50 {p.get('delta_map50')}"


def _frozen_split_check(card: ModelCard, test_version: str, split: str) -> tuple[bool, str]:
    recorded = ((card.recipe or {}).get("data") or {}).get("frozen") or {}
    held_out = recorded.get(split)
    if held_out is None:
        return (
            True,
            "the candidate's recipe records no frozen test split"
            " (trained outside inkloop.lifecycle.retrain?)",
        )
    if held_out == test_version:
        return True, f"held out during training ({test_version[:19]}…)"
    return False, (
        f"the candidate was trained holding out another {split} split ({held_out[:19]}…, this one is "
        f"{test_version[:19]}…): its training data may contain these pages"
    )


def side_by_side_latency(detectors: dict[str, Any], images: list[Any], repeats: int = 3) -> dict[str, float]:
    """Median ms per image of each detector's forward pass, runs interleaved image by image.

    Interleaving (A, B, B, A, …) makes background load, CPU frequency and cache effects hit both
    models alike, so the *ratio* is meaningful even on a busy machine. Only ``session.run``-level
    work is timed (``Detector.run`` on prepared tensors), not image decoding.
    """
    prepared = {k: [d.prepare(im) for im in images] for k, d in detectors.items()}
    for k, d in detectors.items():  # warm-up: first runs allocate and pick kernels
        d.run(prepared[k][:1])
    times: dict[str, list[float]] = {k: [] for k in detectors}
    order = list(detectors)
    for r in range(repeats):
        for i in range(len(images)):
            for k in order if (r + i) % 2 == 0 else reversed(order):
                t0 = time.perf_counter()
                detectors[k].run([prepared[k][i]])
                times[k].append(time.perf_counter() - t0)
    return {k: round(1000 * statistics.median(v), 3) for k, v in times.items()}


def _registry(registry: RegistryArg) -> ModelRegistry:
    from inkloop.models.resolve import open_registry

    return open_registry(registry)


def _fetch_verified(reg: ModelRegistry, name: str, version: str) -> ModelRef:
    """Every file of a version (the ONNX model, and its checkpoint when it has one) as local
    copies whose SHA-256 matched the card as they were kept; the gate measures those copies.

    Why not :meth:`~inkloop.models.registry.ModelRegistry.verify` and then ``fetch``: on a remote
    registry each reads the files over the network, two downloads of every model per gate run;
    the fetch alone checks the bytes it keeps (a cached copy is hashed again before it is used).
    """
    from inkloop.models.registry import PT_FILE
    from inkloop.models.registry.base import files_of

    return reg.fetch(name, version, with_pt=PT_FILE in files_of(reg.show(name, version)))


def evaluate_gate(
    name: str,
    data: str | os.PathLike[str],
    *,
    registry: RegistryArg = None,
    candidate: str = "candidate",
    production: str = "production",
    split: str = "test",
    policy: GatePolicy | None = None,
) -> GateDecision:
    """Measure candidate and production on ``data``'s frozen ``split`` and decide; moves nothing.
    ``data`` may be a storage URL (a curated version in a bucket: copied to local scratch).

    ``candidate``/``production`` are versions or aliases in ``registry`` (a :class:`Registry` or
    its URL). Both models' files are fetched once and checksum-verified before anything is
    measured; a corrupt file raises :class:`ModelError` naming it.
    """
    from inkloop.detection.detector import Detector
    from inkloop.evaluation.evaluator import EVAL_CONF, UNKNOWN_DOMAIN, evaluate, load_dataset, load_rgb
    from inkloop.lifecycle.training import local_dataset, samples_version
    from inkloop.lifecycle.variants import summarize_report

    t0 = time.perf_counter()
    pol = policy or GatePolicy()
    reg = _registry(registry)
    cand_v = reg.resolve_version(name, candidate)
    aliases = reg.aliases(name)
    if production in aliases:
        prod_v: str | None = aliases[production]
    elif production in reg.list_versions(name):
        prod_v = production
    else:  # the alias does not exist yet: the first model of this name has nothing to beat
        prod_v = None
    refs: dict[str, ModelRef] = {"candidate": _fetch_verified(reg, name, cand_v)}
    if prod_v is not None:
        refs["production"] = _fetch_verified(reg, name, prod_v)
    local = local_dataset(data)  # a stored dataset is measured from a local copy
    dataset = load_dataset(local, split)
    test_version = samples_version(dataset.samples)  # the split just loaded, not read again
    test_set: dict[str, Any] = {
        "data": str(data),
        "split": split,
        "version": test_version,
        "images": len(dataset),
    }
    if dataset.has_domains:  # which domains the frozen split holds, and how many pages each
        test_set["domains"] = dict(Counter(s.domain or UNKNOWN_DOMAIN for s in dataset.samples))
    cand_card = refs["candidate"].card
    if prod_v is not None and list(refs["production"].card.class_names) != list(cand_card.class_names):
        raise ModelError(
            f"{name}@{cand_v} predicts {cand_card.class_names}, production {name}@{prod_v} predicts "
            f"{refs['production'].card.class_names}: their metrics are not comparable"
        )
    if prod_v == cand_v:
        return GateDecision(
            name=name,
            candidate=cand_v,
            production=prod_v,
            promote=True,
            test_set=test_set,
            reasons=[f"{name}@{cand_v} already is {production}"],
            policy=pol.to_dict(),
            alias=production,
            seconds=round(time.perf_counter() - t0, 3),
        )
    detectors = {k: Detector(r, conf=EVAL_CONF, iou=r.card.iou_threshold) for k, r in refs.items()}
    metrics: dict[str, dict[str, Any] | None] = {"production": None}
    for k, det in detectors.items():
        metrics[k] = summarize_report(evaluate(det, local, split).to_dict())
    latency: dict[str, float | None] = {"candidate_ms": None, "production_ms": None, "ratio": None}
    if prod_v is not None:
        # One intra-op thread each: with a machine's cores shared with other work (a training
        # job, the other model's run), multi-threaded timings vary far more than the models do.
        timed = {k: Detector(r, conf=r.card.conf_threshold, threads=1) for k, r in refs.items()}
        images = [load_rgb(s.image) for s in dataset.samples[: max(1, pol.latency_images)]]
        repeats = max(pol.latency_repeats, math.ceil(12 / len(images)))  # at least 12 timings each
        ms = side_by_side_latency(timed, images, repeats)
        latency = {
            "candidate_ms": ms["candidate"],
            "production_ms": ms["production"],
            "ratio": round(ms["candidate"] / ms["production"], 4) if ms["production"] else None,
        }
    cand_metrics = metrics["candidate"]
    assert cand_metrics is not None
    promote, reasons, checks = decide(
        cand_metrics,
        metrics["production"],
        pol,
        latency_ratio=latency["ratio"],
        parity=candidate_parity(cand_card),
        test_split=_frozen_split_check(cand_card, test_version, split),
    )
    return GateDecision(
        name=name,
        candidate=cand_v,
        production=prod_v,
        promote=promote,
        reasons=reasons,
        checks=checks,
        metrics=metrics,
        latency=latency,
        test_set=test_set,
        policy=pol.to_dict(),
        alias=production,
        seconds=round(time.perf_counter() - t0, 3),
    )


def write_decision(registry: RegistryArg, decision: GateDecision) -> str:
    """Store ``gate.json`` in the candidate's version folder (beside, not inside, its card).

    The card and the files it vouches for are immutable; the gate's verdict is an annotation that
    a later gate run (new test set, new production) may replace, so it lives in its own file.
    """
    reg = _registry(registry)
    data = (json.dumps(decision.to_dict(), indent=2) + "\n").encode()
    return str(reg.write_file(decision.name, decision.candidate, GATE_FILE, data))


def read_decision(registry: RegistryArg, name: str, version: str) -> dict[str, Any] | None:
    """The last gate decision stored for a version, or None."""
    raw = _registry(registry).read_file(name, version, GATE_FILE)
    return json.loads(raw) if raw is not None else None


def promote(
    name: str,
    data: str | os.PathLike[str] | None = None,
    *,
    registry: RegistryArg = None,
    candidate: str = "candidate",
    alias: str = "production",
    split: str = "test",
    policy: GatePolicy | None = None,
    force: bool = False,
) -> GateDecision:
    """Gate ``candidate`` against ``alias`` and move the alias only if the gate says so.

    ``force`` skips the measurements (never the checksum verification: a corrupt model is refused
    with :class:`ModelError` either way: the gate checks the copies it fetches before measuring,
    and the registry checks the candidate again before it moves the alias). The decision is
    written as ``gate.json`` beside the candidate and returned; ``decision.promoted`` says whether
    the alias moved.
    """
    reg = _registry(registry)
    cand_v = reg.resolve_version(name, candidate)
    if force:
        decision = GateDecision(
            name=name,
            candidate=cand_v,
            production=reg.alias(name, alias),
            promote=True,
            forced=True,
            reasons=["forced: the gate was not run"],
            policy=(policy or GatePolicy()).to_dict(),
            alias=alias,
        )
    else:
        if data is None:
            raise ValueError("the gate needs the dataset with the frozen test split (or force=True)")
        decision = evaluate_gate(
            name, data, registry=reg, candidate=cand_v, production=alias, split=split, policy=policy
        )
    if decision.promote:
        decision.previous = reg.promote(name, cand_v, alias)
        decision.promoted = decision.previous != cand_v
        logger.info("%s@%s → %s (was %s)", name, alias, cand_v, decision.previous)
    else:
        logger.info("%s@%s refused: %s", name, cand_v, "; ".join(decision.reasons))
    try:
        write_decision(reg, decision)
    except Exception as exc:  # the alias already moved (or not): a failed annotation must not hide that
        logger.warning("could not write %s for %s@%s: %s", GATE_FILE, name, cand_v, exc)
    _track_decision(reg.show(name, cand_v), decision)
    return decision


def _track_decision(card: ModelCard, decision: GateDecision) -> None:
    """Log the decision and its reasons into the candidate's training run, when it was tracked."""
    from inkloop.lifecycle.tracking import tracker_for_card

    tracker = tracker_for_card(card)
    if not tracker.active:
        return
    tracker.set_tags(
        {
            "inkloop.gate.promote": decision.promote,
            "inkloop.gate.promoted": decision.promoted,
            "inkloop.gate.reasons": "; ".join(decision.reasons)[:5000],
        }
    )
    for who, m in (decision.metrics or {}).items():
        tracker.log_metrics({f"gate.{who}.{k}": v for k, v in (m or {}).items()})
    tracker.log_metrics({"gate.promote": int(decision.promote)})
    tracker.log_dict(decision.to_dict(), f"gate/{GATE_FILE}")

"""inkloop's public API: one way to detect, and the names a Python user needs.

``import inkloop`` re-exports every name of :data:`__all__` (lazily: the package itself stays
light, and the first use of ``inkloop.detect`` imports this module)::

    import inkloop

    summary = inkloop.detect(["inbox/"], "out", routing=inkloop.RoutingConfig())
    pages = inkloop.read_results("out")

:func:`detect` is the one detection entry point: the SDK, ``inkloop detect`` and the Airflow
operator all go through it, so a run means the same thing everywhere. It runs the stages in
order — detection (:class:`~inkloop.detection.pipeline.DetectionRun`), routing's per-page scores
while detecting, then the signing verdicts (on by default, everywhere) and routing's decisions
over the whole run — which is why it lives here, above each of those stages, and not in
detection.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from inkloop import storage
from inkloop.detection.detector import Detector
from inkloop.detection.pipeline import DetectionRun, DetectOptions, ProgressFn
from inkloop.detection.results import Summary, read_quarantine, read_results, read_summary
from inkloop.documents.limits import Limits
from inkloop.models.references import ModelCard, ModelError, ModelRef
from inkloop.models.registry import Registry
from inkloop.models.resolve import open_registry, resolve_model
from inkloop.routing import RoutingConfig, RoutingScorer, read_routing, route_run
from inkloop.verdict.integrate import judge_run
from inkloop.verdict.judge import VerdictConfig
from inkloop.verdict.record import DocumentVerdict, read_verdicts

__all__ = [
    "DetectOptions",
    "Detector",
    "DocumentVerdict",
    "Limits",
    "ModelCard",
    "ModelError",
    "ModelRef",
    "ProgressFn",
    "Registry",
    "RoutingConfig",
    "Summary",
    "VerdictConfig",
    "detect",
    "open_registry",
    "read_quarantine",
    "read_results",
    "read_routing",
    "read_summary",
    "read_verdicts",
    "resolve_model",
]


def detect(
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    options: DetectOptions | None = None,
    *,
    routing: RoutingConfig | None = None,
    verdict: bool | VerdictConfig = True,
    progress: ProgressFn | None = None,
    detector: Detector | None = None,
) -> Summary:
    """Detect signatures in files, folders or storage URLs into ``out_dir``; return the run's summary.

    Every input ends in ``results.jsonl`` or ``quarantine.jsonl`` (:class:`DetectOptions`: model,
    threshold, outputs, limits, storage options). Then:

    - ``routing``: each page's uncertainty is scored while detecting, and ``routing.jsonl`` gets
      the budgeted decisions (review / audit / auto_accept) over the whole folder;
    - ``verdict`` (default on): each document's signing verdict goes to ``verdicts.jsonl`` and
      its counts into the summary; ``True`` judges at the threshold the results were cut at, a
      :class:`VerdictConfig` is used as given, ``False`` skips it. With routing, the run is
      routed once, after the verdicts, which put the documents that need a person first.

    ``progress`` receives ``(event, info)``: ``start``, ``document``, ``skip``, ``quarantine``,
    ``routing`` (counts per decision, when routed without verdicts) and ``end``. ``detector``
    reuses a loaded :class:`Detector` (its own threshold and backend) instead of loading
    ``options.model``. Raises :class:`ModelError` before reading any input when the model cannot
    be loaded.
    """
    options = options or DetectOptions()
    notify: ProgressFn = progress or (lambda event, info: None)
    # "end" closes the run for listeners: held back until routing's decisions are written
    ended: list[dict[str, Any]] = []

    def relay(event: str, info: dict[str, Any]) -> None:
        if event == "end" and routing is not None and verdict is False:
            ended.append(info)
        else:
            notify(event, info)

    with storage.scoped_options(options.storage_options):  # verdicts and routing read the same storage
        scorer = RoutingScorer(routing) if routing is not None else None
        run = DetectionRun(out_dir, options, detector=detector, scorer=scorer)
        summary = run.run([os.fspath(i) for i in inputs], relay)
        if verdict is not False:
            # The verdict's ambiguous band sits on the threshold the results were cut at.
            config = verdict if isinstance(verdict, VerdictConfig) else None
            config = config or VerdictConfig.at(run.detector.thresholds)
            summary, _ = judge_run(out_dir, summary, config, routing)  # routes once, with the verdicts
        elif routing is not None:
            decisions = [r.decision for r in route_run(out_dir, routing)]
            notify("routing", {d: decisions.count(d) for d in ("review", "audit", "auto_accept")})
            for info in ended:
                notify("end", info)
    return summary

"""The Assets that link the loop's DAGs: results → reviews/curation → training data → model."""

from __future__ import annotations

import os
from typing import Any

from airflow.sdk import Asset

from inkloop.storage import is_url, join

#: Root of the loop's storage on this deployment (a local folder or a storage URL).
INKLOOP_ROOT = os.environ.get("INKLOOP_DATA", os.path.expanduser("~/inkloop-data"))


def asset_uri(*parts: str) -> str:
    """The Asset URI of a place under ``INKLOOP_ROOT``: the storage URL itself (``s3://…``) when
    the data lives in a bucket, else ``file://`` and the absolute local path."""
    if is_url(INKLOOP_ROOT):
        return join(INKLOOP_ROOT, *parts)
    local = os.path.abspath(INKLOOP_ROOT.removeprefix("file://"))
    return "file://" + join(local, *parts)


RESULTS = Asset(name="inkloop_results", uri=asset_uri("results"))
TRAINING_DATA = Asset(name="inkloop_training_data", uri=asset_uri("datasets"))
PRODUCTION_MODEL = Asset(name="inkloop_production_model", uri=asset_uri("registry", "production"))
#: "Reviewers finished or changed reviews": published from outside Airflow, by the ML backend on
#: Label Studio's webhooks (``POST /api/v2/assets/events``, inkloop.review.backend) and by its
#: *Start training*; schedules the pull-and-curate half of the review sync (inkloop_review_curate).
REVIEWS = Asset(name="inkloop_reviews", uri=asset_uri("reviews"))


def triggering_results_dirs(context: Any, default: str) -> list[str]:
    """Every results folder the run was triggered by, oldest first, each once, plus the folders
    published after the run's event window.

    Airflow folds Asset events that arrive close together into one DAG run; each event of
    ``inkloop_results`` carries its folder (``extra["results_dir"]``, set by the merge task), so a
    consumer must process all of them, not just the last. And Airflow 3.3 ends an asset-triggered
    run's window at the *first* event that queued it (one ``AssetDagRunQueue`` row per asset,
    its ``created_at`` kept), then deletes the queue row: events published after that one but
    before the run was created (while an earlier run held ``max_active_runs``, say) fall outside
    the window and wait for a run that only a later event creates. A task that declares
    ``inlets=[RESULTS]`` therefore also reads the events after its window (measured on the
    Celery deployment: three folders published while a sync waited, one run, window holding
    the first). A later run may read them again; push and curate are idempotent by page key.
    ``default`` when the run was not triggered by an event with a folder (a manual run).
    """
    events = context.get("triggering_asset_events") or {}
    dirs: list[str] = []
    latest = None
    for asset_events in events.values():
        for event in asset_events:
            stamp = getattr(event, "timestamp", None)
            if stamp is not None and (latest is None or stamp > latest):
                latest = stamp
            _add_dir(dirs, event)
    if latest is not None:
        for event in _events_after(context, latest):
            _add_dir(dirs, event)
    return dirs or [default]


def _add_dir(dirs: list[str], event: Any) -> None:
    d = (getattr(event, "extra", None) or {}).get("results_dir")
    if d and str(d) not in dirs:
        dirs.append(str(d))


def _events_after(context: Any, stamp: Any) -> list[Any]:
    """``inkloop_results`` events after ``stamp``, oldest first, if the task declared the Asset
    as an inlet (else none: the window's events are all it can see)."""
    inlets = context.get("inlet_events")
    if not inlets:
        return []
    try:
        return list(inlets[RESULTS].after(stamp).ascending())
    except KeyError:  # not an inlet of this task
        return []

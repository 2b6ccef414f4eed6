"""The Assets that link the loop's DAGs: results → reviews/curation → training data → model."""

from __future__ import annotations

import os
from typing import Any

from airflow.sdk import Asset

#: Root of the loop's storage on this deployment (a local folder or a storage URL).
INKLOOP_ROOT = os.environ.get("INKLOOP_DATA", os.path.expanduser("~/inkloop-data"))

RESULTS = Asset(name="inkloop_results", uri=f"file://{INKLOOP_ROOT}/results")
TRAINING_DATA = Asset(name="inkloop_training_data", uri=f"file://{INKLOOP_ROOT}/datasets")
PRODUCTION_MODEL = Asset(name="inkloop_production_model", uri=f"file://{INKLOOP_ROOT}/registry/production")


def triggering_results_dirs(context: Any, default: str) -> list[str]:
    """Every results folder the run was triggered by, oldest first, each once.

    Airflow folds Asset events that arrive close together into one DAG run; each event of
    ``inkloop_results`` carries its folder (``extra["results_dir"]``, set by the merge task), so a
    consumer must process all of them, not just the last. ``default`` when the run was not
    triggered by an event with a folder (a manual run).
    """
    events = context.get("triggering_asset_events") or {}
    dirs: list[str] = []
    for asset_events in events.values():
        for event in asset_events:
            d = (getattr(event, "extra", None) or {}).get("results_dir")
            if d and d not in dirs:
                dirs.append(str(d))
    return dirs or [default]

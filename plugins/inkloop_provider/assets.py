"""The Assets that link the loop's DAGs: results → reviews/curation → training data → model."""

from __future__ import annotations

import os

from airflow.sdk import Asset

#: Root of the loop's storage on this deployment (a local folder or a storage URL).
INKLOOP_ROOT = os.environ.get("INKLOOP_DATA", os.path.expanduser("~/inkloop-data"))

RESULTS = Asset(name="inkloop_results", uri=f"file://{INKLOOP_ROOT}/results")
TRAINING_DATA = Asset(name="inkloop_training_data", uri=f"file://{INKLOOP_ROOT}/datasets")
PRODUCTION_MODEL = Asset(name="inkloop_production_model", uri=f"file://{INKLOOP_ROOT}/registry/production")

"""Curation operator: reviews → FiftyOne dataset → evaluation, issues, frozen split → YOLO export.

A thin shell over :func:`inkloop.curation.cycle.curate_cycle`; FiftyOne's database comes from its own
configuration (``FIFTYONE_DATABASE_URI`` / ``FIFTYONE_DATABASE_DIR``) on the worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from inkloop_provider.links.labelstudio import FiftyOneDatasetLink
from inkloop_provider.operators.base import InkloopStorageOperator


class InkloopCurateOperator(InkloopStorageOperator):
    """Import results + reviews, evaluate, flag issues, export a versioned YOLO training set
    (results, reviews and exports may be storage URLs, reached through ``storage_conn_id``)."""

    template_fields: Sequence[str] = ("results_dir", "reviews", "dataset", "export_dir", "storage_conn_id")
    operator_extra_links = (FiftyOneDatasetLink(),)

    def __init__(
        self,
        *,
        results_dir: str,
        reviews: str,
        export_dir: str,
        dataset: str = "inkloop",
        find_issues: bool = True,
        app_url: str = "http://127.0.0.1:5151",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.results_dir = results_dir
        self.reviews = reviews
        self.export_dir = export_dir
        self.dataset = dataset
        self.find_issues = find_issues
        self.app_url = app_url

    def execute(self, context: Context) -> dict[str, Any]:
        from inkloop.curation.cycle import curate_cycle
        from inkloop_provider.assets import triggering_results_dirs

        dirs = triggering_results_dirs(context, self.results_dir)
        summary: dict[str, Any] = {}
        with self.storage():
            for results_dir in dirs:  # every folder of the events folded into this run
                summary = curate_cycle(
                    results_dir,
                    self.reviews,
                    self.export_dir,
                    dataset=str(self.dataset),
                    find_issues=self.find_issues,
                )
        summary["results_dirs"] = dirs
        context["ti"].xcom_push(key="fiftyone_url", value=f"{self.app_url}/datasets/{self.dataset}")
        return summary

"""Extra links from task instances to the Label Studio project and the FiftyOne dataset."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom


class LabelStudioProjectLink(BaseOperatorLink):
    """Opens the review project the task pushed to or pulled from (URL kept in XCom)."""

    name = "Label Studio project"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return XCom.get_value(ti_key=ti_key, key="project_url") or ""


class FiftyOneDatasetLink(BaseOperatorLink):
    """Opens the curated dataset in a FiftyOne App (URL kept in XCom by curation tasks)."""

    name = "FiftyOne dataset"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return XCom.get_value(ti_key=ti_key, key="fiftyone_url") or ""

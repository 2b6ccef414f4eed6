"""Wait for reviewers: succeed once a project has N finished (submitted or skipped) reviews."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, Context

from inkloop_provider.hooks.labelstudio import LabelStudioHook
from inkloop_provider.links.labelstudio import LabelStudioProjectLink
from inkloop_provider.triggers.review import LabelStudioReviewsTrigger


class LabelStudioReviewsSensor(BaseSensorOperator):
    """Deferrable by default: the wait runs in the triggerer and holds no worker slot."""

    template_fields: Sequence[str] = ("project", "min_reviewed")
    operator_extra_links = (LabelStudioProjectLink(),)

    def __init__(
        self,
        *,
        project: str = "inkloop review",
        min_reviewed: int | str = 1,
        labelstudio_conn_id: str = LabelStudioHook.default_conn_name,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", 60.0)
        super().__init__(**kwargs)
        self.project = project
        self.min_reviewed = min_reviewed
        self.labelstudio_conn_id = labelstudio_conn_id
        self.deferrable = deferrable

    def _status(self) -> dict[str, Any]:
        from inkloop_provider.operators.review import review_client

        return review_client(self.labelstudio_conn_id, self.project).status()

    def poke(self, context: Context) -> bool:
        s = self._status()
        return int(s["reviewed"]) + int(s["skipped"]) >= int(self.min_reviewed)

    def execute(self, context: Context) -> Any:
        status = self._status()
        context["ti"].xcom_push(key="project_url", value=status["url"])
        if not self.deferrable or int(status["reviewed"]) + int(status["skipped"]) >= int(self.min_reviewed):
            return super().execute(context)
        self.defer(
            trigger=LabelStudioReviewsTrigger(
                self.labelstudio_conn_id, self.project, int(self.min_reviewed), float(self.poke_interval)
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout)) if self.timeout else None,
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if not event or event.get("status") != "ready":
            raise RuntimeError(f"review wait ended without enough reviews: {event}")
        return event

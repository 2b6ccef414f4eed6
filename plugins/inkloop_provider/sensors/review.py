"""Wait for reviewers: succeed once a project has N reviews (submitted or skipped) more than it had
when the wait began (its baseline).

A project that already had N reviews from earlier syncs must still wait for new ones, else every
sync after the first would pull nothing new and retrain on the same data. The baseline is the push's
``reviews_before`` (the count before the pages went in) or, without one, the count at the sensor's
first look; it is kept in XCom (``baseline``) and in the trigger's kwargs. The DAGs pass the push's
count as an XComArg (``push.output["reviews_before"]``) and ``min_reviewed`` rendered natively,
so both arrive as ints.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, Context

from inkloop_provider.hooks.labelstudio import LabelStudioHook
from inkloop_provider.links.labelstudio import LabelStudioProjectLink
from inkloop_provider.triggers.review import LabelStudioReviewsTrigger, new_reviews


class LabelStudioReviewsSensor(BaseSensorOperator):
    """Deferrable by default: the wait runs in the triggerer and holds no worker slot."""

    template_fields: Sequence[str] = ("project", "min_reviewed", "baseline")
    operator_extra_links = (LabelStudioProjectLink(),)

    def __init__(
        self,
        *,
        project: str = "inkloop review",
        min_reviewed: int = 1,
        labelstudio_conn_id: str = LabelStudioHook.default_conn_name,
        deferrable: bool = True,
        baseline: int | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", 60.0)
        super().__init__(**kwargs)
        self.project = project
        self.min_reviewed = min_reviewed
        self.labelstudio_conn_id = labelstudio_conn_id
        self.deferrable = deferrable
        #: reviews not to count (the push's ``reviews_before``); None: the count at the first look
        self.baseline: int | None = baseline

    def _status(self) -> dict[str, Any]:
        from inkloop_provider.operators.review import review_client

        return review_client(self.labelstudio_conn_id, self.project).status()

    def _baseline(self, context: Context, status: dict[str, Any]) -> int:
        if self.baseline is None:
            self.baseline = int(status["reviews"])
        context["ti"].xcom_push(key="baseline", value=self.baseline)
        return int(self.baseline)

    def poke(self, context: Context) -> bool:
        s = self._status()
        return new_reviews(s, self._baseline(context, s)) >= int(self.min_reviewed)

    def execute(self, context: Context) -> Any:
        status = self._status()
        context["ti"].xcom_push(key="project_url", value=status["url"])
        baseline = self._baseline(context, status)
        if not self.deferrable or int(self.min_reviewed) <= 0:
            return super().execute(context)
        self.defer(
            trigger=LabelStudioReviewsTrigger(
                self.labelstudio_conn_id,
                self.project,
                int(self.min_reviewed),
                float(self.poke_interval),
                baseline=baseline,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout)) if self.timeout else None,
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if not event or event.get("status") != "ready":
            raise RuntimeError(f"review wait ended without enough reviews: {event}")
        return event

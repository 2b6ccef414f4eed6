"""A trigger that waits, in the triggerer, until a Label Studio project has N new reviews.

It holds no worker slot while it waits. Only the connection id travels in its kwargs (they are
stored in Airflow's database): the token is read from the connection when the trigger runs.

It is the fallback when Label Studio's webhooks are not wired to Airflow (inkloop.review.backend
publishes the ``inkloop_reviews`` Asset on each review): each poll is one call for the project's
own counters (``inkloop.review.labelstudio.LabelStudioReview.status``), never a listing of every
task. ``baseline`` is the project's review count (submitted + skipped annotations) when the wait
began: only reviews after it count, so a project that already had ``min_reviewed`` reviews still
waits for new ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


def new_reviews(status: dict[str, Any], baseline: int) -> int:
    """Reviews (submitted or skipped annotations) since ``baseline``, from a status' counters."""
    return int(status["reviews"]) - int(baseline)


class LabelStudioReviewsTrigger(BaseTrigger):
    def __init__(
        self, conn_id: str, project: str, min_reviewed: int, poll_interval: float = 60.0, baseline: int = 0
    ) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.project = project
        self.min_reviewed = min_reviewed
        self.poll_interval = poll_interval
        self.baseline = baseline

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "inkloop_provider.triggers.review.LabelStudioReviewsTrigger",
            {
                "conn_id": self.conn_id,
                "project": self.project,
                "min_reviewed": self.min_reviewed,
                "poll_interval": self.poll_interval,
                "baseline": self.baseline,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from inkloop_provider.operators.review import review_client

        client = None
        while True:
            try:
                if client is None:
                    client = await asyncio.to_thread(review_client, self.conn_id, self.project)
                status = await asyncio.to_thread(client.status)
            except Exception as exc:  # the SDK already retried; report and keep waiting
                self.log.warning("Label Studio status failed: %s", exc)
            else:
                done = new_reviews(status, self.baseline)
                if done >= self.min_reviewed:
                    yield TriggerEvent(
                        {"status": "ready", "new_reviews": done, "baseline": self.baseline, **status}
                    )
                    return
                self.log.info(
                    "%d of %d new reviews finished (baseline %d)", done, self.min_reviewed, self.baseline
                )
            await asyncio.sleep(self.poll_interval)

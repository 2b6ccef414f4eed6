"""A trigger that waits, in the triggerer, until a Label Studio project has N finished reviews.

It holds no worker slot while it waits. Only the connection id travels in its kwargs (they are
stored in Airflow's database): the token is read from the connection when the trigger runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


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

        while True:
            try:
                status = await asyncio.to_thread(lambda: review_client(self.conn_id, self.project).status())
            except Exception as exc:  # the SDK already retried; report and keep waiting
                self.log.warning("Label Studio status failed: %s", exc)
            else:
                done = int(status["reviewed"]) + int(status["skipped"]) - self.baseline
                if done >= self.min_reviewed:
                    yield TriggerEvent({"status": "ready", **status})
                    return
                self.log.info("%d of %d reviews finished", done, self.min_reviewed)
            await asyncio.sleep(self.poll_interval)

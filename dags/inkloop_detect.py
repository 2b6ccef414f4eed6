"""inkloop_detect: a watched inbox → detections and signing verdicts, spread over workers.

Runs on a schedule (``INKLOOP_DETECT_SCHEDULE``, a cron expression or preset; default every 10
minutes; ``none`` for manual runs only), one run at a time. Each run lists the inbox's documents
no earlier run has finished (by ``doc_id``, the SHA-256 of the bytes, so a file dropped again is
not processed twice), stops at once when there are none, else: one mapped detect task per batch
(each writes its own part folder and derives its documents' verdicts) → merge into the results
folder, which is published as an Asset for the review step.

Storage: the inbox and results default to ``$INKLOOP_DATA/inbox`` and ``$INKLOOP_DATA/results``
(a folder or a bucket, ``s3://…``); every task that lists, reads or writes them uses the storage
connection ``storage_conn_id`` (param, else the Variable ``inkloop_storage_conn_id``; its default
``$INKLOOP_STORAGE_CONN_ID``). Templates render as native objects: ``conf`` is None or a float.
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import Param, task

from inkloop_provider.assets import INKLOOP_ROOT, RESULTS
from inkloop_provider.dag_defaults import RUN_FOLDER, from_params, inkloop_dag
from inkloop_provider.hooks.storage import STORAGE_CONN_TEMPLATE
from inkloop_provider.operators.detect import InkloopDetectOperator
from inkloop_provider.operators.results import InkloopMergeResultsOperator

_SCHEDULE = os.environ.get("INKLOOP_DETECT_SCHEDULE", "*/10 * * * *").strip()
SCHEDULE = None if _SCHEDULE.lower() in ("", "none", "manual") else _SCHEDULE
# A worker lost mid-batch (killed, evicted, out of memory) fails its task once the scheduler misses
# its heartbeat; the retry runs on any worker and resumes the batch's part folder (documents already
# written there are skipped), so a lost worker costs time, never documents.
RETRIES = int(os.environ.get("INKLOOP_TASK_RETRIES", "2"))
RETRY_DELAY = timedelta(seconds=float(os.environ.get("INKLOOP_RETRY_DELAY", "60")))


@inkloop_dag(
    "inkloop_detect",
    schedule=SCHEDULE,
    max_active_runs=1,  # never two runs over the same inbox files at once
    dagrun_timeout=timedelta(hours=6),
    default_args={"retries": RETRIES, "retry_delay": RETRY_DELAY},
    params={
        "inbox": Param(
            os.environ.get("INKLOOP_INBOX", f"{INKLOOP_ROOT}/inbox"),
            type="string",
            description="Folder or storage URL of new documents",
        ),
        "out_dir": Param(f"{INKLOOP_ROOT}/results", type="string"),
        "model": Param(
            os.environ.get("INKLOOP_MODEL", "bundled"),
            type="string",
            description="bundled, a path, hf://… or registry://name@production (resolved when the task "
            "runs, so a promotion is picked up by the next run)",
        ),
        "route": Param(True, type="boolean", description="score uncertainty and write routing.jsonl"),
        "verdict": Param(True, type="boolean", description="derive each document's signing verdict"),
        "docs_per_batch": Param(20, type="integer", minimum=1),
        "conf": Param(None, type=["null", "number"]),
    },
    doc=__doc__,
)
def inkloop_detect() -> None:
    @task
    def list_batches(storage_conn_id: str | None, params: dict | None = None) -> list[list[str]]:
        from inkloop.detection.inbox import plan_inbox
        from inkloop_provider.hooks.storage import connection_storage

        assert params is not None
        with connection_storage(storage_conn_id):  # the inbox and the results' index may be a bucket
            return plan_inbox(params["inbox"], params["out_dir"], params["docs_per_batch"], max_batches=64)

    @task.short_circuit
    def anything_new(batches: list[list[str]]) -> bool:
        return bool(batches)  # an empty inbox ends the run here, in seconds

    @task
    def part_dirs(batches: list[list[str]], run_folder: str, params: dict | None = None) -> list[str]:
        assert params is not None
        return [f"{params['out_dir']}/parts/{run_folder}/{i:04d}" for i in range(len(batches))]

    batches = list_batches(STORAGE_CONN_TEMPLATE)
    gate = anything_new(batches)
    parts = part_dirs(batches, RUN_FOLDER)
    gate >> parts
    detected = InkloopDetectOperator.partial(
        task_id="detect",
        **from_params("model", "conf", "route", "verdict"),
    ).expand_kwargs(batches.zip(parts).map(lambda bp: {"inputs": bp[0], "out_dir": bp[1]}))
    merged = InkloopMergeResultsOperator(
        task_id="merge_results",
        parts=parts,
        **from_params("out_dir"),
        outlets=[RESULTS],
    )
    detected >> merged


inkloop_detect()

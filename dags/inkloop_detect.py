"""inkloop_detect: new documents in an inbox → detections, spread over workers by dynamic task mapping.

list inbox → one mapped detect task per batch (each writes its own part folder) → merge into the
run's results folder, which is published as an Asset for the review step.
"""

from __future__ import annotations

import os

from airflow.sdk import Param, dag, task

from inkloop_provider.assets import INKLOOP_ROOT, RESULTS
from inkloop_provider.operators.detect import InkloopDetectOperator
from inkloop_provider.operators.results import InkloopMergeResultsOperator


@dag(
    dag_id="inkloop_detect",
    schedule=None,
    catchup=False,
    tags=["inkloop"],
    params={
        "inbox": Param(
            f"{INKLOOP_ROOT}/inbox", type="string", description="Folder or storage URL of new documents"
        ),
        "out_dir": Param(f"{INKLOOP_ROOT}/results", type="string"),
        "model": Param(
            os.environ.get("INKLOOP_MODEL", "bundled"),
            type="string",
            description="bundled, a path, hf://… or registry://name@production (resolved when the task "
            "runs, so a promotion is picked up by the next run)",
        ),
        "route": Param(True, type="boolean", description="score uncertainty and write routing.jsonl"),
        "docs_per_batch": Param(20, type="integer", minimum=1),
        "conf": Param(None, type=["null", "number"]),
    },
    doc_md=__doc__,
)
def inkloop_detect() -> None:
    @task
    def list_batches(params: dict | None = None) -> list[list[str]]:
        from inkloop.documents.inputs import plan_batches

        assert params is not None
        return plan_batches(params["inbox"], int(params["docs_per_batch"]), max_batches=64)

    @task
    def part_dirs(
        batches: list[list[str]], params: dict | None = None, run_id: str | None = None
    ) -> list[str]:
        assert params is not None
        safe = (run_id or "run").replace(":", "_").replace("+", "_")
        return [f"{params['out_dir']}/parts/{safe}/{i:04d}" for i in range(len(batches))]

    batches = list_batches()
    parts = part_dirs(batches)
    detected = InkloopDetectOperator.partial(
        task_id="detect",
        model="{{ params.model }}",
        conf="{{ params.conf }}",
        route="{{ params.route }}",
    ).expand_kwargs(batches.zip(parts).map(lambda bp: {"inputs": bp[0], "out_dir": bp[1]}))
    merged = InkloopMergeResultsOperator(
        task_id="merge_results", out_dir="{{ params.out_dir }}", parts=parts, outlets=[RESULTS]
    )
    detected >> merged


inkloop_detect()

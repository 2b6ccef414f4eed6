"""inkloop_review_curate: new reviews in Label Studio → pull → curate → export (→ retraining).

The pull-and-curate half of the review sync, scheduled on the ``inkloop_reviews`` Asset instead of
a polling wait. The ML backend (``inkloop review backend``) publishes that Asset through Airflow's
REST API (``POST /api/v2/assets/events``) when Label Studio's webhook says an annotation was
created or updated, so the sync starts within seconds of a review and nothing polls Label Studio.
Events that arrive while a run is going are folded into the next run (``max_active_runs=1``).

Reviews trickle in one by one, and each export schedules ``inkloop_retrain``: the pull runs on
every event (it is incremental and cheap; pulled reviews are appended to ``reviews.jsonl`` and
never lost), but curation and export wait until ``min_reviewed`` reviews have been pulled since
the last export (a count kept in the Airflow Variable ``inkloop_reviews_pending:<project>``,
reset by ``reset_pending_reviews`` once ``curate`` succeeded: a failed curation keeps its count).
*Start training* in Label Studio triggers this DAG with ``min_reviewed = 0``: the reviews of the
moment are pulled, curated and exported first, and the export's ``inkloop_training_data`` event
starts ``inkloop_retrain``, so training never runs on an export older than the last review.
Templates render as native objects; results, reviews and exports may be storage URLs, reached
through ``storage_conn_id`` (see ``inkloop_detect``).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, Variable, task

from inkloop_provider.assets import INKLOOP_ROOT, REVIEWS
from inkloop_provider.dag_defaults import REVIEW_PARAMS, inkloop_dag
from inkloop_provider.operators.review import pull_and_curate


def pending_key(project: str) -> str:
    """The Airflow Variable holding the reviews pulled for ``project`` since its last export."""
    return f"inkloop_reviews_pending:{project}"


@inkloop_dag(
    "inkloop_review_curate",
    schedule=[REVIEWS],
    max_active_runs=1,  # one pull at a time: the cursor file is the pull's state
    params={
        **REVIEW_PARAMS,
        "min_reviewed": Param(
            1, type="integer", minimum=0, description="reviews pulled since the last export before exporting"
        ),
        "dataset": Param("inkloop", type="string", description="FiftyOne dataset"),
        "export_dir": Param(f"{INKLOOP_ROOT}/datasets", type="string"),
    },
    doc=__doc__,
)
def inkloop_review_curate() -> None:
    pull, curate = pull_and_curate()

    @task.short_circuit(task_id="enough_new_reviews")
    def enough_new_reviews(pulled: dict[str, Any], project: str, min_reviewed: int) -> bool:
        """Curate once ``min_reviewed`` reviews were pulled since the last export; else skip
        curation. The count is kept either way: only a curation that succeeded resets it."""
        key = pending_key(project)
        pending = int(Variable.get(key, default=0)) + int(pulled.get("pulled", 0))
        Variable.set(key, str(pending))
        ready = pending >= min_reviewed
        verdict = "curate" if ready else "wait"
        print(f"{pending} reviews pulled since the last export; {min_reviewed} needed: {verdict}")
        return ready

    @task(task_id="reset_pending_reviews")
    def reset_pending_reviews(curated: dict[str, Any], project: str) -> None:
        """The reviews counted so far are in the export ``curate`` just made (``curated``, its
        summary: taking it runs this task after a successful ``curate`` only): count from zero.
        A failed curation leaves the count as it was, so the next event curates those reviews."""
        Variable.set(pending_key(project), "0")
        print(f"curated {len(curated.get('results_dirs', []))} results folder(s): pending reviews reset")

    gate = enough_new_reviews(pull.output, "{{ params.project }}", "{{ params.min_reviewed }}")
    pull >> gate >> curate
    reset_pending_reviews(curate.output, "{{ params.project }}")


inkloop_review_curate()

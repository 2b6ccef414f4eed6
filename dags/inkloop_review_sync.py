"""inkloop_review_sync: finished reviews → ground truth in FiftyOne → a versioned training set.

Triggered when detection publishes results (the ``inkloop_results`` Asset): push the uncertain
pages to Label Studio, wait (deferrable, no worker slot held) for ``min_reviewed`` reviews more
than the project had before the push, pull them, curate in FiftyOne and export a YOLO dataset,
published as the ``inkloop_training_data`` Asset that schedules retraining.

With Label Studio's webhooks wired to Airflow (``INKLOOP_REVIEW_EVENTS=1``: the ML backend,
``inkloop review backend``, publishes ``inkloop_reviews`` on every review), this DAG only pushes;
the pull-and-curate half is ``inkloop_review_curate``, scheduled on that Asset: no polling. The
polling wait here is the fallback when no webhook is configured (docs/review.md has the picture).

The wait's baseline is the push's ``reviews_before`` as an XComArg; templates render as native
objects (``budget`` a float, ``min_reviewed`` an int). Results, reviews and exports may be storage
URLs, reached through ``storage_conn_id`` (see ``inkloop_detect``).
"""

from __future__ import annotations

import os

from airflow.sdk import Param

from inkloop_provider.assets import INKLOOP_ROOT, RESULTS
from inkloop_provider.dag_defaults import REVIEW_PARAMS, from_params, inkloop_dag
from inkloop_provider.operators.review import InkloopReviewPushOperator, pull_and_curate
from inkloop_provider.sensors.review import LabelStudioReviewsSensor

# How often the deferred sensor asks Label Studio for finished reviews: reviews take people minutes,
# so a poll every 30 s costs the server nothing and the sync at most half a minute.
REVIEW_POLL_SECONDS = float(os.environ.get("INKLOOP_REVIEW_POLL_SECONDS", "30"))
# Webhooks wired (the ML backend publishes inkloop_reviews): pull and curate run on those events
# in inkloop_review_curate, and this DAG only pushes.
REVIEW_EVENTS = os.environ.get("INKLOOP_REVIEW_EVENTS", "").strip().lower() in ("1", "true", "yes")


@inkloop_dag(
    "inkloop_review_sync",
    schedule=[RESULTS],
    # One sync at a time (two would push the same pages to one project). Results published while a
    # sync waits for reviews queue up and are folded into the next run, which reads every event.
    max_active_runs=1,
    params={
        **REVIEW_PARAMS,
        "budget": Param(
            0.1, type="number", minimum=0, maximum=1, description="share of pages sent to review"
        ),
        "min_uncertainty": Param(
            0.3, type="number", minimum=0, maximum=1, description="pages at or above it are review candidates"
        ),
        "min_reviewed": Param(
            1,
            type="integer",
            minimum=0,
            description="new reviews (since the push) to wait for before syncing",
        ),
        "dataset": Param("inkloop", type="string", description="FiftyOne dataset"),
        "export_dir": Param(f"{INKLOOP_ROOT}/datasets", type="string"),
    },
    doc=__doc__,
)
def inkloop_review_sync() -> None:
    push = InkloopReviewPushOperator(
        task_id="push_reviews",
        **from_params("results_dir", "project", "budget", "min_uncertainty"),
        inlets=[RESULTS],  # reads results published after the run's event window too
    )
    if REVIEW_EVENTS:
        return
    wait = LabelStudioReviewsSensor(
        task_id="wait_for_reviews",
        project="{{ params.project }}",
        min_reviewed="{{ params.min_reviewed }}",
        baseline=push.output["reviews_before"],
        poke_interval=REVIEW_POLL_SECONDS,
        timeout=7 * 24 * 3600,
        deferrable=True,
    )
    pull, curate = pull_and_curate(curate_inlets=[RESULTS])
    push >> wait >> pull >> curate


inkloop_review_sync()

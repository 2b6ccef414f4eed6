"""Review operators: push uncertain pages to Label Studio, pull finished reviews.

Thin shells over :func:`inkloop.review.labelstudio.push_results_dirs` and
:func:`inkloop.review.labelstudio.pull_to_file`;
the Label Studio URL and token come from an Airflow connection (``labelstudio`` type).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from inkloop_provider.assets import TRAINING_DATA
from inkloop_provider.dag_defaults import from_params
from inkloop_provider.hooks.labelstudio import LabelStudioHook
from inkloop_provider.links.labelstudio import LabelStudioProjectLink
from inkloop_provider.operators.base import InkloopStorageOperator
from inkloop_provider.operators.curate import InkloopCurateOperator


def review_client(conn_id: str, project: str) -> Any:
    from inkloop.review.labelstudio import LabelStudioReview

    url, token = LabelStudioHook(conn_id).get_url_and_token()
    # str(): rendered natively, a title such as "2027" would arrive as an int
    return LabelStudioReview(url, token, project_title=str(project))


class LabelStudioProjectOperator(InkloopStorageOperator):
    """An operator working on one Label Studio project (``project``, its title) through the
    connection ``labelstudio_conn_id``: the push and the pull share how they reach it, and the
    project's link in the task's UI."""

    operator_extra_links = (LabelStudioProjectLink(),)

    def __init__(
        self,
        *,
        project: str = "inkloop review",
        labelstudio_conn_id: str = LabelStudioHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.project = project
        self.labelstudio_conn_id = labelstudio_conn_id

    def client(self) -> Any:
        """The review client of the (rendered) project, on the connection's URL and token."""
        return review_client(self.labelstudio_conn_id, self.project)


class InkloopReviewPushOperator(LabelStudioProjectOperator):
    """Route a results folder and push its review/audit pages as pre-annotated tasks (idempotent).

    ``delivery``: ``upload`` (default), ``local-files``, or ``storage`` — the pages rendered into
    the results' bucket reach Label Studio through an S3 source storage on it (presigned links; the
    endpoint and keys of ``storage_conn_id``, ``storage_endpoint`` when Label Studio reaches the
    bucket under another address).

    Returns the push summary; with ``multiple_outputs`` (the default) each of its keys is also an
    XCom of its own, so a DAG passes ``push.output["reviews_before"]`` to the review wait.
    """

    template_fields: Sequence[str] = (
        "results_dir",
        "project",
        "budget",
        "min_uncertainty",
        "document_root",
        "images_dir",
        "storage_conn_id",
    )

    def __init__(
        self,
        *,
        results_dir: str,
        budget: float = 0.1,
        min_uncertainty: float = 0.3,
        delivery: str = "upload",
        document_root: str | None = None,
        images_dir: str | None = None,
        include_audit: bool = True,
        storage_endpoint: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("multiple_outputs", True)
        super().__init__(**kwargs)
        self.results_dir = results_dir
        self.budget = budget
        self.min_uncertainty = min_uncertainty
        self.delivery = delivery
        self.document_root = document_root
        self.images_dir = images_dir
        self.include_audit = include_audit
        self.storage_endpoint = storage_endpoint

    def execute(self, context: Context) -> dict[str, Any]:
        from inkloop.review.labelstudio import push_results_dirs
        from inkloop.routing import RoutingConfig
        from inkloop_provider.assets import triggering_results_dirs

        client = self.client()
        # the wait's baseline: reviews the project had before these pages went in
        reviews_before = client.reviews_so_far()
        routing = RoutingConfig(
            max_review_fraction=self.typed("budget", float),
            review_min_uncertainty=self.typed("min_uncertainty", float),
        )
        with self.storage():
            summary = push_results_dirs(
                client,
                triggering_results_dirs(context, self.results_dir),  # every folder folded into this run
                routing=routing,
                include_audit=self.include_audit,
                delivery=self.delivery,
                document_root=self.document_root or None,
                images_dir=self.images_dir or None,
                storage_endpoint=self.storage_endpoint or None,
            )
        context["ti"].xcom_push(key="project_url", value=summary["project_url"])
        self.log.info(
            "pushed %d new tasks (%d already there) to %s",
            summary["pushed"],
            summary["already_present"],
            summary["project_url"],
        )
        summary.pop("task_ids", None)
        summary["reviews_before"] = reviews_before
        return summary


class InkloopReviewPullOperator(LabelStudioProjectOperator):
    """Pull reviews finished since the last pull into a reviews.jsonl (incremental; a local path
    or a storage URL, reached through ``storage_conn_id``)."""

    template_fields: Sequence[str] = ("out", "project", "state", "storage_conn_id")

    def __init__(self, *, out: str, state: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.out = out
        self.state = state

    def execute(self, context: Context) -> dict[str, Any]:
        from inkloop.review.labelstudio import pull_to_file

        client = self.client()
        with self.storage():
            pulled = pull_to_file(client, self.out, self.state or None)
        # after the pull, which found the project (or failed naming it): asked before, the URL
        # would have created a project a mistyped title names, and the pull read it empty
        context["ti"].xcom_push(key="project_url", value=client.project_url())
        return pulled


def pull_and_curate(
    *, curate_inlets: Sequence[Any] = ()
) -> tuple[InkloopReviewPullOperator, InkloopCurateOperator]:
    """The review sync's second half, shared by ``inkloop_review_sync`` and ``inkloop_review_curate``:
    ``pull_reviews`` (into ``<results_dir>/reviews.jsonl``) and ``curate`` (publishing
    ``inkloop_training_data``), templated on the DAG's ``results_dir``, ``project``, ``dataset``,
    ``export_dir`` and ``storage_conn_id`` params; not chained, so each DAG puts its own gate
    between them."""
    pull = InkloopReviewPullOperator(
        task_id="pull_reviews",
        out="{{ params.results_dir }}/reviews.jsonl",
        **from_params("project"),
    )
    curate = InkloopCurateOperator(
        task_id="curate",
        reviews="{{ params.results_dir }}/reviews.jsonl",
        **from_params("results_dir", "export_dir", "dataset"),
        inlets=list(curate_inlets),
        outlets=[TRAINING_DATA],
    )
    return pull, curate

"""What every inkloop DAG shares: its settings, the params the review DAGs share, and operator
arguments templated on the DAG's params.

Why one module: each DAG repeated the same ``@dag`` settings (no catch-up, the ``inkloop`` tag,
templates rendered as native objects, the ``storage_conn_id`` param) and passed its params to its
operators one ``"{{ params.NAME }}"`` string at a time. Those settings are the contract between the
DAGs and the operators (an operator reads ``budget`` as a float only because templates render
natively; every data operator reaches storage through the same connection), so they are written
once here. The DAGs import it from the provider package, as they import the operators.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow.sdk import Param, dag

from inkloop_provider.assets import INKLOOP_ROOT
from inkloop_provider.hooks.storage import STORAGE_CONN_TEMPLATE, storage_conn_param

#: The params both review DAGs (``inkloop_review_sync``, ``inkloop_review_curate``) start with:
#: where the results are and which Label Studio project reviews them.
REVIEW_PARAMS: dict[str, Param] = {
    "results_dir": Param(f"{INKLOOP_ROOT}/results", type="string"),
    "project": Param("inkloop review", type="string", description="Label Studio project title"),
}

#: A DAG run's folder name, rendered from its ``run_id`` (``:`` and ``+`` of the timestamp in a
#: scheduled run's id become ``_``, so the name is safe in any file system and in an object key):
#: the detect run's part folders and the retrain run's folder use this one rule.
RUN_FOLDER = "{{ run_id | replace(':', '_') | replace('+', '_') }}"


def inkloop_dag(
    dag_id: str, *, schedule: Any, params: dict[str, Param], doc: str | None, **settings: Any
) -> Callable[..., Any]:
    """``@dag`` with the settings every inkloop DAG has: no catch-up, the ``inkloop`` tag,
    templates rendered as native objects (``conf`` None or a float, ``epochs`` an int), ``doc`` as
    its documentation and the ``storage_conn_id`` param after ``params``; ``settings`` are the
    DAG's own (``max_active_runs``, ``default_args`` …)."""
    return dag(
        dag_id=dag_id,
        schedule=schedule,
        catchup=False,
        tags=["inkloop"],
        render_template_as_native_obj=True,
        params={**params, "storage_conn_id": storage_conn_param()},
        doc_md=doc,
        **settings,
    )


def from_params(*names: str) -> dict[str, str]:
    """Operator arguments that take the DAG params of the same names (``{"budget": "{{ params.budget
    }}"}``), and the run's storage connection (``storage_conn_id``), which every data operator takes."""
    templated = {name: "{{ params." + name + " }}" for name in names}
    return {**templated, "storage_conn_id": STORAGE_CONN_TEMPLATE}

"""Storage options from an Airflow connection: how a deployment hands workers an S3 endpoint and
its keys without putting them in every worker's environment.

Any connection works; the Amazon provider's ``aws`` type reads naturally: ``login`` = access key
id, ``password`` = secret key, ``extra`` = ``{"endpoint_url": "http://minio:9000"}`` (or the
endpoint as ``host``/``port``/``schema``), and ``extra["storage_options"]`` for any other fsspec
option. Operators pass the result as :class:`~inkloop.detection.pipeline.DetectOptions`
``storage_options`` (or :func:`inkloop.storage.scoped_options`); without a connection, the SDK's
own order applies (fsspec configuration, then the AWS environment).

Which connection a DAG run uses (:data:`STORAGE_CONN_TEMPLATE`): the run's ``storage_conn_id``
param, whose default is ``$INKLOOP_STORAGE_CONN_ID`` where the DAGs are parsed (scheduler and DAG
processor); if that is empty, the Airflow Variable ``inkloop_storage_conn_id``; else none.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from airflow.sdk import BaseHook, Param

from inkloop.storage import scoped_options

#: Where the DAGs read the default connection id (on the scheduler and the DAG processor).
STORAGE_CONN_ENV = "INKLOOP_STORAGE_CONN_ID"
#: The Airflow Variable that names the connection when the DAG param is empty.
STORAGE_CONN_VARIABLE = "inkloop_storage_conn_id"
#: What the DAGs pass as every data operator's ``storage_conn_id``: the param, else the Variable,
#: else None. Rendered natively (``render_template_as_native_obj``), so "none" is None.
STORAGE_CONN_TEMPLATE = "{{ params.storage_conn_id or var.value.get('" + STORAGE_CONN_VARIABLE + "', None) }}"


def storage_conn_param() -> Param:
    """The DAGs' ``storage_conn_id`` param (default ``$INKLOOP_STORAGE_CONN_ID``, else none)."""
    return Param(
        os.environ.get(STORAGE_CONN_ENV) or None,
        type=["null", "string"],
        description="Airflow connection for storage URLs (s3://…: endpoint_url in extra, key/secret in "
        f"login/password); empty: the Variable {STORAGE_CONN_VARIABLE}, else the workers' own "
        "configuration (AWS environment, IAM role)",
    )


def storage_options_from_connection(conn_id: str | None) -> dict[str, Any] | None:
    """fsspec storage options (``endpoint_url``, ``key``, ``secret`` …) from connection ``conn_id``;
    None without one (the SDK's own order then applies)."""
    if not conn_id:
        return None
    conn = BaseHook.get_connection(str(conn_id))
    extra = conn.extra_dejson or {}
    opts: dict[str, Any] = dict(extra.get("storage_options") or {})
    endpoint = extra.get("endpoint_url")
    if not endpoint and conn.host:
        host = conn.host if "://" in conn.host else f"{conn.schema or 'http'}://{conn.host}"
        endpoint = f"{host}:{conn.port}" if conn.port else host
    if endpoint:
        opts.setdefault("endpoint_url", endpoint)
    if conn.login:
        opts.setdefault("key", conn.login)
    if conn.password:
        opts.setdefault("secret", conn.password)
    return opts


@contextmanager
def connection_storage(conn_id: str | None) -> Iterator[dict[str, Any] | None]:
    """Apply connection ``conn_id``'s storage options to every storage URL opened in the block
    (:func:`inkloop.storage.scoped_options`); yields them (None without a connection)."""
    options = storage_options_from_connection(conn_id)
    with scoped_options(options):
        yield options

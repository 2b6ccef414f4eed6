"""Storage options from an Airflow connection: how a deployment hands workers an S3 endpoint and
its keys without putting them in every worker's environment.

Any connection works; the Amazon provider's ``aws`` type reads naturally: ``login`` = access key
id, ``password`` = secret key, ``extra`` = ``{"endpoint_url": "http://minio:9000"}`` (or the
endpoint as ``host``/``port``/``schema``), and ``extra["storage_options"]`` for any other fsspec
option. Operators pass the result as :class:`~inkloop.detection.pipeline.DetectOptions`
``storage_options`` (or :func:`inkloop.storage.scoped_options`); without a connection, the SDK's
own order applies (fsspec configuration, then the AWS environment).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook


def storage_options_from_connection(conn_id: str | None) -> dict[str, Any] | None:
    """fsspec storage options (``endpoint_url``, ``key``, ``secret`` …) from connection ``conn_id``;
    None without one (the SDK's own order then applies)."""
    if not conn_id:
        return None
    conn = BaseHook.get_connection(conn_id)
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

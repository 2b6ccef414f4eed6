"""What every inkloop operator that reads or writes data shares: a storage connection and typed fields.

Why a base class: the loop's data (inbox, results folders, reviews, datasets, runs, the registry)
lives under one storage root, often a bucket (``INKLOOP_DATA=s3://…``). Every task that touches it
must reach that bucket with the same endpoint and keys, and a worker should not need them in its
environment: ``storage_conn_id`` names an Airflow connection
(:func:`~inkloop_provider.hooks.storage.storage_options_from_connection`) whose options apply to
every storage URL the task opens (:func:`inkloop.storage.scoped_options`; local paths are
untouched). The DAGs give it :data:`~inkloop_provider.hooks.storage.STORAGE_CONN_TEMPLATE`.

Templated fields are rendered as native objects (the DAGs set ``render_template_as_native_obj``):
``"{{ params.conf }}"`` arrives as ``None`` or a float, never as the string ``"None"``. A DAG that
renders to strings gets a clear error from :meth:`InkloopStorageOperator.typed` naming the field,
instead of a string silently taken for a value (``bool("False")`` is True).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from airflow.sdk import BaseOperator

from inkloop_provider.hooks.storage import connection_storage


class InkloopStorageOperator(BaseOperator):
    """A BaseOperator with ``storage_conn_id`` (templated in subclasses) and :meth:`storage`."""

    def __init__(self, *, storage_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: The Airflow connection for storage URLs (None: the SDK's own order, fsspec configuration
        #: then the AWS environment).
        self.storage_conn_id = storage_conn_id

    @contextmanager
    def storage(self) -> Iterator[dict[str, Any] | None]:
        """The connection's storage options applied to every storage URL opened in the block."""
        with connection_storage(self.storage_conn_id) as options:
            yield options

    def typed(self, field: str, *types: type) -> Any:
        """The rendered value of ``field`` if it is None or one of ``types`` (an int counts as a
        float); else a TypeError naming the field: its template was rendered to a string."""
        value = getattr(self, field)
        if value is None or isinstance(value, types) or (float in types and type(value) is int):
            return value
        names = " or ".join(t.__name__ for t in types)
        raise TypeError(
            f"{self.task_id}: {field} is {value!r} ({type(value).__name__}), expected {names} or None; "
            "render the DAG's templates as native objects (render_template_as_native_obj=True, as "
            "inkloop's DAGs do) or pass a value"
        )

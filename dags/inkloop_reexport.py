"""inkloop_reexport: extra formats for the production model, each on the workers that need it.

OpenVINO IR on CPU workers, a TensorRT engine on the ``gpu`` queue (skipped with a reason where no
GPU/TensorRT exists). Scheduled by the ``inkloop_production_model`` Asset, so every promotion gets
its variants. Data and exports may be storage URLs, reached through ``storage_conn_id`` (see
``inkloop_detect``).
"""

from __future__ import annotations

import os

from airflow.sdk import Param

from inkloop_provider.assets import INKLOOP_ROOT, PRODUCTION_MODEL
from inkloop_provider.dag_defaults import from_params, inkloop_dag
from inkloop_provider.operators.reexport import InkloopReexportOperator


@inkloop_dag(
    "inkloop_reexport",
    schedule=[PRODUCTION_MODEL],
    params={
        "model": Param("registry://signature-detector@production", type="string"),
        "data": Param(f"{INKLOOP_ROOT}/datasets", type="string", description="calibration/parity data"),
        "out_dir": Param(f"{INKLOOP_ROOT}/exports", type="string"),
    },
    doc=__doc__,
)
def inkloop_reexport() -> None:
    def reexport(fmt: str, **settings: str) -> InkloopReexportOperator:
        """The task exporting ``fmt`` (named for it) into the run's ``<out_dir>/<run_id>/<fmt>``."""
        return InkloopReexportOperator(
            task_id=fmt,
            out_dir="{{ params.out_dir }}/{{ run_id }}/" + fmt,
            formats=[fmt],
            **from_params("model", "data"),
            **settings,
        )

    reexport("openvino")
    reexport("tensorrt", queue=os.environ.get("INKLOOP_GPU_QUEUE", "gpu"))


inkloop_reexport()

"""inkloop_reexport: extra formats for the production model, each on the workers that need it.

OpenVINO IR on CPU workers, a TensorRT engine on the ``gpu`` queue (skipped with a reason where no
GPU/TensorRT exists). Scheduled by the ``inkloop_production_model`` Asset, so every promotion gets
its variants. Data and exports may be storage URLs, reached through ``storage_conn_id`` (see
``inkloop_detect``).
"""

from __future__ import annotations

import os

from airflow.sdk import Param, dag

from inkloop_provider.assets import INKLOOP_ROOT, PRODUCTION_MODEL
from inkloop_provider.hooks.storage import STORAGE_CONN_TEMPLATE, storage_conn_param
from inkloop_provider.operators.reexport import InkloopReexportOperator


@dag(
    dag_id="inkloop_reexport",
    schedule=[PRODUCTION_MODEL],
    catchup=False,
    tags=["inkloop"],
    render_template_as_native_obj=True,
    params={
        "model": Param("registry://signature-detector@production", type="string"),
        "data": Param(f"{INKLOOP_ROOT}/datasets", type="string", description="calibration/parity data"),
        "out_dir": Param(f"{INKLOOP_ROOT}/exports", type="string"),
        "storage_conn_id": storage_conn_param(),
    },
    doc_md=__doc__,
)
def inkloop_reexport() -> None:
    InkloopReexportOperator(
        task_id="openvino",
        model="{{ params.model }}",
        out_dir="{{ params.out_dir }}/{{ run_id }}/openvino",
        data="{{ params.data }}",
        formats=["openvino"],
        storage_conn_id=STORAGE_CONN_TEMPLATE,
    )
    InkloopReexportOperator(
        task_id="tensorrt",
        model="{{ params.model }}",
        out_dir="{{ params.out_dir }}/{{ run_id }}/tensorrt",
        data="{{ params.data }}",
        formats=["tensorrt"],
        storage_conn_id=STORAGE_CONN_TEMPLATE,
        queue=os.environ.get("INKLOOP_GPU_QUEUE", "gpu"),
    )


inkloop_reexport()

"""inkloop_reexport: extra formats for the production model, each on the workers that need it.

OpenVINO IR on CPU workers, a TensorRT engine on the ``gpu`` queue (skipped with a reason where no
GPU/TensorRT exists). Scheduled by the ``inkloop_production_model`` Asset, so every promotion gets
its variants.
"""

from __future__ import annotations

import os

from airflow.sdk import Param, dag

from inkloop_provider.assets import INKLOOP_ROOT, PRODUCTION_MODEL
from inkloop_provider.operators.reexport import InkloopReexportOperator


@dag(
    dag_id="inkloop_reexport",
    schedule=[PRODUCTION_MODEL],
    catchup=False,
    tags=["inkloop"],
    params={
        "model": Param("registry://signature-detector@production", type="string"),
        "data": Param(f"{INKLOOP_ROOT}/datasets", type="string", description="calibration/parity data"),
        "out_dir": Param(f"{INKLOOP_ROOT}/exports", type="string"),
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
    )
    InkloopReexportOperator(
        task_id="tensorrt",
        model="{{ params.model }}",
        out_dir="{{ params.out_dir }}/{{ run_id }}/tensorrt",
        data="{{ params.data }}",
        formats=["tensorrt"],
        queue=os.environ.get("INKLOOP_GPU_QUEUE", "gpu"),
    )


inkloop_reexport()

"""inkloop_retrain: curated data → fine-tune → blend with production → export → gate → promote.

Scheduled by the ``inkloop_training_data`` Asset (a new curated export from review sync). The
promotion publishes ``inkloop_production_model``; detection resolves ``registry://…@production``
when it runs, so the next detection run uses the promoted model. A refused candidate skips the
promotion (production stays, the reasons are in the gate's XCom and beside the candidate).

The export and the gate take the training's outputs as XComArgs (``train.output["best"]``, one
XCom per key of its outcome); templates render as native objects (``epochs`` an int,
``gate_policy`` a dict). Data, runs and the registry may be storage URLs, reached through
``storage_conn_id`` (see ``inkloop_detect``). The export averages the fine-tune with the
production model it started from (``parent_weight``, half and half by default; 0 turns it off):
a fine-tune on new kinds of pages costs the old ones, and the average keeps them (docs/lifecycle.md).
"""

from __future__ import annotations

import os

from airflow.sdk import Param

from inkloop_provider.assets import INKLOOP_ROOT, PRODUCTION_MODEL, TRAINING_DATA
from inkloop_provider.dag_defaults import RUN_FOLDER, from_params, inkloop_dag
from inkloop_provider.operators.lifecycle import (
    InkloopExportOperator,
    InkloopPromoteOperator,
    InkloopTrainOperator,
)

#: The training run's folder (the export goes into its ``export/``): one per DAG run.
RUN_DIR = "{{ params.runs_dir }}/" + RUN_FOLDER


@inkloop_dag(
    "inkloop_retrain",
    schedule=[TRAINING_DATA],
    params={
        "data": Param(
            f"{INKLOOP_ROOT}/datasets",
            type="string",
            description="a curated YOLO export, or the export folder (newest version is used)",
        ),
        "model_name": Param("signature-detector", type="string"),
        "registry": Param(
            f"{INKLOOP_ROOT}/registry",
            type="string",
            description="a registry folder or fsspec URL, or 'mlflow' (the MLflow Model Registry at "
            "$MLFLOW_TRACKING_URI or the Airflow connection 'mlflow')",
        ),
        "epochs": Param(30, type="integer", minimum=1),
        "imgsz": Param(
            None, type=["null", "integer"], description="default: the production model's input size"
        ),
        "time_limit": Param(6 * 3600, type="number", minimum=60, description="seconds before training stops"),
        "parent_weight": Param(
            0.5,
            type="number",
            minimum=0,
            exclusiveMaximum=1,
            description="average the fine-tune with the production model it started from, this share of "
            "production (how signature-detector@4 kept the scans, and what got routed reviews through "
            "the gate in the loop replay; 0: the fine-tune as trained)",
        ),
        "margin": Param(0.005, type="number", description="mAP50 gain the candidate needs over production"),
        "gate_policy": Param({}, type="object", description="other GatePolicy fields (max_recall_drop, …)"),
        "runs_dir": Param(f"{INKLOOP_ROOT}/runs", type="string"),
    },
    doc=__doc__,
)
def inkloop_retrain() -> None:
    train = InkloopTrainOperator(
        task_id="train",
        run_dir=RUN_DIR,
        start_from="registry://{{ params.model_name }}@production",
        **from_params("data", "registry", "epochs", "imgsz", "time_limit"),
        queue=os.environ.get("INKLOOP_TRAINING_QUEUE", "default"),  # a dedicated queue in production
    )
    export = InkloopExportOperator(
        task_id="export",
        source=train.output["best"],
        out_dir=f"{RUN_DIR}/export",
        data=train.output["data"],
        **from_params("registry", "parent_weight"),
    )
    promote = InkloopPromoteOperator(
        task_id="gate_and_promote",
        name="{{ params.model_name }}",
        data=train.output["data"],
        policy="{{ params.gate_policy }}",
        **from_params("registry", "margin"),
        outlets=[PRODUCTION_MODEL],
    )
    train >> export >> promote


inkloop_retrain()

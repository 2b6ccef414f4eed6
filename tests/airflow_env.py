"""A throwaway Airflow installation for tests: its own AIRFLOW_HOME, migrated SQLite database.

Airflow reads its configuration at import time, so every Airflow step runs in a subprocess with
this environment; the test process itself never imports airflow.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def airflow_env(home: Path, data: Path) -> dict[str, str]:
    from inkloop import privacy

    env = privacy.child_env(os.environ)  # no usage data from Airflow's processes or their children
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
        INKLOOP_DATA=str(data),
        PYTHONPATH=os.pathsep.join([str(ROOT / "plugins"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    return env


def run_airflow(env: dict[str, str], *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=env["AIRFLOW_HOME"]
    )


def migrate(home: Path, data: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    env = airflow_env(home, data)
    p = run_airflow(env, "db", "migrate")
    if p.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    p = run_airflow(env, "dags", "reserialize")
    if p.returncode != 0:
        raise RuntimeError(f"airflow dags reserialize failed:\n{p.stderr[-3000:]}")
    return env

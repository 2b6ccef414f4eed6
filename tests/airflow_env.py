"""A throwaway Airflow installation for tests: its own AIRFLOW_HOME, migrated SQLite database.

Airflow reads its configuration at import time, so every Airflow step runs in a subprocess with
this environment; the test process itself never imports airflow. A test that makes several
``airflow dags test`` runs uses one ``AirflowCLI`` process for them: each separate ``airflow``
process pays ~10 s (importing Airflow, starting its in-process execution API) before the first
task, a second run in the same process ~0.4 s.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
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
    """A migrated database in ``home`` and the environment for it. (No ``dags reserialize``:
    every ``dags test`` writes the DAGs of its bundle to the database itself.)"""
    home.mkdir(parents=True, exist_ok=True)
    env = airflow_env(home, data)
    p = run_airflow(env, "db", "migrate")
    if p.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return env


class AirflowCLI:
    """One Airflow process that runs ``airflow ARGS`` commands one after another, in Airflow's own
    CLI code (tests/airflow_cli_server.py), each with the same environment.

    ``run`` returns what ``run_airflow`` would: the exit status, and the command's output (its
    stdout and stderr together, as ``stdout``). A command that outlives ``timeout`` kills the
    process (the next ``run`` starts a new one) and raises ``TimeoutError``.
    """

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def _start(self) -> None:
        self.log = tempfile.TemporaryFile(dir=self.env["AIRFLOW_HOME"])  # noqa: SIM115 - closed in close()
        read, write = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("airflow_cli_server.py")), str(write)],
            env=self.env,
            cwd=self.env["AIRFLOW_HOME"],
            stdin=subprocess.PIPE,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            pass_fds=(write,),
        )
        os.close(write)
        self.responses = os.fdopen(read, "r")

    def run(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        assert self.proc is not None and self.proc.stdin is not None
        start = self.log.seek(0, os.SEEK_END)
        self.proc.stdin.write((json.dumps(list(args)) + "\n").encode())
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.responses], [], [], timeout)
        line = self.responses.readline() if ready else ""
        self.log.seek(start)
        output = self.log.read().decode(errors="replace")
        if not ready:
            self.close()
            raise TimeoutError(f"airflow {' '.join(args)} ran over {timeout} s:\n{output[-3000:]}")
        if not line:  # the process died
            self.proc.wait()
            return subprocess.CompletedProcess(["airflow", *args], self.proc.returncode or 1, output, "")
        return subprocess.CompletedProcess(["airflow", *args], json.loads(line)["rc"], output, "")

    def close(self) -> None:
        if self.proc is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()  # the server's loop ends
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.responses.close()
            self.log.close()
            self.proc = None

    def __enter__(self) -> AirflowCLI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

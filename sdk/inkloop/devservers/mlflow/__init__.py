"""A local MLflow tracking server for tests and first-time users: 127.0.0.1, a free port, SQLite.

``python -m inkloop.devservers.mlflow --data DIR`` starts one in the foreground; tests use
:class:`MlflowServer` (a context manager). The server is started in its own process group and
stopped by that group's id (gunicorn/uvicorn workers go with it), never by name. Telemetry and
system-metrics logging are switched off in its environment: nothing leaves the machine.
"""

from inkloop.devservers.mlflow.server import MlflowServer, MlflowServerError, offline_mlflow_env, start, stop

__all__ = ["MlflowServer", "MlflowServerError", "offline_mlflow_env", "start", "stop"]

"""``python -m inkloop.devservers.mlflow --data DIR [--port P]``: run a local MLflow server until Ctrl-C."""

import argparse
import signal
import sys
from pathlib import Path

from inkloop.devservers.mlflow.server import start, stop


def main() -> int:
    p = argparse.ArgumentParser(description="Run a local MLflow tracking server on 127.0.0.1.")
    p.add_argument("--data", type=Path, default=Path.home() / ".local" / "share" / "inkloop" / "mlflow")
    p.add_argument("--port", type=int, default=None)
    a = p.parse_args()
    handle = start(a.data, port=a.port)
    print(f"MLflow at {handle.url} (pid {handle.pid}); export MLFLOW_TRACKING_URI={handle.url}", flush=True)
    # Blocked only now, after the server started (a child would inherit the mask): sigwait then
    # receives Ctrl-C / SIGTERM instead of the default action killing us before stop() runs.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        stop(handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())

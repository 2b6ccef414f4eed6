#!/usr/bin/env bash
# The one body of setup.sh, start.sh, stop.sh and token.sh: run the Label Studio dev server's CLI
# (python -m inkloop.devservers.labelstudio COMMAND ...) with this checkout's SDK, in the dev venv if
# there is one. The logic lives in sdk/inkloop/devservers/labelstudio/ (shared with the pytest fixture).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$REPO/.venv/bin/python"
[ -x "$PY" ] || PY="$(command -v python3)"
export INKLOOP_REPO="${INKLOOP_REPO:-$REPO}"
export PYTHONPATH="$REPO/sdk${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m inkloop.devservers.labelstudio "$@"

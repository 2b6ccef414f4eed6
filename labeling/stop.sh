#!/usr/bin/env bash
# Stop the Label Studio server started by start.sh: only the PID in $INKLOOP_LS_DATA/labelstudio.pid
# (default data dir: $REPO/.cache/labelstudio), and only if that PID still is a Label Studio
# process; never anything found by name.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$REPO/.venv/bin/python"
[ -x "$PY" ] || PY="$(command -v python3)"
export INKLOOP_REPO="${INKLOOP_REPO:-$REPO}"
export PYTHONPATH="$REPO/sdk${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m inkloop.devservers.labelstudio stop "$@"

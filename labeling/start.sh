#!/usr/bin/env bash
# Start a local Label Studio server (127.0.0.1 only), wait until it answers, print URL and token.
# Runs setup.sh's install first if the venv is missing. Fails loudly if the port is taken
# (Label Studio itself would silently move to the next port).
#
# Settings (environment variables; defaults in brackets):
#   INKLOOP_LS_PORT           port [8080]            (or: start.sh --port 8081)
#   INKLOOP_LS_DATA           data dir, sqlite + media [$REPO/.cache/labelstudio]
#   INKLOOP_LS_TEMPLATE       initialised data dir copied into an empty one, skips the ~90 s
#                             first-start migration [$REPO/.cache/labelstudio-template]
#   INKLOOP_LS_DOCUMENT_ROOT  root for local-files storage [$REPO]
#   INKLOOP_LS_USERNAME       admin e-mail [admin@inkloop.local]
#   INKLOOP_LS_PASSWORD       admin password [inkloop-dev-password]
#   INKLOOP_LS_TOKEN          legacy API token, more than 5 chars [inkloop-dev-token]
#   INKLOOP_LS_VENV           Label Studio venv [$REPO/.venv-labelstudio]
# The user and token are applied only when a data dir is first initialised; to change them,
# start on a fresh data dir. The server's PID is in $INKLOOP_LS_DATA/labelstudio.pid and its log
# in $INKLOOP_LS_DATA/labelstudio.log; stop it with stop.sh.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$REPO/.venv/bin/python"
[ -x "$PY" ] || PY="$(command -v python3)"
export INKLOOP_REPO="${INKLOOP_REPO:-$REPO}"
export PYTHONPATH="$REPO/sdk${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m inkloop.devservers.labelstudio start "$@"

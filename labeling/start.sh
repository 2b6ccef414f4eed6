#!/usr/bin/env bash
# Start a local Label Studio server (127.0.0.1 only), wait until it answers, print URL and token.
# Runs setup.sh's install first if the venv is missing. Fails loudly if the port is taken
# (Label Studio itself would silently move to the next port).
#
# Label Studio runs with its defaults: legacy API tokens are off, Personal Access Tokens on. The
# token printed is the admin's Personal Access Token (minted on the data dir's first start and kept
# in $INKLOOP_LS_DATA/personal-access-token); give it to inkloop and Airflow:
#   export INKLOOP_LS_URL=http://127.0.0.1:8080 INKLOOP_LS_TOKEN="$(labeling/token.sh)"
#
# Settings (environment variables; defaults in brackets):
#   INKLOOP_LS_PORT           port [8080]            (or: start.sh --port 8081)
#   INKLOOP_LS_DATA           data dir, sqlite + media [$REPO/.cache/labelstudio]
#   INKLOOP_LS_TEMPLATE       initialised data dir copied into an empty one, skips the ~90 s
#                             first-start migration [$REPO/.cache/labelstudio-template]
#   INKLOOP_LS_DOCUMENT_ROOT  root for local-files storage [$REPO]
#   INKLOOP_LS_USERNAME       admin e-mail [admin@inkloop.local]
#   INKLOOP_LS_PASSWORD       admin password [inkloop-dev-password]
#   INKLOOP_LS_VENV           Label Studio venv [$REPO/.venv-labelstudio]
# The user and password are applied only when a data dir is first initialised; to change them,
# start on a fresh data dir. The server's PID is in $INKLOOP_LS_DATA/labelstudio.pid and its log
# in $INKLOOP_LS_DATA/labelstudio.log; stop it with stop.sh.
exec "$(dirname "${BASH_SOURCE[0]}")/_cli.sh" start "$@"

#!/usr/bin/env bash
# Print the admin's Personal Access Token of the local Label Studio server (the data dir's
# personal-access-token file, minted on the server's first start by start.sh). It is the token
# `inkloop review` and the Airflow `labelstudio` connection (password) take:
#   export INKLOOP_LS_URL=http://127.0.0.1:8080 INKLOOP_LS_TOKEN="$(labeling/token.sh)"
# Label Studio 1.23 runs with its defaults here: legacy tokens are off, Personal Access Tokens on.
#   INKLOOP_LS_DATA   data dir [$REPO/.cache/labelstudio]
exec "$(dirname "${BASH_SOURCE[0]}")/_cli.sh" token "$@"

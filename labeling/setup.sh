#!/usr/bin/env bash
# Create the Label Studio venv and install label-studio==1.23.2 into it. Idempotent: a venv that
# already has that version is left alone (takes well under a second to check).
#
# Label Studio gets its own venv because it pins Django and friends; the SDK never imports it.
#   INKLOOP_LS_VENV   venv location (default: $REPO/.venv-labelstudio)
# The logic lives in sdk/inkloop/devservers/labelstudio/ (shared with start.sh, stop.sh, the CLI and
# the pytest fixture); this script only calls it.
exec "$(dirname "${BASH_SOURCE[0]}")/_cli.sh" setup "$@"

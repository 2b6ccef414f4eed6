#!/usr/bin/env bash
# Stop the Label Studio server started by start.sh: only the PID in $INKLOOP_LS_DATA/labelstudio.pid
# (default data dir: $REPO/.cache/labelstudio), and only if that PID still is a Label Studio
# process; never anything found by name.
exec "$(dirname "${BASH_SOURCE[0]}")/_cli.sh" stop "$@"

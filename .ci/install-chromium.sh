#!/usr/bin/env bash
# Debian's chromium for the browser test of `inkloop demo` (tests/test_demo.py): a headless
# screenshot and Playwright driving /usr/bin/chromium (no browser download). Idempotent; needs
# root (or sudo) and the distribution's package mirror. About 414 MB.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends chromium
chromium --version

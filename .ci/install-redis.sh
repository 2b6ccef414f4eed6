#!/usr/bin/env bash
# Debian's redis-server, the Celery broker of the local distributed Airflow (deploy/local_airflow.py,
# tests/test_deploy.py). Debian's policy-rc.d keeps the packaged service stopped; the deployment
# starts its own server on 127.0.0.1 with its own directory. Idempotent; needs root (or sudo) and
# the distribution's package mirror. PostgreSQL 15 (the metadata database) is expected from the
# image (/usr/lib/postgresql/15/bin); it is installed here too when missing.
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
redis-server --version

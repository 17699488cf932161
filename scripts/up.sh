#!/usr/bin/env bash
# The main job: installs what it needs (.venv, packages), then `runbooks up` in the foreground:
# a Prefect server (SQLite in ./data unless PREFECT_API_URL is set), every runbook served with
# its schedules, the alert receiver and the reconciler. Ctrl-C stops everything.
# Extra arguments go to `runbooks up` (e.g. ./scripts/up.sh --prefect-port 4300).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/runbooks validate
exec .venv/bin/runbooks up "$@"

#!/usr/bin/env bash
# The main job. Today: install, validate the catalog, sync it into the mirror database, list it.
# The long-running `runbooks up` (Prefect server, served runbooks, alert receiver) replaces the
# last lines once the engine and trigger work lands; see README.md, "Status".
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
.venv/bin/runbooks validate
.venv/bin/runbooks sync
.venv/bin/runbooks list
.venv/bin/runbooks notes
db=${RUNBOOKS_DATABASE_URL:-sqlite:///$PWD/data/runbooks.db}
echo
echo "mirror database: $db"
echo "try: .venv/bin/runbooks show restore-tenant-data"
echo "     .venv/bin/runbooks plan restore-tenant-data --examples -p tenant_id=acme-jewels"

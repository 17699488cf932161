#!/usr/bin/env bash
# The test command: installs what the tests need (.venv, packages), checks style, runs pytest.
# Extra arguments go to pytest (e.g. ./scripts/test.sh -k sync).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

# Mirror tests also run on PostgreSQL. Use RUNBOOKS_TEST_POSTGRES_URL if set, else a local
# server if one answers; without either they skip (and fail when CI=true).
if [ -z "${RUNBOOKS_TEST_POSTGRES_URL:-}" ] && command -v pg_isready >/dev/null 2>&1 &&
   pg_isready -q -h 127.0.0.1 -p 5432; then
  export RUNBOOKS_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres
fi
if [ -n "${CI:-}" ] && [ -z "${RUNBOOKS_TEST_POSTGRES_URL:-}" ]; then
  echo "test: CI needs PostgreSQL: set RUNBOOKS_TEST_POSTGRES_URL" >&2
fi

# The browser test drives Debian's chromium with Playwright (Playwright's own browser download
# does not work on these machines).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test: installing the Debian package chromium (for the browser test)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
  else
    echo "test: the browser test needs the Debian package chromium" >&2
  fi
fi

.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/pytest "$@"

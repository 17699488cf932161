#!/usr/bin/env bash
# Creates .venv at the project root and installs the project with the pinned versions of
# constraints.txt. Safe to run again: it only installs what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "setup: need Python >= 3.11 as '$PYTHON' (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi

# Debian packages the project calls: PostgreSQL client tools (database runbooks and tests) and
# OpenSSH (the SSH executor's tests start a real sshd on loopback).
missing=()
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: please install the Debian packages: ${missing[*]}" >&2
    exit 1
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ ! -e "$stamp" ]; then
  echo "setup: installing packages into .venv (pinned by constraints.txt)"
  # pip's warnings (machine-wide mirror config, setuptools notices) go to a log, shown on failure.
  log=.venv/pip-install.log
  if ! .venv/bin/python -m pip install -q -c constraints.txt -e '.[dev]' >"$log" 2>&1; then
    grep -v 'is ignored: it is neither' "$log" | tail -n 30 >&2
    echo "setup: pip install failed (full log: $log)" >&2
    exit 1
  fi
  rm -f .venv/.installed-*
  touch "$stamp"
fi

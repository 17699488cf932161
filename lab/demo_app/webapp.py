"""The demo shop's web application, as a release ships it: a stdlib-only WSGI app that
gunicorn serves under supervisor (program `webapp`), plus the background worker the
`webapp-worker` programs run (`python webapp.py worker`).

What differs between releases is in release.json next to this file: the version it reports,
the settings it requires (a release needing a setting nobody configured fails /healthz) and
the modules it imports at start (one missing from the venv crashes every worker at boot).
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs

HERE = Path(__file__).resolve().parent
RELEASE = json.loads((HERE / "release.json").read_text())
SETTINGS_FILE = Path(os.environ.get("APP_SETTINGS", "/srv/app/shared/app.env"))

for module in RELEASE.get("imports", []):  # like any top-level import of a dependency
    importlib.import_module(module)

_held: list[bytearray] = []  # memory /debug/allocate asked this worker to hold


def settings() -> dict[str, str]:
    values = {}
    for line in SETTINGS_FILE.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def health_problem() -> str | None:
    """Why this release cannot serve, or None: its settings and its database schema."""
    try:
        current = settings()
    except OSError as exc:
        return f"cannot read settings: {exc}"
    missing = [name for name in RELEASE.get("requires_settings", []) if not current.get(name)]
    if missing:
        return f"missing settings: {', '.join(missing)}"
    database = current["DATABASE_URL"].removeprefix("sqlite:///")
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as db:
            (revision,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error as exc:
        return f"database: {exc}"
    if revision < RELEASE["schema_revision"]:
        return f"database schema {revision} is older than {RELEASE['schema_revision']}"
    return None


def respond(start_response, status: str, body: dict | str):
    data = (json.dumps(body) if isinstance(body, dict) else body).encode()
    kind = "application/json" if isinstance(body, dict) else "text/html; charset=utf-8"
    start_response(status, [("Content-Type", kind), ("Content-Length", str(len(data)))])
    return [data]


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    version = RELEASE["version"]
    if path == "/healthz":
        problem = health_problem()
        if problem:
            return respond(start_response, "503 Service Unavailable", {"error": problem})
        return respond(start_response, "200 OK", {"status": "ok", "version": version})
    if path == "/version":
        return respond(start_response, "200 OK", {"version": version, "pid": os.getpid()})
    if path.startswith("/debug/") and os.environ.get("DEBUG_ENDPOINTS") == "1":
        if path == "/debug/allocate":  # a leak on demand, for the memory runbook
            query = parse_qs(environ.get("QUERY_STRING", ""))
            mib = min(int(query.get("mib", ["64"])[0]), 1024)
            block = bytearray(mib * 1024 * 1024)
            block[::4096] = b"x" * len(block[::4096])  # touch every page: resident, not virtual
            _held.append(block)
        held = sum(len(b) for b in _held) // (1024 * 1024)
        return respond(start_response, "200 OK", {"pid": os.getpid(), "held_mib": held})
    if path == "/":
        return respond(start_response, "200 OK", f"<h1>Jewelry shop</h1><p>release {version}</p>")
    return respond(start_response, "404 Not Found", {"error": "not found"})


def worker() -> None:
    """A background worker: picks up jobs until supervisor stops it (SIGTERM)."""
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    print(f"worker {os.getpid()} of release {RELEASE['version']} started", flush=True)
    while not stopping:
        time.sleep(0.5)
    print(f"worker {os.getpid()} stopped", flush=True)


if __name__ == "__main__" and sys.argv[1:] == ["worker"]:
    worker()

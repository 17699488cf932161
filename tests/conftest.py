"""Shared fixtures: real databases (SQLite files and PostgreSQL), catalogs on disk, the CLI.

PostgreSQL comes from RUNBOOKS_TEST_POSTGRES_URL (a server where we may create databases);
each test gets a fresh database that is dropped afterwards. Without the variable the
PostgreSQL tests skip locally and fail in CI (CI=true), so CI can never pass without them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from config import PROJECT_ROOT
from db import migrate
from db.engine import make_engine

# `sshd`: a real OpenSSH server on loopback; `lab`: the lab's real services, once a session.
pytest_plugins = ["tests.sshd", "tests.lab_fixture"]

CATALOG = PROJECT_ROOT / "runbook_catalog"
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
RUNBOOKS_BIN = Path(sys.executable).with_name("runbooks")


def _postgres_admin_url() -> str:
    url = os.environ.get("RUNBOOKS_TEST_POSTGRES_URL")
    if url:
        return url
    message = (
        "RUNBOOKS_TEST_POSTGRES_URL is not set: point it at a PostgreSQL server where tests may "
        "create databases, e.g. postgresql://postgres@127.0.0.1:5432/postgres"
    )
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _libpq(url: str) -> str:
    """SQLAlchemy URL -> libpq conninfo for psycopg."""
    parsed = make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    url = _postgres_admin_url()
    try:
        with psycopg.connect(_libpq(url), connect_timeout=5) as connection:
            connection.execute("select 1")
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL at RUNBOOKS_TEST_POSTGRES_URL is unreachable: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return url


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (psycopg 3 URL)."""
    name = f"rb_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = _libpq(postgres_admin_url)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_url(postgres_admin_url).set(drivername="postgresql+psycopg", database=name)
    yield url.render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mirror.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each mirror test runs twice: on a SQLite file and on a PostgreSQL database."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def engine(database_url: str):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def migrated(engine):
    migrate.upgrade(engine)
    return engine


@pytest.fixture
def catalog_copy(tmp_path: Path) -> Path:
    """A private copy of the real catalog that a test may change."""
    target = tmp_path / "catalog"
    shutil.copytree(CATALOG / "runbooks", target / "runbooks")
    shutil.copytree(CATALOG / "notes", target / "notes")
    return target


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120
):
    """The real console script in a subprocess: exit code, stdout and stderr as a person sees them."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOKS_")}
    full_env.update(env or {})
    full_env.setdefault("COLUMNS", "200")
    return subprocess.run(
        [str(RUNBOOKS_BIN), *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd or PROJECT_ROOT,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def prefect_server():
    """A real Prefect server (SQLite, temporary) for the whole session; yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield PREFECT_API_URL.value()


@pytest.fixture
def mirror_env(monkeypatch, tmp_path):
    """A fresh SQLite mirror and data directory for an engine test; returns the mirror URL."""
    url = f"sqlite:///{tmp_path / 'mirror.db'}"
    monkeypatch.setenv("RUNBOOKS_DATABASE_URL", url)
    monkeypatch.setenv("RUNBOOKS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("RUNBOOKS_INVENTORY", raising=False)
    engine = make_engine(url)
    migrate.upgrade(engine)  # so tests may read the tables before the first run writes
    engine.dispose()
    return url


@pytest.fixture
def cli_in_process(capsys, monkeypatch):
    """The console script's `main()` in this process (same error boundary, same output), for
    tests that call it many times. Returns (exit code, stdout, stderr)."""
    from cli.main import main

    def invoke(*args: str, env: dict[str, str] | None = None):
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(sys, "argv", ["runbooks", *args])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


def mirror_rows(url: str):
    """(executions, steps) of a mirror database, steps in the order they were written."""
    from sqlalchemy import select

    from db.engine import session_scope
    from db.models import RunbookExecution, StepExecution

    engine = make_engine(url)
    with session_scope(engine) as session:
        executions = session.scalars(select(RunbookExecution)).all()
        steps = session.scalars(select(StepExecution).order_by(StepExecution.id)).all()
    engine.dispose()
    return executions, steps

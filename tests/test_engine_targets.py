"""One runbook across SSH (real sshd), SQL and psql (real PostgreSQL), through real flows."""

from __future__ import annotations

import psycopg
import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.engine import make_url

from db.engine import make_engine, session_scope
from db.models import RunbookExecution
from runbook_catalog import load_catalog

from .conftest import mirror_rows
from .engine_catalog import remote, write_engine_catalog

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.postgres]


@pytest.fixture
def inventory(tmp_path, sshd, postgres_url, monkeypatch):
    path = tmp_path / "inventory.yaml"
    dsn = make_url(postgres_url).set(drivername="postgresql").render_as_string(False)
    path.write_text(
        yaml.safe_dump(
            {
                "targets": {
                    "host": sshd.inventory_entry(),
                    "db": {"kind": "postgres", "dsn": dsn},
                }
            }
        )
    )
    monkeypatch.setenv("RUNBOOKS_INVENTORY", str(path))
    return dsn


def run(tmp_path, **parameters):
    from flows.engine import build_flow

    catalog = load_catalog(write_engine_catalog(tmp_path / "catalog", remote()), strict=True)
    return build_flow(catalog.runbooks["remote"])(
        parameters={"name": "acme", "table": "notes", **parameters}, return_state=True
    )


def test_all_executors_succeed_with_one_ssh_handshake(tmp_path, mirror_env, inventory, sshd):
    accepted_before = sshd.log().count("Accepted publickey")
    state = run(tmp_path)
    (execution,), steps = mirror_rows(mirror_env)
    assert state.is_completed(), execution.error
    assert execution.status == "succeeded"
    assert execution.target == "db=db,host=host"
    assert [s.status for s in steps] == ["succeeded"] * 4
    assert steps[0].target == f"host ({sshd.user}@{sshd.host}:{sshd.port})"
    assert steps[1].target.startswith("db (postgres postgres@127.0.0.1:5432/rb_test_")
    assert steps[3].target == "local (this machine)"  # psql runs here, with the db's settings
    assert 'INSERT INTO "notes" VALUES (%(name)s)' in steps[2].command
    with psycopg.connect(inventory) as connection:
        assert connection.execute("SELECT v FROM notes").fetchall() == [("acme",)]
    # mkdir, run, verify of step 1 on one connection
    assert sshd.log().count("Accepted publickey") - accepted_before == 1


def test_failure_rolls_back_sql_and_ssh(tmp_path, mirror_env, inventory, sshd):
    state = run(tmp_path, fail_last=True)
    (execution,), steps = mirror_rows(mirror_env)
    assert state.is_failed()
    assert execution.status == "rolled_back"
    assert [s.rollback_status for s in steps] == [
        "succeeded",
        "succeeded",
        "succeeded",
        "not_needed",
    ]
    with psycopg.connect(inventory) as connection:
        exists = connection.execute("SELECT to_regclass('notes')").fetchone()[0]
    assert exists is None  # the table is gone again


def test_unknown_target_is_refused_before_anything_runs(tmp_path, mirror_env, monkeypatch):
    monkeypatch.setenv("RUNBOOKS_INVENTORY", str(tmp_path / "empty.yaml"))
    (tmp_path / "empty.yaml").write_text("targets: {}\n")
    state = run(tmp_path)
    assert state.is_failed()
    assert "target db of remote: no inventory entry 'db'" in state.message
    engine = make_engine(mirror_env)
    with session_scope(engine) as session:
        assert session.scalars(select(RunbookExecution)).all() == []

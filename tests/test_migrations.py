"""One migration tree for both databases: single head, up, down with data in place, up again,
and models that agree with the migrations (alembic check)."""

from __future__ import annotations

import uuid

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from db import migrate
from db.engine import make_engine

CONTRACT_TABLES = {
    "runbooks",
    "runbook_versions",
    "admin_notes",
    "runbook_executions",
    "step_executions",
    "alert_events",
}


def test_single_head():
    heads = ScriptDirectory.from_config(migrate.alembic_config()).get_heads()
    assert len(heads) == 1


def test_upgrade_downgrade_upgrade(engine):
    migrate.upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= CONTRACT_TABLES
    assert migrate.is_up_to_date(engine)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO runbooks (slug, title, type, priority, version, definition_hash, "
                "definition, expected_duration_seconds, tags, source_file, is_active, created_at, "
                "updated_at) VALUES ('x', 'X', 'maintenance', 'low', '1.0', 'h', '{}', 60, '[]', "
                "'x.yaml', true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
    migrate.downgrade(engine, "base")
    assert not CONTRACT_TABLES & set(inspect(engine).get_table_names())
    migrate.upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= CONTRACT_TABLES


def test_models_match_migrations(migrated):
    config = migrate.alembic_config()
    with migrated.begin() as connection:
        config.attributes["connection"] = connection
        command.check(config)  # raises if autogenerate would produce any operation


def test_statistics_indexes_exist(migrated):
    indexes = {
        tuple(ix["column_names"]) for ix in inspect(migrated).get_indexes("runbook_executions")
    }
    assert ("runbook_slug", "started_at") in indexes
    assert ("status", "started_at") in indexes


def test_check_constraints_refuse_unknown_status(migrated):
    from sqlalchemy.exc import IntegrityError

    from db.engine import session_scope
    from db.models import RunbookExecution

    with pytest.raises(IntegrityError), session_scope(migrated) as session:
        session.add(
            RunbookExecution(
                id=uuid.uuid4(),
                runbook_slug="nope",
                runbook_version="1.0",
                definition_hash="h",
                definition_snapshot={},
                trigger="cli",
                parameters={},
                status="exploded",
            )
        )


def test_sqlite_uses_wal_and_busy_timeout(sqlite_url):
    engine = make_engine(sqlite_url)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
    engine.dispose()

"""Alembic environment: one migration tree for SQLite and PostgreSQL, in batch mode on SQLite.

The URL comes from our settings; a caller may instead hand over an open connection through
`config.attributes["connection"]`, so tests migrate exactly the database they use.
"""

from __future__ import annotations

from alembic import context

from config import load_settings
from db.engine import make_engine
from db.models import Base

target_metadata = Base.metadata


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(load_settings().resolved_database_url)
    with engine.connect() as connection:
        _run(connection)
        connection.commit()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()

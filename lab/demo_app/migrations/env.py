"""Alembic environment of the demo app: the database URL comes from the app's settings file."""

import os
from pathlib import Path

from alembic import context
from sqlalchemy import create_engine


def database_url() -> str:
    settings = Path(os.environ.get("APP_SETTINGS", "/srv/app/shared/app.env"))
    for line in settings.read_text().splitlines():
        if line.startswith("DATABASE_URL="):
            return line.split("=", 1)[1].strip()
    raise RuntimeError(f"no DATABASE_URL in {settings}")


engine = create_engine(database_url())
with engine.connect() as connection:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()

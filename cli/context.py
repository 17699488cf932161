"""What commands share: settings, the catalog, the mirror database (migrated on first use)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from config import Settings, load_settings
from db import migrate
from db.engine import make_engine
from runbook_catalog import Catalog, Document, load_catalog


class CommandError(Exception):
    """A failure the user can act on; printed as one line, exit status 1."""


def settings() -> Settings:
    return load_settings()


def catalog(*, strict: bool = True) -> Catalog:
    return load_catalog(settings().catalog_dir, strict=strict)


def runbook_document(slug: str) -> Document:
    """A catalog runbook by slug, or a one-line error pointing at `runbooks list`."""
    loaded = catalog()
    if slug not in loaded.runbooks:
        raise CommandError(f"no runbook '{slug}' (see `runbooks list`)")
    return loaded.runbooks[slug]


def mirror(*, create: bool = True) -> Engine | None:
    """The mirror database, migrated to the newest schema. With create=False, None when a
    SQLite mirror file does not exist yet (read-only commands should not create one)."""
    url = settings().resolved_database_url
    parsed = make_url(url)
    is_sqlite = parsed.get_backend_name() == "sqlite"
    if not create and is_sqlite and not (parsed.database and Path(parsed.database).exists()):
        return None
    engine = make_engine(url)
    try:
        if not migrate.is_up_to_date(engine):
            migrate.upgrade(engine)
    except Exception as exc:
        raise CommandError(
            f"mirror database {parsed.render_as_string(hide_password=True)}: {exc}"
        ) from exc
    return engine

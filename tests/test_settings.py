"""RUNBOOKS_* configuration: defaults a newcomer relies on, and URL normalisation."""

from __future__ import annotations

from config import PROJECT_ROOT, load_settings


def test_defaults(monkeypatch):
    for name in ("RUNBOOKS_DATABASE_URL", "RUNBOOKS_DATA_DIR", "RUNBOOKS_CATALOG"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.resolved_database_url == f"sqlite:///{PROJECT_ROOT / 'data' / 'runbooks.db'}"
    assert settings.catalog_dir == PROJECT_ROOT / "runbook_catalog"


def test_data_dir_moves_the_default_database(monkeypatch, tmp_path):
    monkeypatch.delenv("RUNBOOKS_DATABASE_URL", raising=False)
    monkeypatch.setenv("RUNBOOKS_DATA_DIR", str(tmp_path))
    assert load_settings().resolved_database_url == f"sqlite:///{tmp_path / 'runbooks.db'}"


def test_postgres_urls_use_psycopg3(monkeypatch):
    for given in ("postgresql://u@h/db", "postgres://u@h/db"):
        monkeypatch.setenv("RUNBOOKS_DATABASE_URL", given)
        assert load_settings().resolved_database_url == "postgresql+psycopg://u@h/db"
    monkeypatch.setenv("RUNBOOKS_DATABASE_URL", "postgresql+psycopg://u@h/db")
    assert load_settings().resolved_database_url == "postgresql+psycopg://u@h/db"

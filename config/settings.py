"""One settings class for the whole project; every `RUNBOOKS_*` variable is read here.

Built fresh by `load_settings()` (not at import time), so tests and commands that change the
environment see their own values.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RUNBOOKS_", extra="ignore")

    data_dir: Path = PROJECT_ROOT / "data"
    database_url: str | None = None
    catalog: Path | None = None
    inventory: Path | None = None
    alert_token: SecretStr | None = None
    # A run renews its lease every third of this; a dead run's lease expires after it.
    lease_ttl_seconds: float = Field(default=60.0, ge=2.0, le=3600.0)

    @field_validator("database_url")
    @classmethod
    def _psycopg_driver(cls, value: str | None) -> str | None:
        """`postgresql://` and `postgres://` mean psycopg 3, the driver this project ships."""
        if value is None:
            return None
        for prefix in ("postgresql://", "postgres://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'runbooks.db'}"

    @property
    def catalog_dir(self) -> Path:
        if self.catalog is not None:
            return self.catalog
        return PROJECT_ROOT / "runbook_catalog"


def load_settings() -> Settings:
    return Settings()

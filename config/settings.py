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
    # The alert receiver: a bearer token for Alertmanager/Grafana (they cannot sign), the
    # PagerDuty v3 webhook signing secret, the HMAC secret of the generic endpoint, and the cap
    # on a request body (413 above it, checked before the body is read).
    alert_token: SecretStr | None = None
    pagerduty_secret: SecretStr | None = None
    alert_hmac_secret: SecretStr | None = None
    alert_max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    # How long an answer waits for Prefect to create an alert's run before it goes out
    # without the run's id (the run is still created, and retried if Prefect fails meanwhile).
    alert_answer_within_seconds: float = Field(default=0.1, ge=0, le=30)
    # Apprise URLs (space or comma separated) told about failures, rollbacks and approvals.
    notify_urls: str | None = None
    # The main job (`runbooks up`): everything listens on this host.
    host: str = "127.0.0.1"
    prefect_port: int = Field(default=4200, ge=1, le=65535)
    receiver_port: int = Field(default=8765, ge=1, le=65535)
    # How often the served runner asks for due runs (Prefect's default of 10 s delays every
    # UI and alert run by up to that much).
    runner_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    # Run processes kept imported for alert-triggered runs (0: leave every run to the runner).
    warm_runs: int = Field(default=1, ge=0, le=8)
    reconcile_interval_seconds: float = Field(default=60.0, ge=5, le=3600)
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

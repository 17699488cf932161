"""Configuration read from `RUNBOOKS_*` environment variables (see docs/configuration.md)."""

from .settings import PROJECT_ROOT, Settings, load_settings

__all__ = ["PROJECT_ROOT", "Settings", "load_settings"]

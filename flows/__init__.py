"""The engine that builds one Prefect flow per catalog runbook (see flows/README.md)."""

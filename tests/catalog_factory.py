"""Small catalogs written to disk for tests: a minimal valid runbook and helpers to load them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from runbook_catalog import load_catalog

MINIMAL_RUNBOOK: dict[str, Any] = {
    "slug": "demo",
    "title": "Demo",
    "type": "maintenance",
    "priority": "medium",
    "version": "1.0",
    "changelog": [{"version": "1.0", "date": "2026-12-04", "changes": ["First version."]}],
    "summary": "A small runbook for tests.",
    "expected_duration": "10m",
    "targets": {"db": {"kind": "postgres", "description": "the database"}},
    "parameters": {"name": {"type": "slug", "description": "a file name", "example": "abc"}},
    "steps": [
        {
            "id": "touch",
            "title": "Create the file",
            "run": {"argv": ["touch", "/tmp/{{ name }}"]},
            "verify": {"argv": ["test", "-e", "/tmp/{{ name }}"]},
            "rollback": {"argv": ["rm", "-f", "/tmp/{{ name }}"]},
        }
    ],
}

MINIMAL_NOTE: dict[str, Any] = {
    "slug": "demo-note",
    "title": "Demo note",
    "type": "tip",
    "runbooks": ["demo"],
    "body": "A note that is long enough to pass the body length rule of notes.",
}


def runbook(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(MINIMAL_RUNBOOK)
    data.update(copy.deepcopy(changes))
    return data


def write_catalog(
    root: Path, runbooks: list[dict[str, Any]], notes: list[dict[str, Any]] = ()
) -> Path:
    for folder in ("runbooks", "notes"):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for old in (root / folder).glob("*.yaml"):
            old.unlink()
    for data in runbooks:
        (root / "runbooks" / f"{data['slug']}.yaml").write_text(yaml.safe_dump(data))
    for data in notes:
        (root / "notes" / f"{data['slug']}.yaml").write_text(yaml.safe_dump(data))
    return root


def problems(root: Path) -> list[str]:
    return [str(p) for p in load_catalog(root).problems]

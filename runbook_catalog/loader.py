"""Read a catalog directory: safe YAML, then the pydantic models, then the lint rules.

A catalog directory holds `runbooks/*.yaml` (one runbook each) and `notes/*.yaml` (one admin
note each). Every problem in every file is collected; a runbook or note with any problem is
left out of the result, and `load_catalog(strict=True)` refuses the whole catalog.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .models import AdminNote, Runbook
from .problems import CatalogError, Problem, sort_problems

try:  # the C loader is several times faster; both are the safe loader
    _SafeLoader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - libyaml missing
    _SafeLoader = yaml.SafeLoader


@dataclass(frozen=True)
class Document:
    """A validated YAML document with the data it was made from."""

    path: Path
    model: Any
    definition: dict[str, Any]  # the document as authored, JSON-ready
    definition_hash: str


@dataclass
class Catalog:
    root: Path
    runbooks: dict[str, Document] = field(default_factory=dict)
    notes: dict[str, Document] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def runbook(self, slug: str) -> Runbook:
        return self.runbooks[slug].model


def to_jsonable(value: Any) -> Any:
    """YAML gives dates and datetimes; JSON columns and hashes want text."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


def definition_hash(definition: dict[str, Any]) -> str:
    """sha256 over canonical JSON of the authored content: comments and layout do not count."""
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _display(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root.parent))
    except ValueError:
        return str(path)


def _read_yaml(path: Path, shown: str, problems: list[Problem]) -> dict[str, Any] | None:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_SafeLoader)  # noqa: S506 - safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        reason = getattr(exc, "problem", None) or str(exc)
        problems.append(Problem(shown, None, None, None, f"{where}invalid YAML: {reason}", "RB000"))
        return None
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(shown, None, None, None, f"cannot read: {exc}", "RB000"))
        return None
    if not isinstance(data, dict):
        problems.append(
            Problem(shown, None, None, None, "must be a YAML mapping (key: value)", "RB000")
        )
        return None
    return data


def _problems_from_validation(
    exc: ValidationError, data: dict[str, Any], shown: str, name: str | None
) -> list[Problem]:
    found = []
    for error in exc.errors():
        loc = list(error["loc"])
        step = None
        if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
            steps = data.get("steps")
            raw = steps[loc[1]] if isinstance(steps, list) and loc[1] < len(steps) else None
            step = raw.get("id") if isinstance(raw, dict) and raw.get("id") else f"#{loc[1] + 1}"
            loc = loc[2:]
        if len(loc) >= 3 and loc[0] == "parameters":  # drop the union's tag from the path
            raw = (data.get("parameters") or {}).get(loc[1])
            if isinstance(raw, dict) and loc[2] == raw.get("type"):
                del loc[2]
        path = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[")
        message = _friendly(error)
        found.append(Problem(shown, name, step, path or None, message, "RB100"))
    return found


def _friendly(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field"
    message = error["msg"]
    return message.removeprefix("Value error, ")


def _validate(model: type[BaseModel], data: dict[str, Any], shown: str, problems: list[Problem]):
    name = data.get("slug") if isinstance(data.get("slug"), str) else None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems.extend(_problems_from_validation(exc, data, shown, name))
        return None


def _load_folder(root: Path, folder: str, model: type[BaseModel], problems: list[Problem]):
    documents = []
    for path in sorted((root / folder).glob("*.y*ml")):
        shown = _display(path, root)
        data = _read_yaml(path, shown, problems)
        if data is None:
            continue
        parsed = _validate(model, data, shown, problems)
        if parsed is None:
            continue
        definition = to_jsonable(data)
        documents.append(Document(path, parsed, definition, definition_hash(definition)))
    return documents


def load_catalog(root: Path, *, strict: bool = False) -> Catalog:
    """Load and lint every runbook and note under `root`."""
    from .lint import lint_catalog  # lint imports the loader's types

    root = Path(root)
    problems: list[Problem] = []
    if not (root / "runbooks").is_dir():
        problems.append(
            Problem(str(root), None, None, None, "has no runbooks/ folder of YAML files", "RB000")
        )
        raise CatalogError(problems)
    runbooks = _load_folder(root, "runbooks", Runbook, problems)
    notes = _load_folder(root, "notes", AdminNote, problems)
    lint_problems, rejected = lint_catalog(root, runbooks, notes)
    problems.extend(lint_problems)
    catalog = Catalog(root=root, problems=sort_problems(problems))
    for doc in runbooks:
        if doc.path not in rejected:
            catalog.runbooks[doc.model.slug] = doc
    for doc in notes:
        if doc.path not in rejected:
            catalog.notes[doc.model.slug] = doc
    if strict and catalog.problems:
        raise CatalogError(catalog.problems)
    return catalog

"""`runbooks sync`: make the mirror's runbooks, versions and catalog notes match the catalog.

Idempotent: a second sync of the same catalog writes nothing. All or nothing: if any runbook
is refused, the transaction is rolled back and nothing is written.

- New runbook: a `runbooks` row and its first `runbook_versions` row.
- Changed content (the hash of the authored document): allowed only with a higher version;
  a new `runbook_versions` row is added and the `runbooks` row updated.
- Runbook gone from the catalog: `is_active = false`, never deleted (executions point at it).
- Catalog notes are created and their content kept in step with the YAML; `is_pinned` and
  `helpful_count` belong to the admins after creation, and admin-created notes are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine, select

from runbook_catalog import Catalog, CatalogError
from runbook_catalog.loader import Document
from runbook_catalog.models import version_key

from .base import utcnow
from .engine import session_scope
from .models import AdminNote, Runbook, RunbookVersion


class SyncRefused(Exception):
    def __init__(self, reasons: list[str]):
        self.reasons = reasons
        super().__init__("; ".join(reasons))


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)  # "slug 1.0 -> 1.1"
    reactivated: list[str] = field(default_factory=list)
    deactivated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    notes_created: list[str] = field(default_factory=list)
    notes_updated: list[str] = field(default_factory=list)
    notes_deactivated: list[str] = field(default_factory=list)
    notes_unchanged: list[str] = field(default_factory=list)

    @property
    def wrote_anything(self) -> bool:
        return any(
            (
                self.created,
                self.updated,
                self.reactivated,
                self.deactivated,
                self.notes_created,
                self.notes_updated,
                self.notes_deactivated,
            )
        )


def _runbook_columns(doc: Document) -> dict:
    rb = doc.model
    return {
        "title": rb.title,
        "type": rb.type.value,
        "priority": rb.priority.value,
        "version": rb.version,
        "definition_hash": doc.definition_hash,
        "definition": doc.definition,
        "expected_duration_seconds": rb.expected_duration,
        "rto_seconds": rb.rto,
        "rpo_seconds": rb.rpo,
        "tags": list(rb.tags),
        "source_file": doc.path.name,
    }


def _version_row(doc: Document) -> RunbookVersion:
    return RunbookVersion(
        runbook_slug=doc.model.slug,
        version=doc.model.version,
        definition_hash=doc.definition_hash,
        definition=doc.definition,
        changelog=doc.definition.get("changelog", []),
    )


def _sync_runbook(
    session, doc: Document, row: Runbook | None, recorded: dict, report: SyncReport
) -> str | None:
    """Apply one catalog runbook to its row; the refusal reason, or None."""
    rb, slug = doc.model, doc.model.slug
    columns = _runbook_columns(doc)
    if row is None:
        session.add(Runbook(slug=slug, is_active=True, **columns))
        session.flush()
        session.add(_version_row(doc))
        report.created.append(slug)
        return None
    if row.definition_hash != doc.definition_hash:
        if rb.version == row.version:
            return (
                f"{slug}: content changed but the version is still {rb.version}; raise "
                "version and add a changelog entry"
            )
        if version_key(rb.version) < version_key(row.version):
            return f"{slug}: version goes back from {row.version} to {rb.version}"
        known = recorded.get((slug, rb.version))
        if known is not None and known != doc.definition_hash:
            return f"{slug}: version {rb.version} was already recorded with other content"
        if known is None:
            session.add(_version_row(doc))
        report.updated.append(f"{slug} {row.version} -> {rb.version}")
    elif not row.is_active:
        report.reactivated.append(slug)
    elif any(getattr(row, key) != value for key, value in columns.items()):
        report.updated.append(f"{slug} (file {columns['source_file']})")
    else:
        report.unchanged.append(slug)
        return None
    for key, value in columns.items():
        setattr(row, key, value)
    row.is_active = True
    row.updated_at = utcnow()
    return None


def _recorded_versions(session, slug: str | None = None) -> dict:
    query = select(
        RunbookVersion.runbook_slug, RunbookVersion.version, RunbookVersion.definition_hash
    )
    if slug is not None:
        query = query.where(RunbookVersion.runbook_slug == slug)
    return {(s, v): h for s, v, h in session.execute(query)}


def _sync_runbooks(session, catalog: Catalog, report: SyncReport, refusals: list[str]) -> None:
    existing = {row.slug: row for row in session.scalars(select(Runbook))}
    recorded = _recorded_versions(session)
    for slug, doc in sorted(catalog.runbooks.items()):
        refusal = _sync_runbook(session, doc, existing.get(slug), recorded, report)
        if refusal:
            refusals.append(refusal)
    for slug, row in sorted(existing.items()):
        if slug not in catalog.runbooks and row.is_active:
            row.is_active = False
            row.updated_at = utcnow()
            report.deactivated.append(slug)


def ensure_runbook(engine: Engine, doc: Document) -> None:
    """Before a run: record this runbook's version in the mirror by the same rules as sync
    (a new version is added; changed content under the same version is refused)."""
    with session_scope(engine) as session:
        row = session.scalar(select(Runbook).where(Runbook.slug == doc.model.slug))
        if row is not None and row.definition_hash == doc.definition_hash and row.is_active:
            return
        refusal = _sync_runbook(
            session, doc, row, _recorded_versions(session, doc.model.slug), SyncReport()
        )
        if refusal:
            raise SyncRefused([refusal])


def _note_columns(doc: Document) -> dict:
    note = doc.model
    return {
        "title": note.title,
        "body": note.body,
        "note_type": note.type.value,
        "tags": list(note.tags),
        "runbook_slugs": list(note.runbooks),
        "doc_links": [link.model_dump() for link in note.doc_links],
        "author": note.author,
        "is_active": True,
    }


def _sync_notes(session, catalog: Catalog, report: SyncReport, refusals: list[str]) -> None:
    existing = {row.slug: row for row in session.scalars(select(AdminNote))}
    for slug, doc in sorted(catalog.notes.items()):
        row, columns = existing.get(slug), _note_columns(doc)
        if row is None:
            session.add(
                AdminNote(
                    slug=slug,
                    source="catalog",
                    is_pinned=doc.model.pinned,
                    helpful_count=0,
                    **columns,
                )
            )
            report.notes_created.append(slug)
        elif row.source != "catalog":
            refusals.append(f"note {slug}: an admin already created a note with this slug")
        elif any(getattr(row, key) != value for key, value in columns.items()):
            for key, value in columns.items():
                setattr(row, key, value)
            row.updated_at = utcnow()
            report.notes_updated.append(slug)
        else:
            report.notes_unchanged.append(slug)
    for slug, row in sorted(existing.items()):
        if row.source == "catalog" and slug not in catalog.notes and row.is_active:
            row.is_active = False
            row.updated_at = utcnow()
            report.notes_deactivated.append(slug)


def sync_catalog(engine: Engine, catalog: Catalog) -> SyncReport:
    """Bring the mirror in line with `catalog`; raises SyncRefused (writing nothing) if refused."""
    if catalog.problems:
        raise CatalogError(catalog.problems)
    report, refusals = SyncReport(), []
    with session_scope(engine) as session:
        _sync_runbooks(session, catalog, report, refusals)
        _sync_notes(session, catalog, report, refusals)
        if refusals:
            raise SyncRefused(refusals)  # leaves the transaction, which rolls it back
    return report

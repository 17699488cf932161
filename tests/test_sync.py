"""`sync` against real databases: idempotent, versioned, all-or-nothing, never deletes."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from db.engine import session_scope
from db.models import AdminNote, Runbook, RunbookExecution, RunbookVersion
from db.notes import add_note, mark_helpful, set_pinned
from db.sync import SyncRefused, sync_catalog
from runbook_catalog import CatalogError, load_catalog

from .catalog_factory import MINIMAL_NOTE, runbook, write_catalog


def dump(engine) -> list[tuple]:
    """Every column of the synced tables except the bookkeeping timestamps."""
    rows = []
    with session_scope(engine) as session:
        for model in (Runbook, RunbookVersion, AdminNote):
            columns = [c for c in model.__table__.columns if c.name != "updated_at"]
            for row in session.execute(select(*columns).order_by(columns[0])):
                rows.append((model.__tablename__, *[str(v) for v in row]))
    return rows


def bump(path: Path, version: str, **changes) -> None:
    data = yaml.safe_load(path.read_text())
    data.update(changes)
    data["version"] = version
    data["changelog"].insert(0, {"version": version, "date": "2026-12-05", "changes": ["x"]})
    path.write_text(yaml.safe_dump(data))


def test_real_catalog_syncs_then_second_sync_writes_nothing(migrated, catalog_copy):
    catalog = load_catalog(catalog_copy, strict=True)
    first = sync_catalog(migrated, catalog)
    assert len(first.created) == 13
    assert len(first.notes_created) == 8
    before = dump(migrated)
    second = sync_catalog(migrated, load_catalog(catalog_copy, strict=True))
    assert not second.wrote_anything
    assert len(second.unchanged) == 13 and len(second.notes_unchanged) == 8
    assert dump(migrated) == before
    with session_scope(migrated) as session:
        assert session.scalar(select(RunbookVersion).limit(1)) is not None
        versions = session.scalars(select(RunbookVersion.runbook_slug)).all()
    assert sorted(versions) == sorted(catalog.runbooks)


def test_content_change_without_new_version_is_refused_and_writes_nothing(migrated, tmp_path):
    root = write_catalog(tmp_path / "c", [runbook(), runbook(slug="other")])
    sync_catalog(migrated, load_catalog(root))
    before = dump(migrated)
    changed = runbook(title="Demo, retitled")
    write_catalog(root, [changed, runbook(slug="other", title="Other, new")])
    with pytest.raises(SyncRefused) as refused:
        sync_catalog(migrated, load_catalog(root))
    assert refused.value.reasons == [
        "demo: content changed but the version is still 1.0; raise version and add a changelog "
        "entry",
        "other: content changed but the version is still 1.0; raise version and add a changelog "
        "entry",
    ]
    assert dump(migrated) == before


def test_new_version_adds_a_version_row(migrated, tmp_path):
    root = write_catalog(tmp_path / "c", [runbook()])
    sync_catalog(migrated, load_catalog(root))
    bump(root / "runbooks" / "demo.yaml", "1.1", title="Demo v1.1")
    report = sync_catalog(migrated, load_catalog(root))
    assert report.updated == ["demo 1.0 -> 1.1"]
    with session_scope(migrated) as session:
        versions = session.execute(
            select(RunbookVersion.version, RunbookVersion.definition)
            .where(RunbookVersion.runbook_slug == "demo")
            .order_by(RunbookVersion.version)
        ).all()
        row = session.scalar(select(Runbook).where(Runbook.slug == "demo"))
    assert [v for v, _ in versions] == ["1.0", "1.1"]
    assert versions[0][1]["title"] == "Demo" and versions[1][1]["title"] == "Demo v1.1"
    assert (row.version, row.title) == ("1.1", "Demo v1.1")
    assert row.definition_hash == load_catalog(root).runbooks["demo"].definition_hash


def test_version_going_back_is_refused(migrated, tmp_path):
    root = write_catalog(tmp_path / "c", [runbook()])
    bump(root / "runbooks" / "demo.yaml", "2.0")
    sync_catalog(migrated, load_catalog(root))
    write_catalog(root, [runbook(title="Old")])
    with pytest.raises(SyncRefused, match=re.escape("demo: version goes back from 2.0 to 1.0")):
        sync_catalog(migrated, load_catalog(root))


def test_comments_and_layout_are_not_content(migrated, tmp_path):
    root = write_catalog(tmp_path / "c", [runbook()])
    sync_catalog(migrated, load_catalog(root))
    path = root / "runbooks" / "demo.yaml"
    path.write_text("# reviewed by ops\n" + yaml.safe_dump(runbook(), indent=4, sort_keys=False))
    assert not sync_catalog(migrated, load_catalog(root)).wrote_anything


def test_removed_runbook_is_inactive_and_keeps_its_executions(migrated, tmp_path):
    root = write_catalog(tmp_path / "c", [runbook(), runbook(slug="other")])
    sync_catalog(migrated, load_catalog(root))
    execution_id = uuid.uuid4()
    with session_scope(migrated) as session:
        session.add(
            RunbookExecution(
                id=execution_id,
                runbook_slug="other",
                runbook_version="1.0",
                definition_hash="h",
                definition_snapshot={},
                trigger="cli",
                parameters={},
                status="succeeded",
            )
        )
    write_catalog(root, [runbook()])
    report = sync_catalog(migrated, load_catalog(root))
    assert report.deactivated == ["other"]
    with session_scope(migrated) as session:
        other = session.scalar(select(Runbook).where(Runbook.slug == "other"))
        assert other is not None and other.is_active is False
        assert session.get(RunbookExecution, execution_id).runbook_slug == "other"
    write_catalog(root, [runbook(), runbook(slug="other")])
    assert sync_catalog(migrated, load_catalog(root)).reactivated == ["other"]


def test_catalog_with_problems_is_not_synced(migrated, tmp_path):
    root = write_catalog(tmp_path / "c", [runbook(), runbook(slug="bad", expected_duration=None)])
    with pytest.raises(CatalogError):
        sync_catalog(migrated, load_catalog(root))
    assert dump(migrated) == []


def test_admin_notes_pins_and_helpful_counts_survive_sync(migrated, tmp_path):
    note = dict(MINIMAL_NOTE, pinned=True)
    root = write_catalog(tmp_path / "c", [runbook()], [note])
    sync_catalog(migrated, load_catalog(root))
    with session_scope(migrated) as session:
        add_note(
            session,
            title="Check replication lag first",
            note_type="tip",
            body="Before any failover, look at pg_stat_replication replay lag on the leader.",
            tags=["patroni"],
            runbooks=["demo"],
            author="alice",
        )
        mark_helpful(session, "demo-note")
        mark_helpful(session, "demo-note")
        set_pinned(session, "demo-note", False)
    note["body"] = note["body"] + " Edited in review."
    write_catalog(root, [runbook()], [note])
    report = sync_catalog(migrated, load_catalog(root))
    assert report.notes_updated == ["demo-note"]
    write_catalog(root, [runbook()], [])
    assert sync_catalog(migrated, load_catalog(root)).notes_deactivated == ["demo-note"]
    with session_scope(migrated) as session:
        notes = {n.slug: n for n in session.scalars(select(AdminNote))}
    assert notes["demo-note"].helpful_count == 2
    assert notes["demo-note"].is_pinned is False  # the admin's unpin stands
    assert notes["demo-note"].body.endswith("Edited in review.")
    assert notes["demo-note"].is_active is False
    admin = notes["check-replication-lag-first"]
    assert (admin.source, admin.is_active, admin.author) == ("admin", True, "alice")


def test_catalog_note_cannot_take_an_admin_notes_slug(migrated, tmp_path):
    root = write_catalog(tmp_path / "c", [runbook()])
    sync_catalog(migrated, load_catalog(root))
    with session_scope(migrated) as session:
        add_note(
            session,
            title="Demo note",
            note_type="tip",
            body="Written by an admin before the catalog had a note of this name.",
            tags=[],
            runbooks=[],
            author="bob",
        )
    write_catalog(root, [runbook()], [MINIMAL_NOTE])
    with pytest.raises(SyncRefused, match="note demo-note: an admin already created"):
        sync_catalog(migrated, load_catalog(root))

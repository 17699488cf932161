"""`validate`, `list`, `show` and `sync`: the catalog and its mirror."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markdown import Markdown
from rich.table import Table
from sqlalchemy import select

from db.engine import session_scope
from db.models import AdminNote
from db.sync import SyncRefused, sync_catalog
from runbook_catalog import CatalogError
from runbook_catalog.durations import format_duration
from runbook_catalog.markdown import NoteView, runbook_markdown
from runbook_catalog.overview import catalog_table
from runbook_catalog.problems import sort_problems
from runbook_catalog.routes import route_problems

from . import context
from .output import console, errors, print_json

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


def validate(as_json: JsonOption = False) -> None:
    """Check every runbook and note in the catalog; print every problem at once."""
    loaded = context.catalog(strict=False)
    # The alert routes (alert-routes.yaml) are checked against the runbooks that loaded.
    loaded.problems = sort_problems([*loaded.problems, *route_problems(loaded)])
    if as_json:
        print_json(
            {
                "catalog": str(loaded.root),
                "runbooks": sorted(loaded.runbooks),
                "notes": sorted(loaded.notes),
                "problems": [
                    {
                        "file": p.file,
                        "runbook": p.runbook,
                        "step": p.step,
                        "field": p.field,
                        "code": p.code,
                        "message": p.message,
                    }
                    for p in loaded.problems
                ],
            }
        )
    else:
        for problem in loaded.problems:
            errors.print(str(problem), markup=False)
    if loaded.problems:
        raise context.CommandError(
            f"{len(loaded.problems)} problem(s) in {loaded.root}; "
            f"{len(loaded.runbooks)} runbook(s) and {len(loaded.notes)} note(s) are valid"
        )
    if not as_json:
        console.print(
            f"{len(loaded.runbooks)} runbooks and {len(loaded.notes)} notes are valid "
            f"({loaded.root})"
        )


def list_runbooks(
    runbook_type: Annotated[str | None, typer.Option("--type", help="Only this type.")] = None,
    tag: Annotated[str | None, typer.Option(help="Only runbooks with this tag.")] = None,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print a Markdown table (the README's).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """List the catalog's runbooks."""
    runbooks = [doc.model for doc in context.catalog().runbooks.values()]
    runbooks = [
        rb
        for rb in runbooks
        if (runbook_type is None or rb.type == runbook_type) and (tag is None or tag in rb.tags)
    ]
    runbooks.sort(key=lambda rb: (rb.type.value, rb.slug))
    if markdown:
        print(catalog_table(runbooks), end="")
        return
    if as_json:
        print_json(
            [
                {
                    "slug": rb.slug,
                    "title": rb.title,
                    "type": rb.type.value,
                    "priority": rb.priority.value,
                    "version": rb.version,
                    "steps": len(rb.steps),
                    "expected_duration_seconds": rb.expected_duration,
                    "rto_seconds": rb.rto,
                    "rpo_seconds": rb.rpo,
                    "tags": rb.tags,
                }
                for rb in runbooks
            ]
        )
        return
    table = Table("slug", "type", "priority", "ver", "steps", "expected", "RTO", "RPO", "title")
    for rb in runbooks:
        table.add_row(
            rb.slug,
            rb.type.value,
            rb.priority.value,
            rb.version,
            str(len(rb.steps)),
            format_duration(rb.expected_duration),
            format_duration(rb.rto),
            format_duration(rb.rpo),
            rb.title,
        )
    console.print(table)
    console.print(f"{len(runbooks)} runbooks")


def linked_notes(slug: str, *, pinned_only: bool = False) -> list[NoteView]:
    """Notes that concern a runbook: the catalog's, plus admins' from the mirror if it exists."""
    views = {
        doc.model.slug: NoteView(
            doc.model.slug, doc.model.title, doc.model.type.value, doc.model.pinned, doc.model.body
        )
        for doc in context.catalog().notes.values()
        if slug in doc.model.runbooks
    }
    engine = context.mirror(create=False)
    if engine is not None:
        with session_scope(engine) as session:
            for note in session.scalars(select(AdminNote).where(AdminNote.is_active.is_(True))):
                if slug in (note.runbook_slugs or []):
                    views[note.slug] = NoteView(
                        note.slug, note.title, note.note_type, note.is_pinned, note.body
                    )
    notes = sorted(views.values(), key=lambda n: (not n.is_pinned, n.title))
    return [n for n in notes if n.is_pinned] if pinned_only else notes


def show(
    slug: Annotated[str, typer.Argument(help="The runbook's slug.")],
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print the runbook as a Markdown document.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Show a runbook: steps with their commands, verifications, rollbacks, and its notes."""
    doc = context.runbook_document(slug)
    notes = linked_notes(slug)
    if as_json:
        print_json(
            {
                "definition": doc.definition,
                "definition_hash": doc.definition_hash,
                "notes": [n.__dict__ for n in notes],
            }
        )
        return
    text = runbook_markdown(doc.model, notes)
    if markdown:
        print(text, end="")
    else:
        console.print(Markdown(text, code_theme="ansi_dark"))


def sync(as_json: JsonOption = False) -> None:
    """Write the catalog into the mirror database; a second sync writes nothing."""
    try:
        loaded = context.catalog()
    except CatalogError as exc:
        for problem in exc.problems:
            errors.print(str(problem), markup=False)
        raise context.CommandError(
            f"sync refused: {len(exc.problems)} problem(s) in the catalog (nothing written)"
        ) from None
    engine = context.mirror()
    try:
        report = sync_catalog(engine, loaded)
    except SyncRefused as exc:
        for reason in exc.reasons:
            errors.print(f"refused: {reason}", markup=False)
        raise context.CommandError(
            f"sync refused for {len(exc.reasons)} item(s) (nothing written)"
        ) from None
    if as_json:
        print_json(report.__dict__ | {"wrote_anything": report.wrote_anything})
        return
    lines = [
        ("created", report.created),
        ("updated", report.updated),
        ("reactivated", report.reactivated),
        ("marked inactive", report.deactivated),
        ("notes created", report.notes_created),
        ("notes updated", report.notes_updated),
        ("notes marked inactive", report.notes_deactivated),
    ]
    for label, items in lines:
        if items:
            console.print(f"{label}: {', '.join(items)}")
    if report.wrote_anything:
        console.print(f"synced: {len(loaded.runbooks)} runbooks, {len(loaded.notes)} catalog notes")
    else:
        console.print(
            f"nothing to write: {len(report.unchanged)} runbooks and "
            f"{len(report.notes_unchanged)} notes already in sync"
        )

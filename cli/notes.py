"""`runbooks notes`: list, show, add, pin/unpin and mark admin notes helpful."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from db.engine import session_scope
from db.models import AdminNote
from db.notes import NoteError, add_note, get_note, list_notes, mark_helpful, set_pinned
from runbook_catalog.models import NoteType

from . import context
from .catalog import JsonOption
from .output import console, print_json

app = typer.Typer(help="Admin notes: best practices, tips, warnings, lessons learned.")


def _as_dict(note: AdminNote) -> dict:
    return {
        "slug": note.slug,
        "title": note.title,
        "type": note.note_type,
        "pinned": note.is_pinned,
        "helpful_count": note.helpful_count,
        "tags": note.tags,
        "runbooks": note.runbook_slugs,
        "doc_links": note.doc_links,
        "source": note.source,
        "author": note.author,
        "body": note.body,
    }


def _session():
    return session_scope(context.mirror())


@app.callback(invoke_without_command=True)
def notes_list(
    ctx: typer.Context,
    note_type: Annotated[NoteType | None, typer.Option("--type", help="Only this type.")] = None,
    tag: Annotated[str | None, typer.Option(help="Only notes with this tag.")] = None,
    runbook: Annotated[str | None, typer.Option(help="Only notes linked to this runbook.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List notes, pinned first, then the most helpful (run `runbooks sync` first)."""
    if ctx.invoked_subcommand is not None:
        return
    with _session() as session:
        notes = list_notes(
            session, note_type=note_type.value if note_type else None, tag=tag, runbook=runbook
        )
        if as_json:
            print_json([_as_dict(n) for n in notes])
            return
        table = Table("", "slug", "type", "helpful", "title", "runbooks")
        for note in notes:
            table.add_row(
                "📌" if note.is_pinned else "",
                note.slug,
                note.note_type,
                str(note.helpful_count),
                note.title,
                ", ".join(note.runbook_slugs or []),
            )
        console.print(table)
        console.print(f"{len(notes)} notes")


SlugArgument = Annotated[str, typer.Argument(help="The note's slug.")]


@app.command("show")
def notes_show(slug: SlugArgument, as_json: JsonOption = False) -> None:
    """Show one note in full."""
    with _session() as session:
        note = _get(session, slug)
        if as_json:
            print_json(_as_dict(note))
            return
        pin = "📌 " if note.is_pinned else ""
        console.print(f"[bold]{pin}{note.title}[/bold]  ({note.note_type}, {note.slug})")
        console.print(f"helpful: {note.helpful_count} · tags: {', '.join(note.tags or [])}")
        console.print(f"runbooks: {', '.join(note.runbook_slugs or []) or '-'}")
        console.print()
        console.print(note.body, markup=False)


def _get(session, slug: str) -> AdminNote:
    try:
        return get_note(session, slug)
    except NoteError as exc:
        raise context.CommandError(str(exc)) from None


@app.command("add")
def notes_add(
    title: Annotated[str, typer.Option(help="The note's title.")],
    note_type: Annotated[NoteType, typer.Option("--type", help="The kind of note.")],
    body: Annotated[str | None, typer.Option(help="The text (Markdown).")] = None,
    body_file: Annotated[
        Path | None, typer.Option(help="Read the text from this file.", exists=True)
    ] = None,
    tag: Annotated[list[str] | None, typer.Option(help="A tag; repeat for more.")] = None,
    runbook: Annotated[
        list[str] | None, typer.Option(help="A runbook it concerns; repeat for more.")
    ] = None,
    pin: Annotated[bool, typer.Option(help="Pin it at the top.")] = False,
    author: Annotated[str | None, typer.Option(help="Who wrote it (default: you).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Add an admin note (kept across every sync)."""
    if (body is None) == (body_file is None):
        raise context.CommandError("give the text with exactly one of --body or --body-file")
    text = body if body is not None else body_file.read_text(encoding="utf-8")
    with _session() as session:
        try:
            note = add_note(
                session,
                title=title,
                note_type=note_type.value,
                body=text,
                tags=tag or [],
                runbooks=runbook or [],
                author=author or getpass.getuser(),
                pinned=pin,
            )
        except NoteError as exc:
            raise context.CommandError(str(exc)) from None
        if as_json:
            print_json(_as_dict(note))
        else:
            console.print(f"added note {note.slug}")


@app.command("pin")
def notes_pin(slug: SlugArgument) -> None:
    """Pin a note at the top of every list."""
    with _session() as session:
        try:
            set_pinned(session, slug, True)
        except NoteError as exc:
            raise context.CommandError(str(exc)) from None
    console.print(f"pinned {slug}")


@app.command("unpin")
def notes_unpin(slug: SlugArgument) -> None:
    """Unpin a note."""
    with _session() as session:
        try:
            set_pinned(session, slug, False)
        except NoteError as exc:
            raise context.CommandError(str(exc)) from None
    console.print(f"unpinned {slug}")


@app.command("helpful")
def notes_helpful(slug: SlugArgument) -> None:
    """Count one more person who found the note helpful."""
    with _session() as session:
        try:
            count = mark_helpful(session, slug)
        except NoteError as exc:
            raise context.CommandError(str(exc)) from None
    console.print(f"{slug}: helpful {count}")

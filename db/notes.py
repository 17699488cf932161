"""Admin notes in the mirror: list with filters, add, pin/unpin, mark helpful."""

from __future__ import annotations

import re
import unicodedata

from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from runbook_catalog.models import AdminNote as NoteDocument

from .base import utcnow
from .models import AdminNote, Runbook


class NoteError(Exception):
    """A note operation that cannot be done, with a one-line reason."""


def list_notes(
    session: Session,
    *,
    note_type: str | None = None,
    tag: str | None = None,
    runbook: str | None = None,
    include_inactive: bool = False,
) -> list[AdminNote]:
    """Pinned first, then the most helpful, then by title."""
    query = select(AdminNote)
    if note_type:
        query = query.where(AdminNote.note_type == note_type)
    if not include_inactive:
        query = query.where(AdminNote.is_active.is_(True))
    query = query.order_by(
        AdminNote.is_pinned.desc(), AdminNote.helpful_count.desc(), AdminNote.title
    )
    notes = list(session.scalars(query))
    # Tags and runbook links are short JSON lists; filtering them here keeps one query for
    # both databases.
    if tag:
        notes = [n for n in notes if tag in (n.tags or [])]
    if runbook:
        notes = [n for n in notes if runbook in (n.runbook_slugs or [])]
    return notes


def get_note(session: Session, slug: str) -> AdminNote:
    note = session.scalar(select(AdminNote).where(AdminNote.slug == slug))
    if note is None:
        raise NoteError(f"no admin note with slug '{slug}'")
    return note


def slugify(title: str) -> str:
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")
    return slug[:55].rstrip("-") or "note"


def add_note(
    session: Session,
    *,
    title: str,
    note_type: str,
    body: str,
    tags: list[str],
    runbooks: list[str],
    author: str | None,
    pinned: bool = False,
) -> AdminNote:
    """Validate like a catalog note, check linked runbooks exist, store with a unique slug."""
    base = slugify(title)
    taken = set(session.scalars(select(AdminNote.slug).where(AdminNote.slug.like(f"{base}%"))))
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}-{n}", n + 1
    try:
        document = NoteDocument(
            slug=slug,
            title=title,
            type=note_type,
            pinned=pinned,
            tags=tags,
            runbooks=runbooks,
            author=author,
            body=body,
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"]) or "note"
        raise NoteError(f"{field}: {error['msg'].removeprefix('Value error, ')}") from None
    known = set(session.scalars(select(Runbook.slug)))
    unknown = [slug for slug in runbooks if slug not in known]
    if unknown:
        raise NoteError(f"runbook: unknown runbook(s) {', '.join(unknown)} (run `runbooks sync`?)")
    note = AdminNote(
        slug=document.slug,
        title=document.title,
        body=document.body,
        note_type=document.type.value,
        is_pinned=document.pinned,
        helpful_count=0,
        tags=list(document.tags),
        runbook_slugs=list(document.runbooks),
        doc_links=[],
        source="admin",
        author=document.author,
        is_active=True,
    )
    session.add(note)
    session.flush()
    return note


def set_pinned(session: Session, slug: str, pinned: bool) -> AdminNote:
    note = get_note(session, slug)
    if note.is_pinned != pinned:
        note.is_pinned = pinned
        note.updated_at = utcnow()
    return note


def mark_helpful(session: Session, slug: str) -> int:
    """Add one to the note's helpful count in a single UPDATE (safe under concurrent votes)."""
    get_note(session, slug)
    session.execute(
        update(AdminNote)
        .where(AdminNote.slug == slug)
        .values(helpful_count=AdminNote.helpful_count + 1)
    )
    return session.scalar(select(AdminNote.helpful_count).where(AdminNote.slug == slug))

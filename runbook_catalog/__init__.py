"""The runbooks and admin notes as validated data. See README.md in this folder."""

from .loader import Catalog, Document, load_catalog
from .models import AdminNote, NoteType, Priority, Runbook, RunbookType, Step
from .problems import CatalogError, Problem

__all__ = [
    "AdminNote",
    "Catalog",
    "CatalogError",
    "Document",
    "NoteType",
    "Priority",
    "Problem",
    "Runbook",
    "RunbookType",
    "Step",
    "load_catalog",
]

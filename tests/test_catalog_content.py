"""The reference platform's catalog: exactly the 13 runbooks and 8 notes, with their objectives."""

from __future__ import annotations

from collections import Counter

import pytest

from runbook_catalog import load_catalog
from runbook_catalog.parameters import IdentifierParam, SlugParam
from tasks.render import plan_runbook, validate_parameters

from .conftest import CATALOG

H, M = 3600, 60
EXPECTED = {
    # slug: (type, priority, expected, rto, rpo, exact step count or None)
    "database-outage": ("incident_response", "critical", H, H, None, 8),
    "application-crash": ("incident_response", "critical", 30 * M, 30 * M, None, 9),
    "security-breach": ("incident_response", "critical", H, H, None, 8),
    "routine-database-maintenance": ("maintenance", "medium", H, None, None, None),
    "ssl-certificate-renewal": ("maintenance", "high", 30 * M, None, None, None),
    "dependency-updates": ("maintenance", "medium", 2 * H, None, None, None),
    "full-database-recovery": ("disaster_recovery", "critical", H, H, 15 * M, 11),
    "complete-system-recovery": ("disaster_recovery", "critical", 4 * H, 4 * H, 15 * M, 11),
    "production-deployment": ("deployment", "high", 30 * M, None, None, None),
    "slow-database-queries": ("troubleshooting", "medium", H, None, None, None),
    "high-memory-usage": ("troubleshooting", "high", 45 * M, None, None, None),
    "manual-database-backup": ("backup_restore", "high", 30 * M, None, None, None),
    "restore-tenant-data": ("backup_restore", "high", 20 * M, None, None, None),
}

NOTES = {
    "Database Connection Pooling Best Practices": ("best_practice", True),
    "Always Verify Backups Before Major Changes": ("best_practice", True),
    "Deployment Checklist": ("best_practice", False),
    "Key Metrics to Monitor Daily": ("tip", True),
    "Incident Response: Stay Calm and Follow the Runbook": ("tip", False),
    "Optimizing Slow Queries": ("tip", False),
    "Never Share Database Credentials": ("warning", True),
    "Lesson Learned: Always Test Restores": ("lesson_learned", False),
}


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(CATALOG, strict=True)


def test_exactly_the_reference_runbooks(catalog):
    assert set(catalog.runbooks) == set(EXPECTED)
    counts = Counter(doc.model.type.value for doc in catalog.runbooks.values())
    assert counts == {
        "incident_response": 3,
        "maintenance": 3,
        "disaster_recovery": 2,
        "deployment": 1,
        "troubleshooting": 2,
        "backup_restore": 2,
    }


@pytest.mark.parametrize("slug", EXPECTED)
def test_runbook_objectives_and_steps(catalog, slug):
    rb = catalog.runbook(slug)
    rb_type, priority, expected, rto, rpo, steps = EXPECTED[slug]
    assert (rb.type.value, rb.priority.value) == (rb_type, priority)
    assert (rb.expected_duration, rb.rto, rb.rpo) == (expected, rto, rpo)
    if steps is not None:
        assert len(rb.steps) == steps
    else:
        assert len(rb.steps) >= 4
    assert all(step.verify is not None for step in rb.steps)


@pytest.mark.parametrize("slug", EXPECTED)
def test_every_runbook_plans_with_its_examples(catalog, slug):
    rb = catalog.runbook(slug)
    parameters = validate_parameters(rb, {}, use_examples=True)
    planned = plan_runbook(rb, parameters)
    assert [p.step.id for p in planned] == [s.id for s in rb.steps]
    assert all(p.run.display() for p in planned)


def test_required_parameters(catalog):
    for slug in ("routine-database-maintenance", "manual-database-backup"):
        assert isinstance(catalog.runbook(slug).parameters["database"], IdentifierParam)
    assert isinstance(catalog.runbook("restore-tenant-data").parameters["tenant_id"], SlugParam)


def test_commands_are_the_real_tools(catalog):
    """The catalog speaks the tools an engineer types, not placeholders for them."""
    text = "\n".join(
        " ".join(command.texts())
        for doc in catalog.runbooks.values()
        for step in doc.model.steps
        for _, command in step.commands()
    )
    for tool in (
        "patronictl",
        "psql",
        "pg_dump",
        "pg_restore",
        "certbot",
        "openssl",
        "nginx",
        "pip-audit",
        "supervisorctl",
    ):
        assert tool in text, tool


def test_critical_irreversible_steps_need_approval(catalog):
    for doc in catalog.runbooks.values():
        if doc.model.priority.value == "critical":
            for step in doc.model.steps:
                assert not step.irreversible or step.requires_approval, (doc.model.slug, step.id)


def test_the_eight_notes(catalog):
    notes = {doc.model.title: doc.model for doc in catalog.notes.values()}
    assert set(notes) == set(NOTES)
    for title, (note_type, pinned) in NOTES.items():
        note = notes[title]
        assert (note.type.value, note.pinned) == (note_type, pinned), title
        assert len(note.body) > 400, title
        assert note.tags, title
        assert note.runbooks and set(note.runbooks) <= set(EXPECTED), title
    assert sum(n.pinned for n in notes.values()) == 4


def test_readme_catalog_table_is_current(catalog):
    from config import PROJECT_ROOT
    from runbook_catalog.overview import catalog_table

    readme = (PROJECT_ROOT / "README.md").read_text()
    table = readme.split("<!-- catalog-table -->\n", 1)[1].split("<!-- /catalog-table -->", 1)[0]
    assert table == catalog_table(doc.model for doc in catalog.runbooks.values()), (
        "README.md's catalog table is out of date: paste `runbooks list --markdown` into it"
    )

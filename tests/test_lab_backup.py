"""manual-database-backup, the catalog's own runbook, against the lab's PostgreSQL: the dump
exists, its checksum matches, and it restores into a scratch database with the same rows."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

COUNT_TABLES = (
    "SELECT string_agg(format('%s=%s', relname, n_live), ',' ORDER BY relname) FROM ("
    " SELECT c.relname, (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n"
    " FROM public.%I', c.relname), false, true, '')))[1]::text AS n_live"
    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = 'public' AND c.relkind = 'r') t"
)


@pytest.fixture
def backup_dirs():
    """Unique directories under the runbook's path bases, removed afterwards, and a base the
    runbook had to create goes too once empty."""
    name = f"rb-lab-{uuid.uuid4().hex[:8]}"
    dirs = (Path("/var/backups/postgres") / name, Path("/mnt/offsite") / name)
    # /var/backups/postgres, /mnt/offsite and their parents, where they do not exist yet
    new_bases = [p for folder in dirs for p in folder.parents if not p.exists()]
    yield dirs
    for folder in dirs:
        shutil.rmtree(folder, ignore_errors=True)
    for base in new_bases:  # deepest first, as parents lists them
        with contextlib.suppress(OSError):  # not empty: someone else's now
            base.rmdir()


def test_backup_is_verified_restorable_and_copied_offsite(lab, backup_dirs):
    backup_dir, offsite_dir = backup_dirs
    postgres = lab.service("postgres")
    result, execution, steps = lab.run(
        "manual-database-backup", f"backup_dir={backup_dir}", f"offsite_dir={offsite_dir}"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert execution.status == "succeeded"
    assert [s.status for s in steps] == ["succeeded"] * 8

    [dump] = backup_dir.glob("app-*.dump")
    digest = hashlib.sha256(dump.read_bytes()).hexdigest()
    assert (backup_dir / f"{dump.name}.sha256").read_text().split()[0] == digest
    assert (offsite_dir / dump.name).read_bytes() == dump.read_bytes()

    # Restore it ourselves into a new database: the same tables with the same row counts.
    scratch = f"verify_{uuid.uuid4().hex[:8]}"
    postgres.psql(f'CREATE DATABASE "{scratch}"', "postgres")
    try:
        subprocess.run(
            ["pg_restore", "--no-owner", "--exit-on-error", "-d", postgres.url(scratch),
             str(dump)],
            check=True, capture_output=True,
        )  # fmt: skip
        restored = postgres.psql(COUNT_TABLES, scratch)
        live = postgres.psql(COUNT_TABLES)
    finally:
        postgres.psql(f'DROP DATABASE "{scratch}"', "postgres")
    assert restored == live
    assert "orders=10000" in live
    # The runbook's own scratch database is gone.
    assert (
        postgres.psql(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'runbook_verify_%'", "postgres"
        )
        == "0"
    )


def test_a_failed_backup_leaves_nothing_behind(lab, backup_dirs):
    backup_dir, offsite_dir = backup_dirs
    # An off-site directory that cannot be created (a file is in the way) fails step 7.
    offsite_dir.parent.mkdir(parents=True, exist_ok=True)
    offsite_dir.write_text("not a directory")
    try:
        result, execution, steps = lab.run(
            "manual-database-backup", f"backup_dir={backup_dir}", f"offsite_dir={offsite_dir}"
        )
    finally:
        offsite_dir.unlink()
    assert result.returncode == 1
    assert execution.status == "rolled_back", [(s.step_id, s.status) for s in steps]
    assert steps[6].step_id == "copy-offsite" and steps[6].status == "failed"
    # The dump and its checksum were removed, and the directory this run created too.
    assert not backup_dir.exists()

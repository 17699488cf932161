"""full-database-recovery, the catalog's own runbook, against the lab's Patroni cluster: an
encrypted base backup in the lab's backup store (lab/backups.py), rows written, a time T noted,
more rows written, then a destructive migration drops two tables, which the replica follows at
once (so failing over cannot help), and the leader's cluster is destroyed (PostgreSQL killed,
its data directory deleted). The runbook restores the leader to T: rows before T are there,
rows after T are not, the dropped tables are back whole, the integrity checks and pg_amcheck
pass, and the recovery point it records gives the RPO. The site was in maintenance mode
meanwhile and serves again.

The injected failure asks for a point before the base backup: the run has stopped PostgreSQL
and moved its data directory aside when the unpacked backup fails its check, and the rollback
puts everything back: the same data, Patroni resumed, the site serving.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import uuid
from datetime import UTC, datetime

import pytest

from lab.app import PUBLIC_HOST
from lab.patroni import CONFIG_BASE, MEMBERS, SCOPE

pytestmark = pytest.mark.lab

STEPS = 11
RPO_SECONDS = 15 * 60  # the runbook's rpo
CACHE_DB = 11  # a Redis database no other service uses (tests/test_lab_app.py)
REDIS = ["redis-cli", "-h", "127.0.0.1", "-p", "6379", "-n", str(CACHE_DB)]
TABLES = ("tenants", "customers", "inventory_items", "orders", "payments")
RECOVERY_POINT = re.compile(
    r"recovery point: last replayed commit at (?P<at>[^,]+), (?P<gap>[\d.]+) s before the target"
)


@pytest.fixture
def cluster(lab):
    """The Patroni cluster, healthy before the test; after it whole again the way the runbook
    tells the operator (replica re-initialised, Patroni resumed) and the kept copies removed."""
    patroni = lab.service("patroni")
    patroni.wait_healthy()
    patroni.psql(
        "CREATE TABLE IF NOT EXISTS lab_pitr_marker (value text PRIMARY KEY, phase text NOT NULL)"
    )
    yield patroni
    patroni.resume()
    leader = patroni.leader()
    for member in MEMBERS:
        if member != leader and patroni.members().get(member, {}).get("state") != "streaming":
            patroni.patronictl("reinit", SCOPE, member, "--force", "--wait")
    patroni.wait_healthy(timeout=180)
    for kept in [*patroni.root.glob("node*.broken-*"), *patroni.root.glob("node*.restored-*")]:
        shutil.rmtree(kept)
    for log in patroni.root.glob("node*.rollback-*.log"):  # the rollback's server log
        log.unlink()
    shutil.rmtree(patroni.root / "restore", ignore_errors=True)


def recovery_params(lab, patroni, member: str, backup_file: str, target: str) -> list[str]:
    app = lab.service("app")
    return [
        f"target_time={target}",
        f"backup_file={backup_file}",
        *lab.service("backups").runbook_paths(),
        f"data_dir={patroni.data_link.name}/{member}",
        f"staging_dir={patroni.data_link.name}/restore",
        f"patroni_config={patroni.ctl_config.relative_to(CONFIG_BASE)}",
        app.maintenance_flag_parameter(),
        f"site_hostname={PUBLIC_HOST}",
        "min_tenants=5",
        f"app_port={app.port}",
        f"cache_db={CACHE_DB}",
    ]


def mark(patroni, phase: str, count: int = 3) -> list[str]:
    """`count` rows of `phase` in the marker table, one transaction each."""
    values = [f"{phase}-{uuid.uuid4().hex[:12]}" for _ in range(count)]
    for value in values:
        patroni.psql(f"INSERT INTO lab_pitr_marker VALUES ('{value}', '{phase}')")  # noqa: S608
    return values


def present(patroni, values: list[str]) -> int:
    quoted = ", ".join(f"'{v}'" for v in values)
    return int(patroni.psql(f"SELECT count(*) FROM lab_pitr_marker WHERE value IN ({quoted})"))  # noqa: S608


def row_counts(patroni) -> dict[str, int]:
    return {t: int(patroni.psql(f"SELECT count(*) FROM {t}")) for t in TABLES}  # noqa: S608


def now_utc(patroni) -> str:
    """The database's clock, to the second, as the runbook's timestamp parameter."""
    return patroni.psql(
        "SELECT to_char(date_trunc('second', clock_timestamp()) AT TIME ZONE 'UTC',"
        ' \'YYYY-MM-DD"T"HH24:MI:SS"+00:00"\')'
    )


def archive_current_wal(patroni, backups) -> None:
    """Close the current WAL segment and wait until the archive holds it: PostgreSQL stops
    replaying only at a commit after the target, which must be in the archive."""
    segment = patroni.psql("SELECT pg_walfile_name(pg_switch_wal())")
    deadline = time.monotonic() + 60
    while not (backups.wal_dir / segment).exists():
        assert time.monotonic() < deadline, f"{segment} never reached the WAL archive"
        time.sleep(0.5)


def public_status(app, path: str = "/") -> str:
    return app.public_curl(path, "-o", "/dev/null", "-w", "%{http_code}").stdout


def timeline(patroni, member: str) -> int:
    return int(patroni.members()[member]["timeline"])


def test_restores_the_cluster_to_the_moment_before_a_destructive_migration(lab, cluster):
    patroni, backups, app = cluster, lab.service("backups"), lab.service("app")
    leader = patroni.leader()
    old_timeline = timeline(patroni, leader)
    counts = row_counts(patroni)
    backup_file = backups.base_backup(patroni.pg_port(leader))

    before = mark(patroni, "before")  # after the base backup: only WAL replay brings them back
    time.sleep(1.2)
    target = now_utc(patroni)
    time.sleep(1.2)
    after = mark(patroni, "after")
    patroni.psql("DROP TABLE payments, orders CASCADE")  # the destructive migration
    destroyed_at = datetime.now(UTC)
    archive_current_wal(patroni, backups)
    # Then the leader's cluster is lost; paused, so Patroni promotes nobody (the replica holds
    # the migration anyway).
    patroni.patronictl("pause", "--wait")
    patroni.kill_postgres(leader)
    shutil.rmtree(patroni.data_dir(leader))
    subprocess.run([*REDIS, "SET", "lab:cached-order", "stale"], check=True, capture_output=True)

    result, execution, steps = lab.run(
        "full-database-recovery", *recovery_params(lab, patroni, leader, backup_file, target)
    )
    assert result.returncode == 0, (patroni.members(), result.stdout + result.stderr)
    assert execution.status == "succeeded"
    assert [s.status for s in steps] == ["succeeded"] * STEPS

    # Restored to T on a new timeline, through the application's endpoint.
    assert present(patroni, before) == len(before)
    assert present(patroni, after) == 0
    assert row_counts(patroni) == counts
    assert patroni.leader() == leader and timeline(patroni, leader) > old_timeline
    by_id = {s.step_id: s for s in steps}
    assert "pg_amcheck: no corruption found" in by_id["integrity-checks"].output_tail

    # The recovery point is recorded: at or before T, after the last row written before T;
    # the RPO (data lost: destruction minus the recovery point) is within the runbook's.
    point = RECOVERY_POINT.search(by_id["replay-wal"].output_tail)
    assert point, by_id["replay-wal"].output_tail
    recovered_to = datetime.fromisoformat(point["at"].strip())
    assert recovered_to <= datetime.fromisoformat(target)
    assert float(point["gap"]) < 3  # the last "before" commit was 1.2 s before T
    rpo = (destroyed_at - recovered_to).total_seconds()
    assert 0 < rpo <= RPO_SECONDS
    print(f"full-database-recovery: RPO {rpo:.1f} s, run took {execution.duration_seconds} s")

    # Nothing was left to move aside; the cache was flushed; the site left maintenance mode
    # and serves; Patroni stays paused for the replica's reinit (it was paused before, too).
    assert "does not exist; nothing to move aside" in by_id["move-data-aside"].output_tail
    assert not list(patroni.root.glob(f"{leader}.broken-*"))
    assert subprocess.run([*REDIS, "EXISTS", "lab:cached-order"], capture_output=True,
                          text=True, check=True).stdout.strip() == "0"  # fmt: skip
    assert not app.maintenance_flag.exists()
    assert public_status(app, "/healthz") == "200"
    assert patroni.paused()


def test_a_target_before_the_base_backup_is_rolled_back_to_the_running_cluster(lab, cluster):
    patroni, backups, app = cluster, lab.service("backups"), lab.service("app")
    leader = patroni.leader()
    too_early = now_utc(patroni)
    time.sleep(1.2)
    backup_file = backups.base_backup(patroni.pg_port(leader))
    written = mark(patroni, "kept")
    counts = row_counts(patroni)
    old_timeline = timeline(patroni, leader)

    result, execution, steps = lab.run(
        "full-database-recovery", *recovery_params(lab, patroni, leader, backup_file, too_early)
    )
    assert result.returncode == 1
    assert execution.status == "rolled_back", [(s.step_id, s.status) for s in steps]
    by_id = {s.step_id: s for s in steps}
    unpack = by_id["unpack-base-backup"]
    assert unpack.status == "failed" and unpack.verify_passed is False
    assert "recovery target" in unpack.output_tail  # the check says why
    undone = ("maintenance-on", "download-backup", "decrypt-backup", "stop-postgres",
              "move-data-aside")  # fmt: skip
    assert {by_id[s].rollback_status for s in undone} == {"succeeded"}, [
        (s.step_id, s.rollback_status, s.rollback_output_tail) for s in steps
    ]
    assert {by_id[s].status for s in ("replay-wal", "integrity-checks", "restart-app")} == {
        "skipped"
    }

    # As before the run: the same data on the same leader and timeline, Patroni resumed and
    # the replica streaming, the site out of maintenance mode, the staging copy gone. What
    # was unpacked is kept aside, not deleted.
    patroni.wait_healthy(timeout=120)
    assert not patroni.paused()
    assert patroni.leader() == leader and timeline(patroni, leader) == old_timeline
    assert present(patroni, written) == len(written)
    assert row_counts(patroni) == counts
    assert not app.maintenance_flag.exists()
    assert public_status(app) == "200"
    assert not any((patroni.root / "restore").iterdir())
    assert list(patroni.root.glob(f"{leader}.restored-*"))
    assert not list(patroni.root.glob(f"{leader}.broken-*"))

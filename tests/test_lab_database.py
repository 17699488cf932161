"""The database runbooks, the catalog's own, against the lab's PostgreSQL (demo database `app`):
restore-tenant-data, routine-database-maintenance and slow-database-queries. Each test runs
the runbook through `runbooks run` and then looks at the database itself."""

# The SQL here is built from the tests' own constants and generated tags (the lab's psql helper
# takes no bind parameters), never from outside input.
# ruff: noqa: S608

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest

pytestmark = pytest.mark.lab

TENANT = "acme-jewels"
OTHER_TENANT = "brilliant-gems"
# Every tenant-owned table and the column naming its tenant.
TENANT_TABLES = {
    "tenants": "id",
    "customers": "tenant_id",
    "inventory_items": "tenant_id",
    "orders": "tenant_id",
    "payments": "tenant_id",
}
SEQUENCES = ("customers_id_seq", "inventory_items_id_seq", "orders_id_seq", "payments_id_seq")


# ---- helpers ----------------------------------------------------------------------------


def tenant_checksums(postgres) -> dict[tuple[str, str], str]:
    """(tenant, table) -> row count and md5 of the tenant's rows in id order."""
    parts = [
        f"SELECT {column} AS tenant, '{table}', count(*) || ':' ||"
        f" md5(string_agg(r::text, E'\\n' ORDER BY r.id)) FROM {table} r GROUP BY {column}"
        for table, column in TENANT_TABLES.items()
    ]
    rows = postgres.psql(" UNION ALL ".join(parts)).splitlines()
    return {(tenant, table): digest for tenant, table, digest in (r.split("|") for r in rows)}


def of_tenant(checksums: dict, tenant: str, keep: bool = True) -> dict:
    return {k: v for k, v in checksums.items() if (k[0] == tenant) == keep}


def sequence_values(postgres) -> str:
    return postgres.psql(" UNION ALL ".join(f"SELECT last_value FROM {name}" for name in SEQUENCES))


def leftovers(postgres) -> tuple[str, str]:
    """The restore's side schema and scratch databases, if any are left."""
    schema = postgres.psql(
        "SELECT count(*) FROM pg_namespace WHERE nspname = 'runbook_tenant_saved'"
    )
    scratch = postgres.psql(
        "SELECT coalesce(string_agg(datname, ','), '') FROM pg_database"
        " WHERE datname LIKE 'runbook_restore_%'",
        "postgres",
    )
    return schema, scratch


def remove_leftovers(postgres) -> None:
    postgres.psql("DROP SCHEMA IF EXISTS runbook_tenant_saved CASCADE")
    for name in filter(None, leftovers(postgres)[1].split(",")):
        postgres.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', "postgres")


def wait_until(condition, what: str, timeout: float = 120.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def step_output(steps, step_id: str) -> str:
    [step] = [s for s in steps if s.step_id == step_id]
    return step.output_tail or ""


@pytest.fixture
def dump_dir():
    """A unique directory under the restore runbook's path base, removed afterwards."""
    folder = Path("/var/backups/postgres") / f"rb-lab-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def take_dump(postgres, folder: Path) -> Path:
    dump = folder / "app.dump"
    subprocess.run(
        ["pg_dump", "-Fc", "-f", str(dump), postgres.url()], check=True, capture_output=True
    )
    return dump


# ---- restore-tenant-data ----------------------------------------------------------------

DAMAGE = f"""
UPDATE tenants SET plan = 'starter' WHERE id = '{TENANT}';
DELETE FROM payments WHERE tenant_id = '{TENANT}' AND id % 3 = 0;
UPDATE orders SET status = 'lost', total_cents = 1 WHERE tenant_id = '{TENANT}' AND id % 2 = 0;
UPDATE customers SET email = 'overwritten-' || id || '@example.invalid'
 WHERE tenant_id = '{TENANT}' AND id % 5 = 0;
INSERT INTO inventory_items (tenant_id, sku, name, metal, price_cents)
 VALUES ('{TENANT}', 'SKU-AFTER-BACKUP', 'Ring after backup', 'gold', 9900);
"""


def test_restore_brings_one_tenant_back_identical_and_leaves_the_others(lab, dump_dir):
    postgres = lab.service("postgres")
    dump = take_dump(postgres, dump_dir)
    in_backup = tenant_checksums(postgres)
    # After the backup: the tenant's rows are damaged, another tenant keeps working.
    postgres.psql(DAMAGE)
    new_customer = postgres.psql(
        f"INSERT INTO customers (tenant_id, email, full_name) VALUES ('{OTHER_TENANT}',"
        " 'after-backup@example.invalid', 'After Backup') RETURNING id"
    ).splitlines()[0]
    try:
        before = tenant_checksums(postgres)
        sequences = sequence_values(postgres)
        assert of_tenant(before, TENANT) != of_tenant(in_backup, TENANT)

        result, execution, steps = lab.run(
            "restore-tenant-data", f"tenant_id={TENANT}", f"backup_file={dump}"
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert execution.status == "succeeded"
        assert [s.status for s in steps] == ["succeeded"] * 5

        after = tenant_checksums(postgres)
        # The tenant's five tables are exactly as in the backup, row for row.
        assert of_tenant(after, TENANT) == of_tenant(in_backup, TENANT)
        assert len(of_tenant(after, TENANT)) == len(TENANT_TABLES)
        # Every other tenant is as it was just before the run, including rows written
        # after the backup, and the sequences were not set back to the backup's values.
        assert of_tenant(after, TENANT, keep=False) == of_tenant(before, TENANT, keep=False)
        assert sequence_values(postgres) == sequences
        assert leftovers(postgres) == ("0", "")
    finally:
        postgres.psql(f"DELETE FROM customers WHERE id = {int(new_customer)}")
        remove_leftovers(postgres)


class ScratchDatabaseVisitor(threading.Thread):
    """An operator connected to the run's scratch database: the clean-up's DROP DATABASE
    fails on it (after PostgreSQL's 5 s wait), so the run rolls back after the swap. The
    visitor disconnects once that drop has failed, so the rollback's own drop succeeds."""

    def __init__(self, postgres):
        super().__init__(daemon=True)
        self.postgres = postgres
        self.stop = threading.Event()
        self.visited: str | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self.postgres.url("postgres"), autocommit=True) as admin:
                self._visit(admin)
        except BaseException as exc:  # the test reports it
            self.error = exc

    def _until(self, condition) -> bool:
        while not self.stop.is_set():
            if condition():
                return True
            time.sleep(0.05)
        return False

    def _visit(self, admin) -> None:
        def scratch() -> str | None:
            return admin.execute(
                "SELECT max(datname) FROM pg_database"
                " WHERE starts_with(datname, 'runbook_restore_')"
            ).fetchone()[0]

        def dropping() -> bool:
            return admin.execute(
                "SELECT count(*) > 0 FROM pg_stat_activity"
                " WHERE starts_with(upper(query), 'DROP DATABASE') AND position(%s IN query) > 0",
                (self.visited,),
            ).fetchone()[0]

        if not self._until(scratch):
            return
        name = scratch()
        session = None

        def connected() -> bool:
            nonlocal session
            with contextlib.suppress(psycopg.OperationalError):
                session = psycopg.connect(self.postgres.url(name), autocommit=True)
            return session is not None

        if not self._until(connected):
            return
        self.visited = name
        with session:
            self._until(dropping)  # the clean-up's drop waits for us, then fails
            self._until(lambda: not dropping())


def test_a_failure_after_the_swap_rolls_the_tenant_back_to_its_rows_before_the_run(lab, dump_dir):
    postgres = lab.service("postgres")
    dump = take_dump(postgres, dump_dir)
    postgres.psql(DAMAGE)  # what the restore would repair
    before = tenant_checksums(postgres)
    sequences = sequence_values(postgres)
    visitor = ScratchDatabaseVisitor(postgres)
    visitor.start()
    try:
        result, execution, steps = lab.run(
            "restore-tenant-data", f"tenant_id={TENANT}", f"backup_file={dump}"
        )
    finally:
        visitor.stop.set()
        visitor.join(30)
    try:
        assert visitor.error is None, visitor.error
        assert visitor.visited, "the visitor never saw the scratch database"
        assert result.returncode == 1, result.stdout + result.stderr
        assert execution.status == "rolled_back", [(s.step_id, s.status) for s in steps]
        outcome = {s.step_id: (s.status, s.rollback_status) for s in steps}
        assert outcome["replace-tenant-rows"] == ("succeeded", "succeeded")  # swapped, undone
        assert outcome["save-current-rows"] == ("succeeded", "succeeded")
        assert outcome["stage-backup"] == ("succeeded", "succeeded")
        assert outcome["clean-up"][0] == "failed"
        assert "being accessed by other users" in step_output(steps, "clean-up")
        # Every tenant, the damaged one included, is exactly as before the run.
        assert tenant_checksums(postgres) == before
        assert sequence_values(postgres) == sequences
        assert leftovers(postgres) == ("0", "")
    finally:
        remove_leftovers(postgres)
        # Repair the damage for the other tests from the dump, outside the runbook.
        lab.run("restore-tenant-data", f"tenant_id={TENANT}", f"backup_file={dump}")


def test_a_backup_without_the_tenant_fails_before_touching_anything(lab, dump_dir):
    postgres = lab.service("postgres")
    dump = take_dump(postgres, dump_dir)
    tenant = f"lab-{uuid.uuid4().hex[:8]}"  # created after the backup
    postgres.psql(
        f"INSERT INTO tenants (id, name, plan) VALUES ('{tenant}', 'New', 'starter');"
        f" INSERT INTO customers (tenant_id, email, full_name)"
        f" VALUES ('{tenant}', 'first@example.invalid', 'First')"
    )
    try:
        before = tenant_checksums(postgres)
        result, execution, steps = lab.run(
            "restore-tenant-data", f"tenant_id={tenant}", f"backup_file={dump}"
        )
        assert result.returncode == 1
        assert execution.status == "failed"  # nothing was changed, nothing to undo
        assert [s.status for s in steps] == ["succeeded", "failed", "skipped", "skipped", "skipped"]
        assert "holds no rows of tenant" in step_output(steps, "stage-backup")
        assert tenant_checksums(postgres) == before
        # The failed step dropped its own scratch database.
        assert leftovers(postgres) == ("0", "")
    finally:
        postgres.psql(
            f"DELETE FROM customers WHERE tenant_id = '{tenant}'; DELETE FROM tenants WHERE id = '{tenant}'"
        )
        remove_leftovers(postgres)


# ---- routine-database-maintenance -------------------------------------------------------

INDEX_FILES = (
    "SELECT c.relname || '=' || c.oid || '/' || pg_relation_filenode(c.oid) FROM pg_class c"
    " JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = 'public' AND c.relkind = 'i' ORDER BY c.relname"
)


def read_artifacts(lab, flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings({PREFECT_API_URL: lab.prefect_api_url}),
        get_client(sync_client=True) as client,
    ):
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )


def test_maintenance_vacuums_reindexes_analyzes_and_reports_the_unindexed_foreign_key(lab):
    postgres = lab.service("postgres")
    started = postgres.psql("SELECT now()")
    indexes_before = dict(line.split("=") for line in postgres.psql(INDEX_FILES).splitlines())

    result, execution, steps = lab.run(
        "routine-database-maintenance", "database=app", "index_report_min_rows=1000"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert execution.status == "succeeded"
    assert [s.status for s in steps] == ["succeeded"] * 10

    # VACUUM and ANALYZE by hand (not autovacuum) of every demo table during the run.
    fresh = postgres.psql(
        "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_stat_user_tables"
        f" WHERE schemaname = 'public' AND last_vacuum >= '{started}'"
        f" AND last_analyze >= '{started}'"
    )
    assert fresh == ",".join(sorted(TENANT_TABLES))
    # REINDEX CONCURRENTLY built every index anew: same names, new relations and files.
    indexes_after = dict(line.split("=") for line in postgres.psql(INDEX_FILES).splitlines())
    assert indexes_after.keys() == indexes_before.keys()
    assert "orders_pkey" in indexes_after
    unchanged = [name for name in indexes_after if indexes_after[name] == indexes_before[name]]
    assert not unchanged, f"not rebuilt: {unchanged}"

    # The report names the foreign key without an index, in the step output (the mirror)
    # and in the report file the run left in its workdir.
    unindexed = re.compile(r"public\.orders\s*\|\s*customer_id\s*\|\s*customers\s*\|")
    report = step_output(steps, "write-report")
    assert "## Foreign keys without an index" in report
    assert unindexed.search(report), report
    [report_file] = (lab.tmp / "data" / "runs" / str(execution.id)).glob("maintenance-report-*")
    assert unindexed.search(report_file.read_text())

    # Prefect keeps the engine's report artifact (the step table) for the flow run.
    artifacts = {a.key: a for a in read_artifacts(lab, execution.flow_run_id)}
    step_table = artifacts["routine-database-maintenance-report"].data
    assert "succeeded" in step_table.splitlines()[0]
    assert "`missing-index-report`" in step_table and "`write-report`" in step_table
    # ... and the report itself, published by the write-report step.
    published = artifacts["routine-database-maintenance-bloat-and-index-report"].data
    assert "## Foreign keys without an index" in published
    assert unindexed.search(published), published


# ---- slow-database-queries --------------------------------------------------------------


def test_slow_queries_are_listed_and_the_slowest_is_explained(lab):
    postgres = lab.service("postgres")
    tag = f"slowtag_{uuid.uuid4().hex[:8]}"
    # An N+1 lookup along the unindexed orders.customer_id: one sequential scan of orders
    # per customer. Statistics since a reset, as after a deploy, so it is the slowest.
    slow_query = (
        f"SELECT c.id, (SELECT count(*) FROM orders o WHERE o.customer_id = c.id) AS {tag}"
        f" FROM customers c WHERE c.tenant_id = '{TENANT}'"
    )
    postgres.psql("SELECT pg_stat_statements_reset()")
    for _ in range(3):
        postgres.psql(slow_query)
    # Slower still, but its normalized text (`interval $2`) cannot be prepared: reported,
    # and the next slowest is explained instead.
    odd_tag = f"oddtag_{uuid.uuid4().hex[:8]}"
    postgres.psql(f"SELECT pg_sleep(1.5), now() - interval '1 day' AS {odd_tag}")
    # And one statement still running while the runbook looks.
    sleeper_tag = f"sleeper_{uuid.uuid4().hex[:8]}"
    sleeper = subprocess.Popen(
        ["psql", "-X", "-d", postgres.url(), "-c", f"SELECT pg_sleep(600) AS {sleeper_tag}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(
            lambda: (
                postgres.psql(
                    "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
                    f" AND query LIKE '%{sleeper_tag}%' AND query_start < now() - interval '1 second'"
                    " AND pid <> pg_backend_pid()"
                )
                == "1"
            ),
            "the sleeping statement to run for a second",
        )
        result, execution, steps = lab.run(
            "slow-database-queries", "min_mean_ms=50", "long_query_seconds=1"
        )
    finally:
        postgres.psql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            f" WHERE query LIKE '%{sleeper_tag}%' AND pid <> pg_backend_pid()"
        )
        sleeper.terminate()
        sleeper.wait(30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert execution.status == "succeeded"
    assert [s.status for s in steps] == ["succeeded"] * 8

    assert f"pg_sleep(600) AS {sleeper_tag}" in step_output(steps, "long-running-queries")
    normalized = f"AS {tag} FROM customers c WHERE c.tenant_id = $1"
    by_mean = step_output(steps, "top-queries-by-mean-time")
    assert odd_tag in by_mean.splitlines()[2], by_mean  # the first row
    assert normalized in by_mean.splitlines()[3], by_mean  # the second
    assert normalized in step_output(steps, "top-queries-by-total-time")

    plan = step_output(steps, "explain-slowest-query")
    odd, explained = plan.split("Next slowest statement", 1)
    assert odd_tag in odd and "cannot be explained from its normalized text" in odd, plan
    assert 'syntax error at or near "$2"' in odd
    assert normalized in explained
    assert "QUERY PLAN" in explained
    # The generic plan shows why: a sequential scan of orders per customer.
    assert "SubPlan 1" in plan
    assert re.search(r"Seq Scan on public\.orders o\b", plan), plan
    assert "Filter: (o.customer_id = c.id)" in plan
    # The report people read in the Prefect UI: the run's published artifacts.
    artifacts = {a.key: a.data for a in read_artifacts(lab, execution.flow_run_id)}
    assert normalized in artifacts["slow-database-queries-slowest-queries"]
    assert "Filter: (o.customer_id = c.id)" in artifacts["slow-database-queries-slowest-query-plan"]

"""The SQL executor against a real PostgreSQL: binds, identifiers, transactions, deadlines.

Every database test gets a fresh database (`postgres_url`). The deadline tests that need a
server which stops answering put a plain TCP relay between the executor and PostgreSQL and
freeze it: the network equivalent of a hung server or a dead link.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from runbook_catalog.templating import substitute
from tasks.errors import CommandTimedOut, TargetUnreachable
from tasks.executors.result import TRUNCATION_MARK, Result
from tasks.executors.sql import MAX_ROWS, PostgresTarget, SQLExecutor, compose
from tasks.redaction import MASK, Redactor
from tasks.render import RenderedCommand, quote_identifier

HOSTILE = "'; DROP TABLE tenants; --"


def sql_command(
    template: str,
    *,
    identifiers: dict[str, str] | None = None,
    bind: dict | None = None,
    autocommit: bool = False,
) -> RenderedCommand:
    """What render_command produces for a sql step."""
    identifiers = identifiers or {}
    shown = substitute(template, {k: quote_identifier(v) for k, v in identifiers.items()})
    return RenderedCommand(
        "sql",
        sql=shown,
        sql_template=template,
        identifiers=identifiers,
        bind=bind or {},
        autocommit=autocommit,
    )


def run(
    executor: SQLExecutor,
    template: str,
    *,
    timeout: float = 10.0,
    output_limit: int = 64 * 1024,
    **command: object,
) -> Result:
    return executor.run(
        sql_command(template, **command),  # type: ignore[arg-type]
        env={},
        timeout=timeout,
        output_limit=output_limit,
    )


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture
def target(postgres_url: str) -> PostgresTarget:
    return PostgresTarget(name="db", dsn=postgres_url)


@pytest.fixture
def executor(target: PostgresTarget) -> Iterator[SQLExecutor]:
    executor = SQLExecutor(target)
    yield executor
    executor.close()


@pytest.fixture
def db(postgres_url: str) -> Iterator[psycopg.Connection]:
    """A second, independent connection to the same database."""
    with psycopg.connect(libpq(postgres_url), autocommit=True) as connection:
        yield connection


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class FreezableRelay:
    """A TCP relay to PostgreSQL that can stop passing bytes (a hung server or dead link)."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.frozen = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
                server = socket.create_connection(self.upstream)
            except OSError:
                return
            self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                while self.frozen.is_set():
                    time.sleep(0.02)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.frozen.clear()
        self._server.close()
        for end in self._sockets:
            end.close()


# Statements, rows and output ------------------------------------------------------------
@pytest.mark.postgres
def test_select_with_bind_parameters_returns_rows_and_psql_style_text(executor):
    query = (
        "SELECT g, g * %(factor)s AS scaled, g > 2 AS big, NULL::text AS nothing "
        "FROM generate_series(1, 3) AS g WHERE g >= %(low)s ORDER BY g"
    )

    result = run(executor, query, bind={"factor": 10, "low": 2})

    assert result.ok and result.exit_code == 0
    assert result.row_count == 2
    assert result.rows == ((2, 20, False, None), (3, 30, True, None))
    assert result.stdout_tail == "2|20|f|\n3|30|t|\n"
    assert result.stderr_tail == "" and not result.truncated and not result.timed_out
    assert result.target == "db"
    database = libpq(executor.postgres.dsn).rsplit("/", 1)[1]
    assert result.command == f"psql {database}@127.0.0.1: {query} -- with factor=10, low=2"


@pytest.mark.postgres
def test_several_statements_without_binds_print_every_result(executor):
    result = run(
        executor,
        "CREATE TABLE t (i int); INSERT INTO t VALUES (1), (2); SELECT i FROM t ORDER BY i",
    )

    assert result.exit_code == 0
    assert result.stdout_tail == "CREATE TABLE\nINSERT 0 2\n1\n2\n"
    assert result.row_count == 2
    assert result.rows == ((1,), (2,))


def test_compose_quotes_identifiers_and_leaves_binds_to_the_driver():
    command = sql_command(
        "SELECT v FROM {{ table }} WHERE v = %(v)s AND {{table}}.v IS NOT NULL",
        identifiers={"table": 'Weird"Name'},
        bind={"v": HOSTILE},
    )

    composed = compose(command)

    assert composed.as_string() == (
        'SELECT v FROM "Weird""Name" WHERE v = %(v)s AND "Weird""Name".v IS NOT NULL'
    )
    assert HOSTILE not in composed.as_string()


def test_compose_refuses_a_placeholder_without_a_value_and_non_sql_commands():
    with pytest.raises(ValueError, match="table"):
        compose(
            RenderedCommand("sql", sql="SELECT 1 FROM ?", sql_template="SELECT 1 FROM {{ table }}")
        )
    with pytest.raises(ValueError, match="argv"):
        compose(RenderedCommand("argv", argv=("true",)))


@pytest.mark.postgres
def test_identifier_placeholder_with_a_hostile_looking_table_name_is_quoted(executor, db):
    db.execute(sql.SQL("CREATE TABLE {} (v text)").format(sql.Identifier('Weird"Name')))
    db.execute(sql.SQL("INSERT INTO {} VALUES ('a'), ('b')").format(sql.Identifier('Weird"Name')))

    result = run(
        executor,
        "SELECT v FROM {{ table }} WHERE v <> %(skip)s ORDER BY v",
        identifiers={"table": 'Weird"Name'},
        bind={"skip": "b"},
    )

    assert result.exit_code == 0, result.stderr_tail
    assert result.stdout_tail == "a\n"
    assert 'FROM "Weird""Name" WHERE' in result.command


@pytest.mark.postgres
def test_an_identifier_that_tries_to_inject_sql_names_a_missing_table(executor, db):
    db.execute("CREATE TABLE tenants (id int)")

    result = run(
        executor,
        "DELETE FROM {{ table }}",
        identifiers={"table": "tenants; DROP TABLE tenants; --"},
    )

    assert result.exit_code == 1
    assert 'relation "tenants; DROP TABLE tenants; --" does not exist' in result.stderr_tail
    assert db.execute("SELECT to_regclass('tenants') IS NOT NULL").fetchone() == (True,)


@pytest.mark.postgres
def test_a_hostile_bind_value_is_stored_literally_and_the_table_survives(executor, db):
    db.execute("CREATE TABLE tenants (id serial PRIMARY KEY, name text NOT NULL)")

    inserted = run(executor, "INSERT INTO tenants (name) VALUES (%(name)s)", bind={"name": HOSTILE})
    found = run(executor, "SELECT name FROM tenants WHERE name = %(name)s", bind={"name": HOSTILE})

    assert inserted.exit_code == 0 and inserted.row_count == 1
    assert found.rows == ((HOSTILE,),)
    assert db.execute("SELECT name FROM tenants").fetchall() == [(HOSTILE,)]


@pytest.mark.postgres
def test_vacuum_runs_with_autocommit_and_fails_inside_a_transaction(executor, db):
    db.execute("CREATE TABLE t (i int)")

    vacuumed = run(
        executor, "VACUUM (ANALYZE) {{ table }}", identifiers={"table": "t"}, autocommit=True
    )
    refused = run(executor, "VACUUM {{ table }}", identifiers={"table": "t"})

    assert vacuumed.exit_code == 0, vacuumed.stderr_tail
    assert vacuumed.stdout_tail == "VACUUM\n"
    assert vacuumed.row_count is None
    assert refused.exit_code == 1
    assert "25001" in refused.stderr_tail
    assert "VACUUM cannot run inside a transaction block" in refused.stderr_tail


@pytest.mark.postgres
def test_dml_commits_and_reports_its_status(executor, db):
    db.execute("CREATE TABLE t (i int)")

    inserted = run(executor, "INSERT INTO t SELECT generate_series(1, %(n)s)", bind={"n": 3})
    deleted = run(executor, "DELETE FROM t WHERE i > %(keep)s", bind={"keep": 1})

    assert inserted.stdout_tail == "INSERT 0 3\n" and inserted.row_count == 3
    assert deleted.stdout_tail == "DELETE 2\n" and deleted.row_count == 2
    assert inserted.rows == () and deleted.rows == ()
    assert db.execute("SELECT array_agg(i) FROM t").fetchone() == ([1],)


@pytest.mark.postgres
def test_dml_returning_rows_counts_the_rows(executor, db):
    db.execute("CREATE TABLE t (i int)")

    result = run(executor, "INSERT INTO t VALUES (1), (2) RETURNING i * 10")

    assert result.stdout_tail == "10\n20\n"
    assert result.row_count == 2


# SQL errors -------------------------------------------------------------------------------
@pytest.mark.postgres
def test_a_sql_error_is_a_result_and_the_next_run_works(executor):
    failed = run(executor, "SELECT * FROM no_such_table WHERE id = %(id)s", bind={"id": 1})
    after = run(executor, "SELECT 41 + %(one)s", bind={"one": 1})

    assert failed.exit_code == 1 and not failed.ok
    assert failed.stderr_tail == 'ERROR 42P01: relation "no_such_table" does not exist'
    assert failed.stdout_tail == "" and failed.row_count is None
    assert after.exit_code == 0 and after.stdout_tail == "42\n"
    assert executor.connects == 1


@pytest.mark.postgres
def test_a_failing_statement_rolls_back_everything_it_did(executor, db):
    db.execute("CREATE TABLE t (i int PRIMARY KEY)")

    result = run(executor, "INSERT INTO t VALUES (1), (2), (1)")

    assert result.exit_code == 1
    assert result.stderr_tail.startswith("ERROR 23505: duplicate key value")
    assert "DETAIL: Key (i)=(1) already exists." in result.stderr_tail
    assert db.execute("SELECT count(*) FROM t").fetchone() == (0,)
    assert run(executor, "SELECT count(*) FROM t").stdout_tail == "0\n"


@pytest.mark.postgres
def test_a_statement_that_leaves_a_transaction_open_is_rolled_back(executor, db):
    db.execute("CREATE TABLE t (i int)")

    result = run(executor, "BEGIN; INSERT INTO t VALUES (1)", autocommit=True)

    assert result.exit_code == 1
    assert "left a transaction open" in result.stderr_tail
    assert db.execute("SELECT count(*) FROM t").fetchone() == (0,)
    assert run(executor, "INSERT INTO t VALUES (2)").exit_code == 0
    assert db.execute("SELECT array_agg(i) FROM t").fetchone() == ([2],)


@pytest.mark.postgres
def test_a_percent_sign_is_literal_without_binds_and_an_error_with_a_lone_one(executor):
    assert run(executor, "SELECT 'a%'").stdout_tail == "a%\n"
    assert run(executor, "SELECT 'a%%', %(x)s", bind={"x": 1}).stdout_tail == "a%|1\n"

    result = run(executor, "SELECT 'a%', %(x)s", bind={"x": 1})

    assert result.exit_code == 1
    assert result.stderr_tail.startswith("ERROR: only '%s', '%b', '%t' are allowed")


# Deadlines ---------------------------------------------------------------------------------
@pytest.mark.postgres
def test_statement_timeout_raises_and_rolls_back_and_the_executor_stays_usable(executor, db):
    db.execute("CREATE TABLE t (i int)")
    clock = time.monotonic()

    with pytest.raises(CommandTimedOut) as caught:
        run(
            executor,
            "WITH added AS (INSERT INTO t VALUES (1) RETURNING i) SELECT pg_sleep(5) FROM added",
            timeout=0.5,
        )

    assert time.monotonic() - clock < 2
    error = caught.value
    assert error.timeout == 0.5 and error.target == "db"
    assert error.result is not None
    assert error.result.timed_out and error.result.exit_code is None
    assert "57014" in error.result.stderr_tail
    assert "statement timeout" in error.result.stderr_tail
    assert "timed out after 0.5s: psql " in str(error)
    assert db.execute("SELECT count(*) FROM t").fetchone() == (0,)
    assert run(executor, "SELECT 1").stdout_tail == "1\n"
    assert executor.connects == 1


@pytest.mark.postgres
def test_the_local_deadline_cancels_a_statement_the_server_would_let_run(target):
    executor = SQLExecutor(target, cancel_grace=0.5)
    try:
        clock = time.monotonic()
        with pytest.raises(CommandTimedOut) as caught:
            # The first statement lifts the server's statement_timeout for the second.
            run(executor, "SET statement_timeout = 0; SELECT pg_sleep(30)", timeout=0.5)
        elapsed = time.monotonic() - clock

        assert 0.9 < elapsed < 3
        assert caught.value.result is not None
        assert "57014" in caught.value.result.stderr_tail
        assert run(executor, "SELECT 2").stdout_tail == "2\n"
        assert executor.connects == 1
    finally:
        executor.close()


@pytest.mark.postgres
def test_a_server_that_stops_answering_is_cut_off_after_the_grace(postgres_url):
    database = libpq(postgres_url).rsplit("/", 1)[1]
    relay = FreezableRelay(("127.0.0.1", 5432))
    dsn = f"host=127.0.0.1 port={relay.port} user=postgres dbname={database}"
    executor = SQLExecutor(PostgresTarget(name="db", dsn=dsn), cancel_grace=0.5)
    try:
        assert run(executor, "SELECT 1").stdout_tail == "1\n"
        relay.frozen.set()
        clock = time.monotonic()

        with pytest.raises(CommandTimedOut) as caught:
            run(executor, "SELECT 2", timeout=0.5)
        elapsed = time.monotonic() - clock

        assert 1.4 < elapsed < 4
        assert caught.value.result is not None
        assert "connection was dropped" in caught.value.result.stderr_tail
        relay.frozen.clear()
        assert run(executor, "SELECT 3").stdout_tail == "3\n"
        assert executor.connects == 2
    finally:
        executor.close()
        relay.close()


# Connections -------------------------------------------------------------------------------
@pytest.mark.postgres
def test_one_connection_is_reused_until_close(executor):
    pids = {run(executor, "SELECT pg_backend_pid()").rows[0][0] for _ in range(3)}

    assert len(pids) == 1
    assert executor.connects == 1
    executor.close()
    executor.close()  # idempotent
    assert run(executor, "SELECT pg_backend_pid()").rows[0][0] not in pids
    assert executor.connects == 2


@pytest.mark.postgres
def test_a_connection_the_server_closed_between_runs_is_replaced(executor, db):
    pid = run(executor, "SELECT pg_backend_pid()").rows[0][0]
    db.execute("SELECT pg_terminate_backend(%s)", (pid,))
    time.sleep(0.2)

    result = run(executor, "SELECT 'still here'")

    assert result.stdout_tail == "still here\n"
    assert executor.connects == 2


@pytest.mark.postgres
def test_a_connection_lost_during_the_statement_is_target_unreachable(executor):
    with pytest.raises(TargetUnreachable) as caught:
        run(executor, "SELECT pg_terminate_backend(pg_backend_pid())")

    assert "whether it took effect is unknown" in str(caught.value)
    assert caught.value.result is not None and caught.value.result.exit_code is None
    assert run(executor, "SELECT 1").stdout_tail == "1\n"
    assert executor.connects == 2


@pytest.mark.postgres
def test_a_wrong_port_is_target_unreachable_quickly_without_the_password(postgres_url):
    database = libpq(postgres_url).rsplit("/", 1)[1]
    target = PostgresTarget(
        name="db",
        dsn=f"postgresql://postgres:dsn-secret-pw@127.0.0.1:{free_port()}/{database}",
        password="field-secret-pw",
        connect_timeout=3,
    )
    executor = SQLExecutor(target)
    clock = time.monotonic()

    with pytest.raises(TargetUnreachable) as caught:
        run(executor, "SELECT 1")

    assert time.monotonic() - clock < 3
    message = str(caught.value)
    assert message.startswith(f"db: cannot connect to PostgreSQL {database}@127.0.0.1: ")
    assert "Connection refused" in message
    assert "\n" not in message
    assert "secret" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert executor.connects == 0


@pytest.mark.postgres
def test_a_missing_database_is_target_unreachable(postgres_url):
    url = libpq(postgres_url).rsplit("/", 1)[0] + "/no_such_database"
    executor = SQLExecutor(PostgresTarget(name="db", dsn=url))

    with pytest.raises(TargetUnreachable, match='database "no_such_database" does not exist'):
        run(executor, "SELECT 1")


# Output bounds and redaction ---------------------------------------------------------------
@pytest.mark.postgres
def test_output_is_a_bounded_tail_marked_truncated(executor):
    result = run(
        executor,
        "SELECT g, repeat('x', 100) FROM generate_series(1, 1000) AS g",
        output_limit=1024,
    )

    assert result.exit_code == 0
    assert result.truncated
    assert result.stdout_tail.startswith(TRUNCATION_MARK)
    assert result.stdout_tail.endswith("\n1000|" + "x" * 100 + "\n")
    assert len(result.stdout_tail.encode()) <= 1024 + len(TRUNCATION_MARK.encode())
    assert result.row_count == 1000
    assert len(result.rows) == MAX_ROWS
    assert result.rows[0] == (1, "x" * 100)

    exact = run(executor, "SELECT repeat('y', 9)", output_limit=10)
    assert exact.stdout_tail == "y" * 9 + "\n" and not exact.truncated


@pytest.mark.postgres
def test_secrets_are_redacted_from_output_errors_and_the_command(target):
    secret = "hunter2-very-secret"
    executor = SQLExecutor(target, redact=Redactor([secret]))
    try:
        shown = run(executor, "SELECT %(token)s AS token, 'ok'", bind={"token": secret})
        failed = run(executor, f"SELECT '{secret}'::int")

        assert shown.exit_code == 0
        assert shown.stdout_tail == f"{MASK}|ok\n"
        assert shown.rows == ((secret, "ok"),)  # values stay for the verification to judge
        assert secret not in shown.command and MASK in shown.command
        assert failed.exit_code == 1
        assert failed.stderr_tail == (
            f'ERROR 22P02: invalid input syntax for type integer: "{MASK}"'
        )
        assert secret not in failed.command

        with pytest.raises(CommandTimedOut) as caught:
            run(executor, f"SELECT pg_sleep(5), '{secret}'", timeout=0.2)
        assert secret not in str(caught.value)
    finally:
        executor.close()


# The target --------------------------------------------------------------------------------
def test_libpq_env_from_a_url_with_a_password():
    target = PostgresTarget(
        name="db", dsn="postgresql+psycopg://app:dsn%40pw@db.example:6432/appdb?sslmode=require"
    )

    assert target.libpq_env() == {
        "PGHOST": "db.example",
        "PGPORT": "6432",
        "PGUSER": "app",
        "PGDATABASE": "appdb",
        "PGPASSWORD": "dsn@pw",
        "PGSSLMODE": "require",
        "PGCONNECT_TIMEOUT": "10",
    }


def test_libpq_env_takes_the_resolved_password_and_a_conninfo_string():
    with_password = PostgresTarget(
        name="db", dsn="postgresql://app@10.0.0.5/appdb", password="s3cret!", connect_timeout=2.5
    )
    conninfo = PostgresTarget(name="db", dsn="host=/var/run/postgresql dbname=app user=ops")

    assert with_password.libpq_env() == {
        "PGHOST": "10.0.0.5",
        "PGUSER": "app",
        "PGDATABASE": "appdb",
        "PGPASSWORD": "s3cret!",
        "PGCONNECT_TIMEOUT": "3",
    }
    assert conninfo.libpq_env() == {
        "PGHOST": "/var/run/postgresql",
        "PGUSER": "ops",
        "PGDATABASE": "app",
        "PGCONNECT_TIMEOUT": "10",
    }
    assert "s3cret" not in repr(with_password)

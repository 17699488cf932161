"""Run a step's SQL on a PostgreSQL target with psycopg.

What reaches the server (DESIGN.md rule 1): the author's SQL text with each `{{ name }}`
placeholder replaced by a `psycopg.sql.Identifier` (quoted by psycopg), and every value as a
bind parameter (`%(name)s`). No value is ever formatted into the SQL text.

How a statement runs:

- One connection per executor, opened on first use and reused by every run until `close()`
  (`connects` counts the connections opened). The session is shared: what one statement leaves
  in it (`SET search_path`, temporary tables) is seen by the next run on the same executor. A
  connection the server closed between runs is replaced before the statement is sent.
- The statement runs in a transaction that commits on success, or, with `autocommit`, on its
  own (VACUUM, REINDEX … CONCURRENTLY cannot run in a transaction). A statement that leaves a
  transaction open (`BEGIN` in an autocommit command) is rolled back and reported as a failure.
- Deadline (rule 5), on both ends: `statement_timeout` on the server; locally, if the server
  has not answered `cancel_grace` seconds after the timeout, a cancel request from a timer
  thread, and if it still has not answered `cancel_grace` seconds later (network gone, server
  hung), the socket is shut down and the connection dropped. Either way CommandTimedOut,
  carrying the partial Result.
- A SQL error (syntax, constraint, permission, …) is not an exception: it is a Result with
  exit_code 1 and the server's message (severity, SQLSTATE, message, DETAIL, HINT on one line)
  in stderr_tail. The transaction is rolled back and the connection stays usable.
- Output like `psql -At`: one line per row, columns as PostgreSQL's text joined by "|", NULL as
  an empty string; the status (`VACUUM`, `DELETE 3`) for a statement without rows. Kept as a
  bounded tail (`output_limit` bytes). `rows` holds the first MAX_ROWS rows as Python values;
  `row_count` counts the rows of every result that has rows (a SELECT, or DML … RETURNING),
  else the rows the last statement affected (DML), else None (VACUUM, SET, DDL).
- Without bind parameters the text may hold several statements (simple query protocol); with
  them it is one statement, and a literal `%` must be written `%%` (psycopg's rule).

Every text that leaves the executor (the Result, error messages) goes through `redact`, and
psycopg's own exceptions are not chained, since their text is not redacted.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import ExecStatus, TransactionStatus

from runbook_catalog.templating import PLACEHOLDER

from ..errors import CommandTimedOut, TargetUnreachable
from ..render import RenderedCommand
from .base import KILL_GRACE_SECONDS, Executor, Redact, no_redaction
from .result import DEFAULT_OUTPUT_LIMIT, OutputTail, Result

MAX_ROWS = 500  # rows kept as values in Result.rows
APPLICATION_NAME = "runbooks"

# libpq keyword -> the environment variable libpq (psql, pg_dump, …) reads it from.
_LIBPQ_ENVIRONMENT = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "user": "PGUSER",
    "dbname": "PGDATABASE",
    "password": "PGPASSWORD",
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "options": "PGOPTIONS",
}
_SET_STATEMENT_TIMEOUT = sql.SQL("SELECT set_config('statement_timeout', %s, false)")
_SQLALCHEMY_DRIVER = re.compile(r"^(postgres(?:ql)?)\+[A-Za-z0-9_]+://")


@dataclass(frozen=True)
class PostgresTarget:
    """A PostgreSQL target from the inventory, its password already resolved.

    `dsn` is a libpq conninfo (`host=… dbname=…`) or a `postgresql://` URL; a SQLAlchemy
    `postgresql+psycopg://` URL is accepted too. The password is kept out of `repr`.
    """

    name: str
    dsn: str = field(repr=False)
    password: str | None = field(default=None, repr=False)
    connect_timeout: float = 10

    def conninfo(self) -> str:
        """The dsn as libpq reads it (without a SQLAlchemy driver suffix)."""
        return _SQLALCHEMY_DRIVER.sub(r"\1://", self.dsn.strip())

    def parameters(self) -> dict[str, str]:
        """The dsn's libpq keywords, with the password field (if set) taking precedence."""
        parameters = {k: str(v) for k, v in conninfo_to_dict(self.conninfo()).items()}
        if self.password is not None:
            parameters["password"] = self.password
        return parameters

    def libpq_env(self) -> dict[str, str]:
        """PG* variables for argv/script steps that declare `connection:` this target, so that
        psql and pg_dump reach the same database as the SQL executor."""
        parameters = self.parameters()
        env = {
            variable: parameters[keyword]
            for keyword, variable in _LIBPQ_ENVIRONMENT.items()
            if parameters.get(keyword)
        }
        env["PGCONNECT_TIMEOUT"] = str(_libpq_connect_timeout(self.connect_timeout))
        return env

    def where(self) -> str:
        """`dbname@host` for people; never the password."""
        try:
            parameters = conninfo_to_dict(self.conninfo())
        except psycopg.Error:
            return self.name
        host = parameters.get("host") or parameters.get("hostaddr") or "local socket"
        database = parameters.get("dbname") or parameters.get("user") or "(default database)"
        return f"{database}@{host}"


def compose(command: RenderedCommand) -> sql.Composed:
    """The statement to send: the author's SQL text, with `{{ name }}` placeholders as quoted
    identifiers. Values are not part of it; they go separately, as bind parameters."""
    if command.kind != "sql" or command.sql_template is None:
        raise ValueError(f"the SQL executor runs sql commands, not {command.kind}")
    pieces: list[sql.Composable] = []
    # split() with one capture group alternates: text, placeholder name, text, …
    for index, part in enumerate(PLACEHOLDER.split(command.sql_template)):
        if index % 2:
            if part not in command.identifiers:
                raise ValueError(f"{{{{ {part} }}}}: no identifier value was rendered for it")
            pieces.append(sql.Identifier(command.identifiers[part]))
        elif part:
            pieces.append(sql.SQL(part))  # type: ignore[arg-type]  # the author's reviewed text
    return sql.Composed(pieces)


class SQLExecutor(Executor):
    def __init__(
        self,
        target: PostgresTarget,
        redact: Redact = no_redaction,
        *,
        cancel_grace: float = KILL_GRACE_SECONDS,
    ):
        self.postgres = target
        self.target = target.name
        self.redact = redact
        self.cancel_grace = cancel_grace
        self.connects = 0
        self._connection: psycopg.Connection | None = None
        self._lock = threading.Lock()  # one statement at a time on the one connection

    def describe(self, command: RenderedCommand) -> str:
        """What ran, for people (before redaction)."""
        binds = ", ".join(f"{name}={value!r}" for name, value in command.bind.items())
        text = f"psql {self.postgres.where()}: {command.sql}"
        return text + (f" -- with {binds}" if binds else "")

    def run(
        self,
        command: RenderedCommand,
        *,
        env: dict[str, str],  # unused: a statement has no environment
        timeout: float,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
    ) -> Result:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        statement = compose(command)
        parameters = command.bind or None  # without parameters psycopg leaves `%` alone
        with self._lock:
            started_at, clock = datetime.now(UTC), time.monotonic()
            shown = self.redact(self.describe(command))

            def result(
                exit_code: int | None = None,
                stdout_tail: str = "",
                stderr_tail: str = "",
                truncated: bool = False,
                timed_out: bool = False,
                row_count: int | None = None,
                rows: tuple[tuple, ...] = (),
            ) -> Result:
                return Result(
                    command=shown,
                    target=self.target,
                    exit_code=exit_code,
                    stdout_tail=stdout_tail,
                    stderr_tail=stderr_tail,
                    truncated=truncated,
                    timed_out=timed_out,
                    started_at=started_at,
                    duration_s=time.monotonic() - clock,
                    row_count=row_count,
                    rows=rows,
                )

            watchdog = _Watchdog(after=timeout + self.cancel_grace, grace=self.cancel_grace)
            error: psycopg.Error | None = None
            with watchdog:
                try:
                    connection = self._start(watchdog, statement_timeout=timeout)
                    cursor = connection.cursor()
                    if command.autocommit:
                        cursor.execute(statement, parameters)
                        output = _Output.collect(cursor, output_limit)
                    else:
                        with connection.transaction():
                            cursor.execute(statement, parameters)
                            output = _Output.collect(cursor, output_limit)
                    left_open = connection.info.transaction_status != TransactionStatus.IDLE
                    if left_open:
                        connection.execute("ROLLBACK")
                except psycopg.Error as exc:
                    error = exc
                    self._roll_back_if_open()

            if watchdog.severed or (self._broken() and watchdog.cancelled):
                self._discard()
                message = (
                    f"no answer from the server {2 * self.cancel_grace:g}s after the "
                    f"{timeout:g}s deadline, even to a cancel request; the connection was "
                    "dropped, so whether the statement took effect is unknown"
                )
                raise self._timed_out(timeout, shown, result(timed_out=True, stderr_tail=message))
            if isinstance(error, psycopg.errors.QueryCanceled) and (
                watchdog.cancelled or time.monotonic() - clock >= timeout
            ):
                stderr = self.redact(_error_line(error))
                raise self._timed_out(timeout, shown, result(timed_out=True, stderr_tail=stderr))
            if error is not None and self._broken():
                self._discard()
                message = self.redact(
                    "connection lost during the statement, whether it took effect is "
                    f"unknown: {_one_line(str(error))}"
                )
                raise TargetUnreachable(
                    message, target=self.target, result=result(stderr_tail=message)
                )
            if error is not None:
                return result(exit_code=1, stderr_tail=self.redact(_error_line(error)))
            if left_open:
                message = (
                    "ERROR: the statement left a transaction open; it was rolled back (leave "
                    "BEGIN/COMMIT out: without autocommit a command runs in one transaction)"
                )
                return result(exit_code=1, stderr_tail=message)
            return result(
                exit_code=0,
                stdout_tail=self.redact(output.tail.text()),
                truncated=output.tail.truncated,
                row_count=output.row_count,
                rows=output.rows,
            )

    def close(self) -> None:
        with self._lock:
            self._discard()

    # Connection handling ----------------------------------------------------------------
    def _start(self, watchdog: _Watchdog, *, statement_timeout: float) -> psycopg.Connection:
        """The open connection with this run's statement_timeout set. A connection the server
        closed since the last run fails here, before the statement was sent: replace it once."""
        milliseconds = str(max(1, math.ceil(statement_timeout * 1000)))
        for attempt in (1, 2):
            connection = self._connect()
            watchdog.watch(connection)
            try:
                connection.execute(_SET_STATEMENT_TIMEOUT, (milliseconds,))
                return connection
            except psycopg.OperationalError:
                if attempt == 2 or not connection.broken or watchdog.severed:
                    raise
                watchdog.watch(None)
                self._discard()
        raise AssertionError("unreachable")

    def _connect(self) -> psycopg.Connection:
        if self._connection is not None and not self._connection.closed:
            return self._connection
        self._connection = None
        extra = {"password": self.postgres.password} if self.postgres.password else {}
        try:
            connection = psycopg.connect(
                self.postgres.conninfo(),
                autocommit=True,  # transactions are explicit: connection.transaction()
                connect_timeout=_libpq_connect_timeout(self.postgres.connect_timeout),
                client_encoding="utf8",
                application_name=APPLICATION_NAME,
                **extra,
            )
        except psycopg.Error as exc:  # OperationalError; ProgrammingError for a bad dsn
            message = f"cannot connect to PostgreSQL {self.postgres.where()}: {_one_line(str(exc))}"
            # Not chained: psycopg's text has not been through redact.
            raise TargetUnreachable(self.redact(message), target=self.target) from None
        self.connects += 1
        self._connection = connection
        return connection

    def _broken(self) -> bool:
        return self._connection is None or self._connection.closed

    def _roll_back_if_open(self) -> None:
        connection = self._connection
        if connection is None or connection.closed:
            return
        if connection.info.transaction_status != TransactionStatus.IDLE:
            try:
                connection.execute("ROLLBACK")
            except psycopg.Error:
                self._discard()

    def _discard(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _timed_out(self, timeout: float, shown: str, result: Result) -> CommandTimedOut:
        return CommandTimedOut(
            f"timed out after {timeout:g}s: {shown}",
            target=self.target,
            timeout=timeout,
            result=result,
        )


@dataclass
class _Output:
    """What the statement returned: a bounded text tail, the first rows, the row count."""

    tail: OutputTail
    rows: tuple[tuple, ...]
    row_count: int | None

    @classmethod
    def collect(cls, cursor: psycopg.Cursor, limit: int) -> _Output:
        encoding = cursor.connection.info.encoding
        blocks: list[tuple[Any, bytes | None]] = []  # (result with rows, None) | (None, status)
        rows: list[tuple] = []
        returned: int | None = None
        affected: int | None = None
        for current in cursor.results():
            pgresult = current.pgresult
            if pgresult is not None and pgresult.status == ExecStatus.TUPLES_OK:
                blocks.append((pgresult, None))
                returned = (returned or 0) + pgresult.ntuples
                if len(rows) < MAX_ROWS:
                    rows.extend(tuple(row) for row in current.fetchmany(MAX_ROWS - len(rows)))
            else:
                status = current.statusmessage or ""
                blocks.append((None, status.encode() + b"\n"))
                affected = current.rowcount if current.rowcount >= 0 else None
        tail = OutputTail(limit)
        tail.write(_last_bytes(_lines_backwards(blocks, encoding), limit))
        return cls(tail, tuple(rows), returned if returned is not None else affected)


def _lines_backwards(blocks: list[tuple[Any, bytes | None]], encoding: str) -> Iterator[bytes]:
    """Output lines, last first, as PostgreSQL's text (like `psql -At`) in UTF-8."""
    for pgresult, status in reversed(blocks):
        if pgresult is None:
            yield status or b""
            continue
        columns = range(pgresult.nfields)
        for row in reversed(range(pgresult.ntuples)):
            values = (pgresult.get_value(row, column) for column in columns)
            line = b"|".join(b"" if value is None else bytes(value) for value in values) + b"\n"
            if encoding != "utf-8":  # a statement may SET client_encoding
                line = line.decode(encoding, errors="replace").encode()
            yield line


def _last_bytes(lines_backwards: Iterator[bytes], limit: int) -> bytes:
    """Enough of the last lines to fill `limit` bytes (one more byte when output was dropped,
    so that the tail marks itself truncated), without formatting the rows before them."""
    kept: list[bytes] = []
    size = 0
    for line in lines_backwards:
        kept.append(line)
        size += len(line)
        if size > limit:
            break
    return b"".join(reversed(kept))


class _Watchdog:
    """The local deadline of one run, on a timer thread.

    At `after` seconds: a cancel request (the server stops the statement; the connection stays
    usable). At `after + grace`, if the call still has not returned: shut the socket down, so
    the blocked call fails at once and the connection is dropped. Leaving the `with` block stops
    the thread and waits for it, so a late cancel cannot hit the next run's statement.
    """

    def __init__(self, *, after: float, grace: float):
        self.after, self.grace = after, grace
        self.cancelled = False
        self.severed = False
        self._connection: psycopg.Connection | None = None
        self._socket: int | None = None
        self._started = 0.0
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="sql-deadline", daemon=True)

    def watch(self, connection: psycopg.Connection | None) -> None:
        with self._lock:
            self._connection = connection
            self._socket = connection.fileno() if connection is not None else None

    def __enter__(self) -> _Watchdog:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._done.set()
        self._thread.join()

    def _watch(self) -> None:
        if self._done.wait(self.after):
            return
        with self._lock:
            if self._done.is_set() or self._connection is None:
                return
            connection = self._connection
            self.cancelled = True
        # CancellationTimeout, or the server is gone: the socket is shut down below.
        with contextlib.suppress(psycopg.Error):
            connection.cancel_safe(timeout=self.grace)
        remaining = self._started + self.after + self.grace - time.monotonic()
        if self._done.wait(max(0.0, remaining)):
            return
        with self._lock:
            if self._done.is_set() or self._connection is not connection or self._socket is None:
                return
            self.severed = True
            # shutdown() on a duplicate of libpq's socket: the blocked read returns at once,
            # and libpq, which still owns the descriptor, closes it with the connection.
            with (
                contextlib.suppress(OSError),
                socket.socket(fileno=os.dup(self._socket)) as duplicate,
            ):
                duplicate.shutdown(socket.SHUT_RDWR)


def _error_line(error: psycopg.Error) -> str:
    """The server's error on one line: `ERROR 42P01: relation "x" does not exist DETAIL: …`."""
    diag = error.diag
    if error.sqlstate:
        text = f"{diag.severity or 'ERROR'} {error.sqlstate}: {diag.message_primary or error}"
        for label, value in (("DETAIL", diag.message_detail), ("HINT", diag.message_hint)):
            if value:
                text += f" {label}: {value}"
    else:  # raised by psycopg before the server saw it (a bad placeholder, an unadaptable value)
        text = f"ERROR: {error}"
    return _one_line(text)


def _one_line(text: str) -> str:
    return re.sub(r"\s*\n\s*", " ", text.strip())


def _libpq_connect_timeout(seconds: float) -> int:
    return max(2, math.ceil(seconds))  # libpq takes whole seconds, at least 2


__all__ = ["MAX_ROWS", "PostgresTarget", "SQLExecutor", "compose"]

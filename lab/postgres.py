"""The lab's PostgreSQL: a primary made with initdb/pg_ctl (not the machine's shared server)
holding the demo multi-tenant database `app` (lab/demo_data.sql), with pg_stat_statements and
WAL archiving to a local archive, and a streaming replica (LAB-NOTES.md section 1).

PostgreSQL refuses to run as root, so its programs run as the `postgres` user; the lab's
PostgreSQL directories belong to that user."""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path
from typing import Any

from .layout import HOST
from .processes import LabError, ensure_port_free, port_open, run
from .service import LabService

PG_BIN = Path("/usr/lib/postgresql/15/bin")
DEMO_SQL = Path(__file__).with_name("demo_data.sql")
DATABASE = "app"
# Sized so the maintenance and slow-query runbooks find something: 10 000 orders.
DEMO_SIZE = {"customers_per_tenant": 400, "items_per_tenant": 100, "orders_per_customer": 5}
# The one role that must give its password (SCRAM-SHA-256) even on loopback, where everyone
# else is trusted: the role security-breach locks and rotates, so a test can show that the old
# password fails and the new one works. The tests create and drop the role itself.
SCRAM_ROLE = "reporting_ro"
SCRAM_HBA = f"local all {SCRAM_ROLE} scram-sha-256\nhost all {SCRAM_ROLE} {HOST}/32 scram-sha-256\n"


def as_postgres(*argv: str | Path) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *map(str, argv)]


def chown_postgres(path: Path) -> None:
    user = pwd.getpwnam("postgres")
    for folder, _dirs, files in os.walk(path):
        os.chown(folder, user.pw_uid, user.pw_gid)
        for name in files:
            os.chown(Path(folder) / name, user.pw_uid, user.pw_gid)


class PostgresLab(LabService):
    name = "postgres"
    programs = (str(PG_BIN / "initdb"), "psql")

    @property
    def root(self) -> Path:
        return self.layout.path("pg")

    @property
    def primary_dir(self) -> Path:
        return self.root / "primary"

    @property
    def replica_dir(self) -> Path:
        return self.root / "replica"

    @property
    def archive_dir(self) -> Path:
        return self.root / "archive"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def port(self) -> int:
        return self.layout.port("postgres")

    @property
    def replica_port(self) -> int:
        return self.layout.port("postgres_replica")

    def url(self, database: str = DATABASE, port: int | None = None) -> str:
        return f"postgresql://postgres@{HOST}:{port or self.port}/{database}"

    # ---- lifecycle ----------------------------------------------------------------------

    def up(self) -> None:
        for folder in (self.root, self.archive_dir, self.socket_dir):
            folder.mkdir(parents=True, exist_ok=True)
        chown_postgres(self.root)
        if not (self.primary_dir / "PG_VERSION").exists():
            self._initdb()
        self._start(self.primary_dir, self.port, "primary")
        self._require_scram_role()
        if not self._database_exists():
            self._load_demo()
        if not (self.replica_dir / "PG_VERSION").exists():
            self._make_replica()
        self._start(self.replica_dir, self.replica_port, "replica")

    def down(self) -> None:
        for data in (self.replica_dir, self.primary_dir):
            if (data / "postmaster.pid").exists():
                run(
                    as_postgres(PG_BIN / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop"),
                    f"stopping PostgreSQL in {data}",
                )

    def status(self) -> tuple[bool, str]:
        primary, replica = port_open(self.port), port_open(self.replica_port)
        parts = [
            f"primary {HOST}:{self.port} {'up' if primary else 'down'}",
            f"replica {HOST}:{self.replica_port} {'up' if replica else 'down'}",
        ]
        if primary:
            state = self.psql(
                "SELECT coalesce(string_agg(state, ','), 'none') FROM pg_stat_replication"
            )
            parts.append(f"replication {state}")
        return primary and replica, ", ".join(parts)

    def inventory(self) -> dict[str, Any]:
        return {
            "db": {"kind": "postgres", "dsn": self.url()},
            "db_replica": {"kind": "postgres", "dsn": self.url(port=self.replica_port)},
        }

    # ---- helpers ------------------------------------------------------------------------

    def psql(self, sql: str, database: str = DATABASE, port: int | None = None) -> str:
        result = run(
            [
                "psql",
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                self.url(database, port),
                "-c",
                sql,
            ],
            "psql",
        )
        return result.stdout.strip()

    def _initdb(self) -> None:
        run(
            as_postgres(
                PG_BIN / "initdb", "-D", self.primary_dir, "-U", "postgres", "--auth=trust",
                "-E", "UTF8", "--locale=C.UTF-8",
            ),
            "initdb",
        )  # fmt: skip
        settings = {
            "listen_addresses": f"'{HOST}'",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "wal_level": "replica",
            "archive_mode": "on",
            "archive_command": f"'test ! -f {self.archive_dir}/%f && cp %p {self.archive_dir}/%f'",
            "max_wal_senders": "5",
            "wal_keep_size": "'256MB'",
            "shared_preload_libraries": "'pg_stat_statements'",
            "pg_stat_statements.track": "all",
            "track_io_timing": "on",
            "fsync": "off",  # a lab: speed over durability of the demo data
            "full_page_writes": "on",
        }
        with (self.primary_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# runbooks lab\n")
            conf.writelines(f"{k} = {v}\n" for k, v in settings.items())
        (self.primary_dir / "pg_hba.conf").write_text(
            SCRAM_HBA + "local all all trust\n"
            f"host all all {HOST}/32 trust\n"
            f"host replication all {HOST}/32 trust\n"
        )

    def _require_scram_role(self) -> None:
        """A lab made before SCRAM_ROLE existed gets its pg_hba lines (first: the first
        matching line decides) and a configuration reload."""
        hba = self.primary_dir / "pg_hba.conf"
        if hba.read_text().startswith(SCRAM_HBA):
            return
        hba.write_text(SCRAM_HBA + hba.read_text())
        self.psql("SELECT pg_reload_conf()", "postgres")

    def _start(self, data: Path, port: int, what: str) -> None:
        if port_open(port):
            if (data / "postmaster.pid").exists():
                return
            ensure_port_free(port, f"PostgreSQL {what}")
        log = self.layout.log_dir / f"postgres-{what}.log"
        self.layout.log_dir.mkdir(parents=True, exist_ok=True)
        log.touch()
        shutil.chown(log, "postgres", "postgres")
        run(
            as_postgres(
                PG_BIN / "pg_ctl", "-D", data, "-o", f"-p {port}", "-l", log, "-w", "-t", "60",
                "start",
            ),
            f"starting PostgreSQL {what} (log: {log})",
        )  # fmt: skip

    def _database_exists(self) -> bool:
        return (
            self.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{DATABASE}'", "postgres")  # noqa: S608 - a constant
            == "1"
        )

    def _load_demo(self) -> None:
        run(["createdb", "-h", HOST, "-p", str(self.port), "-U", "postgres", DATABASE], "createdb")
        self.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        variables = [arg for k, v in DEMO_SIZE.items() for arg in ("-v", f"{k}={v}")]
        run(
            [
                "psql",
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                *variables,
                "-d",
                self.url(),
                "-f",
                DEMO_SQL,
            ],
            "loading the demo data",
        )

    def _make_replica(self) -> None:
        run(
            as_postgres(
                PG_BIN / "pg_basebackup", "-h", HOST, "-p", self.port, "-U", "postgres",
                "-D", self.replica_dir, "-Xstream", "-c", "fast", "-R",
            ),
            "pg_basebackup for the replica",
        )  # fmt: skip
        with (self.replica_dir / "postgresql.conf").open("a") as conf:
            # The copy archives into the same directory as the primary; a replica must not.
            conf.write(f"\n# replica\nport = {self.replica_port}\narchive_mode = off\n")


def require_postgres_user() -> None:
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise LabError(
            "the lab runs PostgreSQL as the `postgres` user, which does not exist "
            "(install the Debian package postgresql-15)"
        ) from None

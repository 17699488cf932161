"""The lab's Patroni cluster: etcd as the DCS, two Patroni-managed PostgreSQL 15 nodes and
HAProxy as the application's endpoint that routes to whichever node is the leader (Patroni's
REST `GET /primary` health check), LAB-NOTES.md section 4. database-outage and
full-database-recovery run against it: its database `app` holds a small copy of the demo
multi-tenant data, and its primary archives WAL into the lab's backup store (lab/backups.py).

Patroni and PostgreSQL run as the `postgres` user (setpriv execs, so the recorded pid is
patroni's own); etcd and HAProxy run as root. Everything lives in <lab>/patroni; the paths
outside it are links to it under the runbooks' bases /etc/patroni (`patroni_config`) and
/var/lib/postgresql (`data_dir`, `staging_dir`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from .backups import BackupsLab
from .layout import HOST
from .links import link_into, unlink_from
from .postgres import DEMO_SQL, PG_BIN, chown_postgres
from .processes import (
    LabError,
    ensure_port_free,
    port_open,
    run,
    running_pid,
    start_daemon,
    stop_daemon,
    stop_pid,
    wait_for_port,
)
from .service import LabService

SCOPE = "lab"  # the cluster name (`scope`), the runbook's `cluster` parameter
MEMBERS = ("node1", "node2")
DATABASE = "app"
CONFIG_BASE = Path("/etc/patroni")
DATA_BASE = Path("/var/lib/postgresql")
# The runbooks' target `db` is the application's endpoint; in the lab that is HAProxy.
RUNBOOKS = ("database-outage", "full-database-recovery")
TARGET = "patroni_db"
# Small: enough rows for the recovery's integrity checks, quick to back up and restore.
DEMO_SIZE = {"customers_per_tenant": 40, "items_per_tenant": 20, "orders_per_customer": 2}


class PatroniLab(LabService):
    name = "patroni"
    programs = ("patroni", "patronictl", "etcd", "haproxy", str(PG_BIN / "initdb"), "psql")

    @property
    def root(self) -> Path:
        return self.layout.path("patroni")

    @property
    def config_link(self) -> Path:
        """/etc/patroni/runbooks-lab-<hash of the lab root> -> <lab>/patroni."""
        return CONFIG_BASE / self.layout.link_name

    @property
    def data_link(self) -> Path:
        """/var/lib/postgresql/runbooks-lab-<hash> -> <lab>/patroni: the members' data
        directories as `data_dir=<link name>/<member>`."""
        return DATA_BASE / self.layout.link_name

    @property
    def ctl_config(self) -> Path:
        """patronictl's configuration (scope and DCS), as the runbook names it: under the link."""
        return self.config_link / "patronictl.yml"

    @property
    def endpoint_port(self) -> int:
        return self.layout.port("patroni_endpoint")

    def pg_port(self, member: str) -> int:
        return self.layout.port(f"patroni_pg_{self._number(member)}")

    def rest_port(self, member: str) -> int:
        return self.layout.port(f"patroni_rest_{self._number(member)}")

    def data_dir(self, member: str) -> Path:
        return self.root / member

    def url(self, port: int | None = None, database: str = DATABASE) -> str:
        return f"postgresql://postgres@{HOST}:{port or self.endpoint_port}/{database}"

    # ---- lifecycle ----------------------------------------------------------------------

    def up(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._write_configs()
        chown_postgres(self.root)
        link_into(CONFIG_BASE, self.layout.link_name, self.root)
        link_into(DATA_BASE, self.layout.link_name, self.root)
        self._start_etcd()
        for member in MEMBERS:
            self._start_patroni(member)
        self._start_haproxy()
        self.wait_healthy()
        exists = f"SELECT count(*) FROM pg_database WHERE datname = '{DATABASE}'"  # noqa: S608 - a constant
        if self.psql(exists, database="postgres") == "0":
            self.psql(f"CREATE DATABASE {DATABASE}", database="postgres")
            self._load_demo()
            self.wait_healthy()  # the replica has the new database before anyone uses it

    def down(self) -> None:
        stop_daemon(self.layout, "patroni-haproxy")
        for member in reversed(MEMBERS):
            # SIGTERM makes patroni stop its PostgreSQL first; give it the time to do so.
            stop_daemon(self.layout, f"patroni-{member}", timeout=90)
            self._stop_orphaned_postgres(member)
        stop_daemon(self.layout, "patroni-etcd")
        unlink_from(CONFIG_BASE, self.layout.link_name)
        unlink_from(DATA_BASE, self.layout.link_name)

    def status(self) -> tuple[bool, str]:
        members = self.members()
        parts = [
            f"{m}: {members.get(m, {}).get('role', 'down')} "
            f"{members.get(m, {}).get('state', '')} {HOST}:{self.pg_port(m)}".rstrip()
            for m in MEMBERS
        ]
        endpoint = port_open(self.endpoint_port)
        parts.append(f"endpoint {HOST}:{self.endpoint_port} {'up' if endpoint else 'down'}")
        healthy = endpoint and all(
            members.get(m, {}).get("state") in ("running", "streaming") for m in MEMBERS
        )
        return healthy, ", ".join(parts)

    def inventory(self) -> dict[str, Any]:
        return {TARGET: {"kind": "postgres", "dsn": self.url()}}

    def runbook_targets(self) -> dict[str, dict[str, str]]:
        # `db` is the lab's plain PostgreSQL for the other runbooks; here it is the cluster.
        return {slug: {"db": TARGET} for slug in RUNBOOKS}

    # ---- what tests and operators ask ---------------------------------------------------

    def members(self) -> dict[str, dict[str, Any]]:
        """Member name -> its Patroni REST `GET /patroni` document (role, state, timeline…)."""
        found = {}
        for member in MEMBERS:
            url = f"http://{HOST}:{self.rest_port(member)}/patroni"
            with (
                contextlib.suppress(OSError, ValueError),
                urllib.request.urlopen(url, timeout=3) as response,
            ):
                found[member] = json.load(response)
        return found

    def leader(self) -> str | None:
        for member, document in self.members().items():
            if document.get("role") in ("master", "primary") and document.get("state") == "running":
                return member
        return None

    def paused(self) -> bool:
        """Maintenance mode: Patroni then promotes, restarts and demotes nothing by itself."""
        return any(document.get("pause") for document in self.members().values())

    def resume(self) -> None:
        if self.paused():
            self.patronictl("resume", "--wait")

    def patronictl(self, *args: str) -> str:
        return run(
            ["patronictl", "-c", str(self.root / "patronictl.yml"), *args], "patronictl"
        ).stdout

    def psql(self, sql: str, port: int | None = None, database: str = DATABASE) -> str:
        result = run(
            ["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", self.url(port, database),
             "-c", sql],
            "psql (Patroni cluster)",
        )  # fmt: skip
        return result.stdout.strip()

    def kill_postgres(self, member: str) -> int:
        """A crash of the member's PostgreSQL: SIGKILL to its postmaster (its backends die with
        it). Returns the postmaster's pid."""
        pid = int((self.data_dir(member) / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        return pid

    def wait_healthy(self, timeout: float = 120.0) -> None:
        """A leader that accepts writes and every other member streaming from it (before that,
        a switchover can promote a replica that lacks committed data: LAB-NOTES.md)."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None:
                state = self.psql(
                    "SELECT (NOT pg_is_in_recovery())::text || ':' || (SELECT count(*)"
                    " FROM pg_stat_replication WHERE state = 'streaming')",
                    port=self.pg_port(leader),
                    database="postgres",
                )
                if state == f"true:{len(MEMBERS) - 1}" and self._endpoint_is(leader):
                    return
            time.sleep(0.5)
        raise LabError(
            f"the Patroni cluster did not become healthy within {timeout:.0f} s "
            f"(leader {self.leader()}, {state or 'no state'}; logs: {self.layout.log_dir})"
        )

    # ---- helpers ------------------------------------------------------------------------

    @staticmethod
    def _number(member: str) -> int:
        return MEMBERS.index(member) + 1

    def _endpoint_is(self, member: str) -> bool:
        with contextlib.suppress(LabError):
            return self.psql("SELECT current_setting('port')", database="postgres") == str(
                self.pg_port(member)
            )
        return False

    def _load_demo(self) -> None:
        variables = [arg for k, v in DEMO_SIZE.items() for arg in ("-v", f"{k}={v}")]
        run(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", *variables, "-d", self.url(),
             "-f", str(DEMO_SQL)],
            "loading the demo data (Patroni cluster)",
        )  # fmt: skip
        # full-database-recovery runs pg_amcheck when the extension is there.
        self.psql("CREATE EXTENSION IF NOT EXISTS amcheck")

    def _write_configs(self) -> None:
        wal = BackupsLab(self.layout).wal_dir
        etcd = {"hosts": f"{HOST}:{self.layout.port('etcd_client')}"}
        (self.root / "patronictl.yml").write_text(
            yaml.safe_dump({"scope": SCOPE, "etcd3": etcd}, sort_keys=False)
        )
        for member in MEMBERS:
            rest = f"{HOST}:{self.rest_port(member)}"
            pg = f"{HOST}:{self.pg_port(member)}"
            config = {
                "scope": SCOPE,
                "name": member,
                "restapi": {"listen": rest, "connect_address": rest},
                "etcd3": etcd,  # etcd 3.4 has its v2 API off
                "bootstrap": {
                    "dcs": {
                        # Generous: the machine is shared and has 2 cores.
                        "ttl": 30,
                        "loop_wait": 2,
                        "retry_timeout": 10,
                        "maximum_lag_on_failover": 1048576,
                        "postgresql": {
                            "use_pg_rewind": True,
                            "use_slots": True,
                            "parameters": {
                                "wal_log_hints": "on",
                                "max_wal_senders": 5,
                                "max_replication_slots": 5,
                            },
                        },
                    },
                    "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}],
                },
                "postgresql": {
                    "listen": pg,
                    "connect_address": pg,
                    "data_dir": str(self.data_dir(member)),
                    "bin_dir": str(PG_BIN),
                    "pgpass": str(self.root / f"pgpass-{member}"),
                    "authentication": {
                        "superuser": {"username": "postgres", "password": "lab-superuser"},
                        "replication": {"username": "replicator", "password": "lab-replicator"},
                        "rewind": {"username": "rewinder", "password": "lab-rewinder"},
                    },
                    "parameters": {
                        "unix_socket_directories": str(self.root / f"sock-{member}"),
                        "fsync": "off",  # a lab: speed over durability
                        # Whichever member leads archives; a replica does not (mode `on`).
                        "archive_mode": "on",
                        "archive_command": f"test ! -f {wal}/%f && cp %p {wal}/%f",
                    },
                    # Loopback only, trusted like the lab's other PostgreSQL: the inventory
                    # then needs no secret.
                    "pg_hba": [
                        "local all all trust",
                        f"host all all {HOST}/32 trust",
                        f"host replication replicator {HOST}/32 trust",
                    ],
                },
            }
            (self.root / f"{member}.yml").write_text(yaml.safe_dump(config, sort_keys=False))
            (self.root / f"sock-{member}").mkdir(exist_ok=True)

    def _start_etcd(self) -> None:
        name = "patroni-etcd"
        if running_pid(self.layout, name):
            return
        client, peer = self.layout.port("etcd_client"), self.layout.port("etcd_peer")
        ensure_port_free(client, "etcd")
        start_daemon(
            self.layout,
            name,
            [
                "etcd", "--name", SCOPE, "--data-dir", str(self.root / "etcd-data"),
                "--listen-client-urls", f"http://{HOST}:{client}",
                "--advertise-client-urls", f"http://{HOST}:{client}",
                "--listen-peer-urls", f"http://{HOST}:{peer}",
                "--initial-advertise-peer-urls", f"http://{HOST}:{peer}",
                "--initial-cluster", f"{SCOPE}=http://{HOST}:{peer}",
                "--initial-cluster-state", "new", "--listen-metrics-urls", "",
            ],
        )  # fmt: skip
        wait_for_port(client, "etcd", log=self.layout.log_dir / f"{name}.log")

    def _start_patroni(self, member: str) -> None:
        name = f"patroni-{member}"
        if running_pid(self.layout, name):
            return
        ensure_port_free(self.rest_port(member), f"Patroni {member} REST API")
        ensure_port_free(self.pg_port(member), f"Patroni {member} PostgreSQL")
        # setpriv execs (runuser would fork, and its pid would not be patroni's); a PGPASSWORD
        # in the environment would override patroni's pgpass file (pg_rewind then fails).
        start_daemon(
            self.layout,
            name,
            [
                "env", "-u", "PGPASSWORD",
                "setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
                "patroni", str(self.root / f"{member}.yml"),
            ],
            cwd=self.root,
        )  # fmt: skip
        wait_for_port(
            self.rest_port(member), f"Patroni {member}", log=self.layout.log_dir / f"{name}.log"
        )

    def _start_haproxy(self) -> None:
        name = "patroni-haproxy"
        if running_pid(self.layout, name):
            return
        ensure_port_free(self.endpoint_port, "HAProxy (Patroni endpoint)")
        servers = "\n".join(
            f"    server {m} {HOST}:{self.pg_port(m)} check port {self.rest_port(m)}"
            for m in MEMBERS
        )
        config = self.root / "haproxy.cfg"
        config.write_text(
            f"""# The application's endpoint: only the member whose Patroni says it is the primary.
global
    maxconn 200
defaults
    mode tcp
    timeout connect 4s
    timeout client 30m
    timeout server 30m
    timeout check 2s
listen primary
    bind {HOST}:{self.endpoint_port}
    option httpchk GET /primary
    http-check expect status 200
    default-server inter 1s fall 2 rise 1 on-marked-down shutdown-sessions
{servers}
"""
        )
        run(["haproxy", "-c", "-q", "-f", str(config)], "haproxy -c")
        start_daemon(self.layout, name, ["haproxy", "-db", "-f", str(config)])
        wait_for_port(self.endpoint_port, "HAProxy", log=self.layout.log_dir / f"{name}.log")

    def _stop_orphaned_postgres(self, member: str) -> None:
        """A PostgreSQL whose patroni died without stopping it (killed, or SIGKILLed by
        stop_daemon after its timeout) is stopped here, so nothing of the lab survives down()."""
        pid_path = self.data_dir(member) / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(pid_path.read_text().split()[0])
            # A stale pid file may name an unrelated process by now: only ours is stopped.
            if str(self.data_dir(member)) in Path(f"/proc/{pid}/cmdline").read_text():
                stop_pid(pid, timeout=60)

"""The targets of one run: an executor per target (opened lazily, closed at the end), the
database settings a `connection:` gives a command, and each target's working directory."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from .executors.base import Executor, Redact
from .executors.local import LocalExecutor
from .inventory import LocalEntry, PostgresEntry, SSHEntry, resolve_secret
from .redaction import Redactor
from .render import RenderedCommand


class RunTargets:
    def __init__(
        self,
        resolved: dict[str, tuple[str, Any]],
        redactor: Redactor,
        run_id: str,
        local_workdir: Path,
    ):
        self.resolved = resolved
        self.redactor = redactor
        self.run_id = run_id
        self.local_workdir = local_workdir
        self._executors: dict[str, Executor] = {}
        self._remote_workdirs: set[str] = set()
        self._secrets: dict[str, str | None] = {}
        for name, (_, entry) in resolved.items():  # resolve every secret before anything runs
            ref = getattr(entry, "password", None)
            self._secrets[name] = resolve_secret(ref) if ref is not None else None
            redactor.add(self._secrets[name])
            passphrase = getattr(entry, "key_passphrase", None)
            if passphrase is not None:
                self._secrets[f"{name}:passphrase"] = resolve_secret(passphrase)
                redactor.add(self._secrets[f"{name}:passphrase"])

    def describe(self) -> str:
        """The lease's target: which inventory entries this run acts on."""
        parts = [f"{name}={entry_name}" for name, (entry_name, _) in self.resolved.items()]
        remote = [p for p in parts if not p.startswith("local=")]
        return ",".join(remote) or "local"

    def workdir(self, target: str) -> str:
        entry = self.resolved[target][1]
        if isinstance(entry, SSHEntry):
            # The run id is a random UUID and mkdir below refuses an existing directory.
            return f"/tmp/runbooks-{self.run_id}"  # noqa: S108
        return str(self.local_workdir)

    def executor(self, target: str) -> Executor:
        if target not in self._executors:
            self._executors[target] = self._open(target)
        executor = self._executors[target]
        entry = self.resolved[target][1]
        if isinstance(entry, SSHEntry) and target not in self._remote_workdirs:
            self._remote_workdirs.add(target)
            mkdir = RenderedCommand(
                "argv", argv=("mkdir", "-m", "700", self.workdir(target)), timeout=30
            )
            executor.run(mkdir, env={}, timeout=30)
        return executor

    def _open(self, target: str) -> Executor:
        entry = self.resolved[target][1]
        redact: Redact = self.redactor
        if isinstance(entry, LocalEntry):
            self.local_workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
            return LocalExecutor(target, redact=redact, cwd=str(self.local_workdir))
        if isinstance(entry, SSHEntry):
            from .executors.ssh import SSHExecutor, SSHTarget

            return SSHExecutor(
                SSHTarget(
                    name=target,
                    host=entry.host,
                    port=entry.port,
                    user=entry.user,
                    key_file=str(entry.key_file) if entry.key_file else None,
                    known_hosts=str(entry.known_hosts),
                    password=self._secrets.get(target),
                    key_passphrase=self._secrets.get(f"{target}:passphrase"),
                    connect_timeout=entry.connect_timeout,
                ),
                redact=redact,
            )
        if isinstance(entry, PostgresEntry):
            return self._sql(target, entry, redact)
        raise ValueError(f"unknown target kind for {target}")

    def _sql(self, target: str, entry: PostgresEntry, redact: Redact) -> Executor:
        from .executors.sql import PostgresTarget, SQLExecutor

        return SQLExecutor(
            PostgresTarget(
                name=target,
                dsn=entry.dsn,
                password=self._secrets.get(target),
                connect_timeout=entry.connect_timeout,
            ),
            redact=redact,
        )

    def connection_env(self, connection: str | None) -> dict[str, str]:
        """PG* variables for a command whose step names a postgres `connection:`."""
        if connection is None:
            return {}
        from .executors.sql import PostgresTarget

        entry = self.resolved[connection][1]
        return PostgresTarget(
            name=connection, dsn=entry.dsn, password=self._secrets.get(connection)
        ).libpq_env()

    def describe_target(self, target: str) -> str:
        entry = self.resolved[target][1]
        if isinstance(entry, SSHEntry):
            return f"{entry.user}@{entry.host}:{entry.port}"
        if isinstance(entry, PostgresEntry):
            from .executors.sql import PostgresTarget

            env = PostgresTarget(name=target, dsn=entry.dsn).libpq_env()
            user, host = env.get("PGUSER", ""), env.get("PGHOST", "")
            port, database = env.get("PGPORT", "5432"), env.get("PGDATABASE", "")
            return f"postgres {user}@{host}:{port}/{database}"
        return "this machine"

    def close(self) -> None:
        for executor in self._executors.values():
            with contextlib.suppress(Exception):  # closing must not mask the run's outcome
                executor.close()
        self._executors.clear()

"""The inventory (`RUNBOOKS_INVENTORY`): where each runbook target really is, and how to reach it.

A YAML file:

    targets:
      db:        {kind: postgres, dsn: "postgresql://app@127.0.0.1:5432/app",
                  password: {env: APP_DB_PASSWORD}}
      db_host:   {kind: ssh, host: 10.0.0.5, port: 22, user: postgres,
                  key_file: /etc/runbooks/id_ed25519, known_hosts: /etc/runbooks/known_hosts}
    runbooks:                      # optional: a runbook's target name -> another inventory entry
      restore-tenant-data: {db: reporting-db}

A runbook target named `db` resolves to `runbooks.<slug>.db` if given, else `targets.db`.
`local` always means this machine. Secrets are references, resolved when a run starts:
`{env: NAME}` (an environment variable) or `{block: NAME}` (a Prefect Secret block).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from runbook_catalog.models import Runbook, TargetKind

from .redaction import MIN_SECRET_LENGTH


class InventoryError(Exception):
    """The inventory is missing, invalid, or lacks what a runbook needs (one line)."""


class SecretRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    block: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9-]*$")

    @model_validator(mode="after")
    def _one(self) -> SecretRef:
        if (self.env is None) == (self.block is None):
            raise ValueError("a secret reference is {env: NAME} or {block: NAME}")
        return self

    def describe(self) -> str:
        return f"env:{self.env}" if self.env else f"block:{self.block}"


def resolve_secret(ref: SecretRef | str) -> str:
    """The secret's value; refuses a missing or too-short one (it could not be redacted)."""
    if isinstance(ref, str):  # "env:NAME" / "block:NAME", as a secret parameter gives it
        kind, _, name = ref.partition(":")
        ref = SecretRef(**{kind: name})
    if ref.env is not None:
        value = os.environ.get(ref.env)
        if value is None:
            raise InventoryError(f"secret env:{ref.env}: the environment variable is not set")
    else:
        try:
            from prefect.blocks.system import Secret

            value = Secret.load(ref.block).get()
        except Exception as exc:  # a missing block raises ValueError; the API may be down
            raise InventoryError(f"secret block:{ref.block}: cannot load it ({exc})") from None
        value = str(value)
    if len(value) < MIN_SECRET_LENGTH:
        raise InventoryError(
            f"secret {ref.describe()}: shorter than {MIN_SECRET_LENGTH} characters, "
            "too short to redact safely"
        )
    return value


class LocalEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["local"]


class SSHEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["ssh"]
    host: str = Field(pattern=r"^[A-Za-z0-9.:-]+$")
    port: int = Field(default=22, ge=1, le=65535)
    user: str = Field(pattern=r"^[a-z_][a-z0-9_-]*$")
    key_file: Path | None = None
    known_hosts: Path
    password: SecretRef | None = None
    key_passphrase: SecretRef | None = None
    connect_timeout: float = Field(default=10, gt=0, le=120)


class PostgresEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["postgres"]
    dsn: str = Field(min_length=1)
    password: SecretRef | None = None
    connect_timeout: float = Field(default=10, gt=0, le=120)

    @model_validator(mode="after")
    def _no_password_in_dsn(self) -> PostgresEntry:
        if ":" in self.dsn.split("@", 1)[0].split("//", 1)[-1] and "@" in self.dsn:
            raise ValueError("put the password in `password: {env: NAME}`, not in the dsn")
        return self


Entry = Annotated[LocalEntry | SSHEntry | PostgresEntry, Field(discriminator="kind")]


class Inventory(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    targets: dict[str, Entry] = Field(default_factory=dict)
    runbooks: dict[str, dict[str, str]] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None) -> Inventory:
        if path is None:
            return cls()
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise InventoryError(f"inventory {path}: cannot read it: {exc}") from None
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            raise InventoryError(f"inventory {path} > {where}: {message}") from None

    def entry_name(self, runbook: str, target: str) -> str:
        return self.runbooks.get(runbook, {}).get(target, target)

    def resolve(self, runbook: Runbook) -> dict[str, tuple[str, Any]]:
        """Runbook target name -> (inventory entry name, entry) for every target its steps use."""
        used = (
            {"local"}
            | {s.target for s in runbook.steps}
            | {s.connection for s in runbook.steps if s.connection}
        )
        resolved: dict[str, tuple[str, Any]] = {}
        for name in sorted(used):
            if name == "local":
                resolved[name] = ("local", LocalEntry(kind="local"))
                continue
            entry_name = self.entry_name(runbook.slug, name)
            entry = self.targets.get(entry_name)
            if entry is None:
                raise InventoryError(
                    f"target {name} of {runbook.slug}: no inventory entry '{entry_name}' "
                    "(set RUNBOOKS_INVENTORY to a file that defines it)"
                )
            wanted = runbook.target_kind(name)
            if wanted is not None and entry.kind != wanted.value:
                raise InventoryError(
                    f"target {name} of {runbook.slug}: inventory entry '{entry_name}' is "
                    f"{entry.kind}, the runbook needs {wanted.value}"
                )
            resolved[name] = (entry_name, entry)
        return resolved


__all__ = ["Inventory", "InventoryError", "SecretRef", "TargetKind", "resolve_secret"]

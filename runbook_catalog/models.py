"""The runbook and admin-note documents as pydantic models (`extra="forbid"` throughout).

The models check the shape of each document: types, required fields, value ranges. Rules
that relate one part of a runbook to another (every step verifies, parameters are declared,
…) are lint rules in `lint.py`, so each gets a stable code and an exact message.
"""

from __future__ import annotations

import enum
import re
from datetime import date
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from .durations import Duration
from .parameters import ParameterSpec, build_parameter_model

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
VERSION_PATTERN = r"^\d+\.\d+(\.\d+)?$"


class RunbookType(enum.StrEnum):
    INCIDENT_RESPONSE = "incident_response"
    MAINTENANCE = "maintenance"
    DISASTER_RECOVERY = "disaster_recovery"
    DEPLOYMENT = "deployment"
    TROUBLESHOOTING = "troubleshooting"
    BACKUP_RESTORE = "backup_restore"


class Priority(enum.StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class NoteType(enum.StrEnum):
    BEST_PRACTICE = "best_practice"
    TIP = "tip"
    WARNING = "warning"
    LESSON_LEARNED = "lesson_learned"


class TargetKind(enum.StrEnum):
    LOCAL = "local"
    SSH = "ssh"
    POSTGRES = "postgres"


def version_key(version: str) -> tuple[int, ...]:
    """`1.10` sorts after `1.9`."""
    return tuple(int(part) for part in version.split("."))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChangelogEntry(_Model):
    version: Annotated[str, Field(pattern=VERSION_PATTERN)]
    date: date
    changes: list[str] = Field(min_length=1)


class Command(_Model):
    """Exactly one of: `argv` (a program and its arguments, no shell), `script` (bash, with
    parameters as RB_* environment variables) or `sql` (run on a postgres target)."""

    argv: list[str] | None = Field(default=None, min_length=1)
    script: str | None = None
    sql: str | None = None
    env: dict[Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")], str] = Field(
        default_factory=dict
    )
    autocommit: bool = False  # SQL that cannot run in a transaction: VACUUM, REINDEX … CONCURRENTLY
    timeout: Duration | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Command:
        given = [name for name in ("argv", "script", "sql") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of argv, script or sql"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.autocommit and self.sql is None:
            raise ValueError("autocommit applies to sql only")
        return self

    @property
    def kind(self) -> Literal["argv", "script", "sql"]:
        return "argv" if self.argv is not None else "script" if self.script is not None else "sql"

    def texts(self) -> list[str]:
        """Every piece of text that may carry placeholders."""
        return list(self.argv or []) + [t for t in (self.script, self.sql) if t is not None]


def _regex(value: str) -> str:
    re.compile(value)
    return value


Regex = Annotated[str, AfterValidator(_regex)]


class Verification(_Model):
    """How a step proves it worked. Either a command of its own, checked by exit code, output
    pattern and (for SQL) row count, or — with no command — a pattern the step's own output must
    match."""

    argv: list[str] | None = Field(default=None, min_length=1)
    script: str | None = None
    sql: str | None = None
    env: dict[Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")], str] = Field(
        default_factory=dict
    )
    timeout: Duration | None = None
    exit_code: int = 0
    output_matches: Regex | None = None
    output_not_matches: Regex | None = None
    min_rows: int | None = Field(default=None, ge=0)
    max_rows: int | None = Field(default=None, ge=0)
    # Verifications that wait for a service to come back poll until they pass or time out.
    attempts: int = Field(default=1, ge=1, le=60)
    interval: Duration = 2

    @model_validator(mode="after")
    def _at_most_one_command(self) -> Verification:
        given = [name for name in ("argv", "script", "sql") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of argv, script or sql (got {', '.join(given)})")
        if (self.min_rows is not None or self.max_rows is not None) and self.sql is None:
            raise ValueError("min_rows and max_rows apply to a sql verification only")
        return self

    @property
    def command(self) -> Command | None:
        if self.argv is None and self.script is None and self.sql is None:
            return None
        return Command(
            argv=self.argv, script=self.script, sql=self.sql, env=self.env, timeout=self.timeout
        )

    def checks_something(self) -> bool:
        if self.command is None:
            return bool(self.output_matches or self.output_not_matches)
        if self.sql is not None:
            return (
                self.min_rows is not None
                or self.max_rows is not None
                or bool(self.output_matches or self.output_not_matches)
            )
        return True  # an exit code is a check


class Step(_Model):
    id: Annotated[str, Field(pattern=SLUG_PATTERN)]
    title: str = Field(min_length=1)
    description: str | None = None
    target: str = "local"
    # A postgres target: its PG* settings reach argv/script commands, and sql runs on it.
    connection: str | None = None
    run: Command
    expect_exit: list[int] = Field(default_factory=lambda: [0], min_length=1)
    verify: Verification | None = None
    rollback: Command | None = None
    changes_state: bool = True
    irreversible: bool = False
    requires_approval: bool = False
    approval_timeout: Duration = 3600  # no decision by then: the step fails (and rolls back)
    timeout: Duration = 300
    retries: int = Field(default=0, ge=0, le=5)
    retry_delay: Duration = 10
    # The step's output (secrets masked) becomes a Markdown artifact of the run under
    # `<runbook slug>-<publish>`: a report people read in the Prefect UI, not only in a log.
    publish: Annotated[str, Field(pattern=SLUG_PATTERN)] | None = None

    def commands(self) -> list[tuple[str, Command]]:
        """(field, command) for run, verify and rollback, in that order."""
        found = [("run", self.run)]
        if self.verify is not None and self.verify.command is not None:
            found.append(("verify", self.verify.command))
        if self.rollback is not None:
            found.append(("rollback", self.rollback))
        return found


class Target(_Model):
    kind: TargetKind
    description: str = Field(min_length=1)


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone '{value}'") from exc
    return value


class Schedule(_Model):
    cron: Annotated[str, Field(pattern=r"^\S+( \S+){4}$")]
    timezone: Annotated[str, AfterValidator(_timezone)]
    parameters: dict[str, Any] = Field(default_factory=dict)
    active: bool = True


class Runbook(_Model):
    slug: Annotated[str, Field(pattern=SLUG_PATTERN)]
    title: str = Field(min_length=1)
    type: RunbookType
    priority: Priority
    version: Annotated[str, Field(pattern=VERSION_PATTERN)]
    changelog: list[ChangelogEntry] = Field(min_length=1)
    summary: str = Field(min_length=1)
    # Optional in the shape so that the lint rules can name what is missing (RB008, RB006, RB007).
    expected_duration: Duration | None = None
    rto: Duration | None = None
    rpo: Duration | None = None
    owner: str | None = None
    tags: list[Annotated[str, Field(pattern=SLUG_PATTERN)]] = Field(default_factory=list)
    schedules: list[Schedule] = Field(default_factory=list)
    targets: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], Target] = Field(
        default_factory=dict
    )
    parameters: dict[str, ParameterSpec] = Field(default_factory=dict)
    steps: list[Step] = Field(min_length=1)

    _parameter_model: type | None = PrivateAttr(default=None)

    def parameter_model(self):
        """The strict pydantic model of this runbook's parameters: one class per runbook,
        so a value validated by the CLI is an instance of the flow's own parameter type."""
        if self._parameter_model is None:
            name = "".join(part.capitalize() for part in self.slug.split("-")) + "Parameters"
            self._parameter_model = build_parameter_model(name, dict(self.parameters))
        return self._parameter_model

    def target_kind(self, name: str) -> TargetKind | None:
        if name == "local":
            return TargetKind.LOCAL
        target = self.targets.get(name)
        return target.kind if target else None


class DocLink(_Model):
    title: str = Field(min_length=1)
    url: Annotated[str, Field(pattern=r"^(https?://\S+|docs/\S+)$")]


class AdminNote(_Model):
    slug: Annotated[str, Field(pattern=SLUG_PATTERN)]
    title: str = Field(min_length=1)
    type: NoteType
    pinned: bool = False  # the initial state; `runbooks notes pin/unpin` owns it afterwards
    tags: list[Annotated[str, Field(pattern=SLUG_PATTERN)]] = Field(default_factory=list)
    runbooks: list[str] = Field(default_factory=list)
    doc_links: list[DocLink] = Field(default_factory=list)
    author: str | None = None
    body: str = Field(min_length=40)

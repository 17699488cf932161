"""Lint rules: the relations inside a runbook that its shape alone cannot check.

Each rule is a small function with a stable code; docs/runbook-format.md lists them all.
A runbook or note with any problem is not loaded.

  RB001 duplicate runbook slug        RB011 parameter reaches a shell or interpreter as code
  RB002 duplicate step id             RB012 changelog does not match the version
  RB003 step does not verify          RB013 unknown target, or a command of the wrong kind for it
  RB004 state change without undo     RB014 SQL placeholder is not an identifier parameter
  RB005 irreversible without approval RB015 file name differs from the slug
  RB006 critical without RTO          RB016 note links an unknown runbook
  RB007 disaster recovery without RPO RB017 duplicate note slug
  RB008 no expected duration          RB018 schedule parameters are invalid
  RB009 undeclared parameter used     RB019 invalid parameter default or example
  RB010 parameter declared, not used  RB020 invalid parameter name
                                      RB021 irreversible step declares a rollback
                                      RB022 published output's key taken
"""

from __future__ import annotations

import posixpath
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from .loader import Document, _display
from .models import Command, Priority, Runbook, RunbookType, TargetKind
from .parameters import PARAMETER_NAME, IdentifierParam
from .problems import Problem
from .templating import (
    BIND_PARAMETER,
    BUILTINS,
    SCRIPT_ENV_REFERENCE,
    env_name,
    placeholders,
)

# Programs that read code from their arguments, and the flags that introduce it. A program
# may appear after a wrapper (`sudo -u postgres psql -c …`, `kubectl exec pod -- sh -c …`).
INTERPRETERS = {
    *("sh", "bash", "dash", "zsh", "ksh", "ash", "fish", "su", "runuser"),
    *("psql", "mysql", "mariadb", "sqlite3", "redis-cli"),
    *("python", "python3", "perl", "ruby", "node", "php", "awk", "gawk"),
}
CODE_FLAGS = {"-c", "--command", "-e", "--eval", "--execute"}
CODE_FLAG_PREFIXES = ("--command=", "--eval=", "--execute=")

Found = Iterator[tuple[str | None, str | None, str, str]]  # (step, field, message, code)
RunbookRule = Callable[[Runbook], Found]


def _duplicate_step_ids(rb: Runbook) -> Found:
    for step_id, count in Counter(s.id for s in rb.steps).items():
        if count > 1:
            yield step_id, "id", f"step id is used {count} times; ids must be unique", "RB002"


def _every_step_verifies(rb: Runbook) -> Found:
    for step in rb.steps:
        if step.verify is None:
            yield step.id, "verify", "every step needs a verification", "RB003"
        elif not step.verify.checks_something():
            yield (
                step.id,
                "verify",
                "the verification checks nothing: give a command, an output pattern, "
                "or for sql min_rows/max_rows",
                "RB003",
            )


def _state_changes_can_be_undone(rb: Runbook) -> Found:
    for step in rb.steps:
        if step.changes_state and step.rollback is None and not step.irreversible:
            yield (
                step.id,
                "rollback",
                "a step that changes state needs a rollback, or irreversible: true "
                "(or changes_state: false if it only reads)",
                "RB004",
            )
        if step.irreversible and step.rollback is not None:
            yield step.id, "rollback", "an irreversible step cannot declare a rollback", "RB021"


RESERVED_ARTIFACT_KEYS = ("report", "progress")  # the engine's own artifacts of every run


def _published_keys(rb: Runbook) -> Found:
    seen: set[str] = set()
    for step in rb.steps:
        if step.publish is None:
            continue
        if step.publish in RESERVED_ARTIFACT_KEYS:
            yield step.id, "publish", f"'{step.publish}' is the engine's own artifact", "RB022"
        elif step.publish in seen:
            yield step.id, "publish", f"'{step.publish}' is published by an earlier step", "RB022"
        seen.add(step.publish)


def _critical_irreversible_needs_approval(rb: Runbook) -> Found:
    if rb.priority != Priority.CRITICAL:
        return
    for step in rb.steps:
        if step.irreversible and not step.requires_approval:
            yield (
                step.id,
                "requires_approval",
                "an irreversible step of a critical runbook needs requires_approval: true",
                "RB005",
            )


def _objectives(rb: Runbook) -> Found:
    if rb.priority == Priority.CRITICAL and rb.rto is None:
        yield None, "rto", "a critical runbook needs an RTO (recovery time objective)", "RB006"
    if rb.type == RunbookType.DISASTER_RECOVERY and rb.rpo is None:
        yield None, "rpo", "a disaster recovery runbook needs an RPO (recovery point)", "RB007"
    if rb.expected_duration is None:
        yield None, "expected_duration", "every runbook needs an expected duration", "RB008"


def _changelog_matches_version(rb: Runbook) -> Found:
    newest = rb.changelog[0].version
    if newest != rb.version:
        yield (
            None,
            "changelog",
            f"the newest changelog entry is {newest} but the runbook is version {rb.version}; "
            "add an entry for the new version at the top",
            "RB012",
        )
    versions = [tuple(int(p) for p in e.version.split(".")) for e in rb.changelog]
    if versions != sorted(set(versions), reverse=True):
        yield None, "changelog", "changelog versions must be unique, newest first", "RB012"


def _parameter_names(rb: Runbook) -> Found:
    for name in rb.parameters:
        if not PARAMETER_NAME.fullmatch(name):
            yield (
                None,
                f"parameters.{name}",
                "a parameter name is lowercase ASCII letters, digits and _, starting with a letter",
                "RB020",
            )
        if name in BUILTINS:
            yield None, f"parameters.{name}", f"'{name}' is a built-in value", "RB020"


def _parameter_values(rb: Runbook) -> Found:
    for name, spec in rb.parameters.items():
        for attribute in ("default", "example"):
            value = getattr(spec, attribute, None)
            if value is None:
                continue
            try:
                TypeAdapter(spec.annotation()).validate_python(value)
            except ValidationError as exc:
                reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
                yield None, f"parameters.{name}.{attribute}", f"invalid: {reason}", "RB019"


def _schedules(rb: Runbook) -> Found:
    if not rb.schedules:
        return
    model = rb.parameter_model()
    for index, schedule in enumerate(rb.schedules):
        try:
            model.model_validate(schedule.parameters)
        except ValidationError as exc:
            for error in exc.errors():
                field = ".".join(str(p) for p in error["loc"])
                reason = "is required" if error["type"] == "missing" else error["msg"]
                yield (
                    None,
                    f"schedules[{index}].parameters.{field}",
                    reason.removeprefix("Value error, "),
                    "RB018",
                )


def _used_names(command: Command) -> set[str]:
    used: set[str] = set()
    for text in [*(command.argv or []), *command.env.values()]:
        used.update(placeholders(text))
    if command.sql is not None:
        used.update(placeholders(command.sql))
        used.update(BIND_PARAMETER.findall(command.sql))
    if command.script is not None:
        by_env = {env_name(n): n for n in BUILTINS}
        for reference in SCRIPT_ENV_REFERENCE.findall(command.script):
            used.add(by_env.get(reference, reference))
    return used


def _parameters_declared_and_used(rb: Runbook) -> Found:
    declared = set(rb.parameters)
    env_to_name = {env_name(n): n for n in declared}
    used_anywhere: set[str] = set()
    for step in rb.steps:
        for field, command in step.commands():
            for name in sorted(_used_names(command)):
                name = env_to_name.get(name, name)
                used_anywhere.add(name)
                if name not in declared and name not in BUILTINS:
                    shown = f"${name}" if name.startswith("RB_") else name
                    yield (
                        step.id,
                        field,
                        f"uses parameter {shown}, which the runbook does not declare",
                        "RB009",
                    )
    for name in sorted(declared - used_anywhere):
        yield None, f"parameters.{name}", "is declared but no step uses it", "RB010"


def _no_parameter_in_shell_code(rb: Runbook) -> Found:
    for step in rb.steps:
        for field, command in step.commands():
            if command.script is not None and placeholders(command.script):
                yield (
                    step.id,
                    f"{field}.script",
                    "a shell script must not contain {{ placeholders }}: read the parameter "
                    f"from ${env_name(placeholders(command.script)[0])} instead (DESIGN.md rule 1)",
                    "RB011",
                )
            argv = command.argv or []
            if argv and posixpath.basename(argv[0]) == "ssh" and any(map(placeholders, argv)):
                yield (
                    step.id,
                    f"{field}.argv",
                    "ssh passes its arguments to the remote shell; use an ssh target instead "
                    "of a {{ placeholder }} in an ssh command line",
                    "RB011",
                )
                continue
            for position, element in enumerate(argv):
                if not placeholders(element):
                    continue
                previous = argv[position - 1] if position else ""
                after_interpreter = any(
                    posixpath.basename(a) in INTERPRETERS for a in argv[: max(position - 1, 0)]
                )
                if (previous in CODE_FLAGS and after_interpreter) or element.startswith(
                    CODE_FLAG_PREFIXES
                ):
                    yield (
                        step.id,
                        f"{field}.argv[{position}]",
                        "a {{ placeholder }} here would be parsed as code; pass it as data "
                        "(psql -v name={{ name }} with :'name', or an RB_* variable in a script)",
                        "RB011",
                    )


def _targets_and_kinds(rb: Runbook) -> Found:
    for step in rb.steps:
        kind = rb.target_kind(step.target)
        if kind is None:
            yield step.id, "target", f"unknown target '{step.target}'", "RB013"
            continue
        if step.connection is not None and rb.target_kind(step.connection) != TargetKind.POSTGRES:
            yield (
                step.id,
                "connection",
                f"connection '{step.connection}' must name a postgres target",
                "RB013",
            )
        for field, command in step.commands():
            if command.sql is not None and kind != TargetKind.POSTGRES and not step.connection:
                yield (
                    step.id,
                    field,
                    "sql runs on a postgres target, or on the step's connection",
                    "RB013",
                )
            if command.sql is None and kind == TargetKind.POSTGRES:
                yield (
                    step.id,
                    field,
                    "a postgres target runs sql; run programs on a local or ssh target "
                    "with connection: for the database settings",
                    "RB013",
                )


def _sql_identifiers(rb: Runbook) -> Found:
    for step in rb.steps:
        for field, command in step.commands():
            if command.sql is None:
                continue
            for name in placeholders(command.sql):
                spec = rb.parameters.get(name)
                if spec is not None and not isinstance(spec, IdentifierParam):
                    yield (
                        step.id,
                        f"{field}.sql",
                        f"{{{{ {name} }}}} in SQL is quoted as an identifier, so '{name}' must be "
                        f"of type identifier; pass values as %({name})s",
                        "RB014",
                    )


RUNBOOK_RULES: list[RunbookRule] = [
    _duplicate_step_ids,
    _every_step_verifies,
    _state_changes_can_be_undone,
    _critical_irreversible_needs_approval,
    _published_keys,
    _objectives,
    _changelog_matches_version,
    _parameter_names,
    _parameter_values,
    _schedules,
    _parameters_declared_and_used,
    _no_parameter_in_shell_code,
    _targets_and_kinds,
    _sql_identifiers,
]


def lint_runbook(rb: Runbook, shown: str) -> list[Problem]:
    return [
        Problem(shown, rb.slug, step, field, message, code)
        for rule in RUNBOOK_RULES
        for step, field, message, code in rule(rb)
    ]


def _slug_problems(docs: list[Document], root: Path, what: str, code: str) -> list[Problem]:
    problems = []
    counts = Counter(d.model.slug for d in docs)
    for doc in docs:
        shown = _display(doc.path, root)
        if counts[doc.model.slug] > 1:
            problems.append(
                Problem(shown, doc.model.slug, None, "slug", f"another {what} has this slug", code)
            )
        if doc.path.stem != doc.model.slug:
            problems.append(
                Problem(
                    shown,
                    doc.model.slug,
                    None,
                    "slug",
                    f"the file must be named {doc.model.slug}{doc.path.suffix}",
                    "RB015",
                )
            )
    return problems


def lint_catalog(
    root: Path, runbooks: list[Document], notes: list[Document]
) -> tuple[list[Problem], set[Path]]:
    """All problems, and the files they reject."""
    problems = _slug_problems(runbooks, root, "runbook", "RB001")
    problems += _slug_problems(notes, root, "note", "RB017")
    for doc in runbooks:
        problems += lint_runbook(doc.model, _display(doc.path, root))
    known = {d.model.slug for d in runbooks}
    for doc in notes:
        for slug in doc.model.runbooks:
            if slug not in known:
                problems.append(
                    Problem(
                        _display(doc.path, root),
                        doc.model.slug,
                        None,
                        "runbooks",
                        f"links unknown runbook '{slug}'",
                        "RB016",
                    )
                )
    by_shown = {_display(d.path, root): d.path for d in [*runbooks, *notes]}
    rejected = {by_shown[p.file] for p in problems if p.file in by_shown}
    return problems, rejected

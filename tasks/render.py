"""Turn a step's command and validated parameter values into exactly what will run.

The same rendering serves `runbooks plan` (shown, nothing runs) and the executors (run), so
what a person approves is what executes. Values enter only as argv elements, environment
variables, SQL bind parameters and quoted SQL identifiers (DESIGN.md rule 1).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError

from runbook_catalog.models import Command, Runbook, Step
from runbook_catalog.parameters import render_value
from runbook_catalog.templating import BIND_PARAMETER, BUILTINS, env_name, placeholders, substitute

MASK = "********"


class ParameterError(ValueError):
    """Parameters refused before anything runs; the message is one line naming the field."""


@dataclass(frozen=True)
class RenderedCommand:
    kind: str  # argv, script or sql
    argv: tuple[str, ...] | None = None
    script: str | None = None
    sql: str | None = None  # for people: identifiers shown quoted
    sql_template: str | None = None  # for the executor: {{ name }} placeholders kept
    identifiers: dict[str, str] = field(default_factory=dict)  # placeholder -> identifier
    bind: dict[str, Any] = field(default_factory=dict)
    autocommit: bool = False
    env: dict[str, str] = field(default_factory=dict)
    timeout: int | None = None

    def display(self) -> str:
        if self.argv is not None:
            return shlex.join(self.argv)
        if self.script is not None:
            return self.script.rstrip("\n")
        binds = ", ".join(f"{k}={v!r}" for k, v in self.bind.items())
        return self.sql + (f"  -- with {binds}" if binds else "")


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """`["tenant_id=acme", ...]` from `-p` options; each name once."""
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ParameterError(f"parameter '{pair}': write it as name=value")
        if name in values:
            raise ParameterError(f"parameter {name}: given more than once")
        values[name] = value
    return values


def validate_parameters(
    runbook: Runbook, given: dict[str, Any], *, use_examples: bool = False
) -> BaseModel:
    """The runbook's parameter model, or ParameterError naming the first bad field."""
    values = dict(given)
    if use_examples:
        for name, spec in runbook.parameters.items():
            if name not in values and spec.example is not None:
                values[name] = spec.example
    try:
        return runbook.parameter_model().model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = ".".join(str(p) for p in error["loc"]) or "parameters"
        if error["type"] == "extra_forbidden":
            known = ", ".join(runbook.parameters) or "none"
            raise ParameterError(
                f"parameter {name}: {runbook.slug} has no such parameter (it takes: {known})"
            ) from None
        if error["type"] == "missing":
            raise ParameterError(f"parameter {name}: is required") from None
        reason = error["msg"].removeprefix("Value error, ")
        shown = given.get(name, values.get(name))
        raise ParameterError(f"parameter {name}: {reason} (got {shown!r})") from None


def placeholder_values(parameters: BaseModel, builtins: dict[str, str]) -> dict[str, str]:
    values = {name: render_value(value) for name, value in parameters}
    values.update(builtins)
    return values


def symbolic_builtins() -> dict[str, str]:
    """What `plan` shows for values that exist only once a run starts."""
    return {name: f"<{name}>" for name in BUILTINS}


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def render_command(
    command: Command,
    step: Step,
    parameters: BaseModel,
    builtins: dict[str, str],
    *,
    mask_secrets: bool = True,
) -> RenderedCommand:
    values = placeholder_values(parameters, builtins)
    timeout = command.timeout or step.timeout
    env = {key: substitute(value, values) for key, value in command.env.items()}
    if command.argv is not None:
        argv = tuple(substitute(element, values) for element in command.argv)
        return RenderedCommand("argv", argv=argv, env=env, timeout=timeout)
    if command.script is not None:
        for name, value in parameters:
            if isinstance(value, SecretStr) and not mask_secrets:
                env[env_name(name)] = value.get_secret_value()
            else:
                env[env_name(name)] = render_value(value)
        for name, value in builtins.items():
            env[env_name(name)] = value
        return RenderedCommand("script", script=command.script, env=env, timeout=timeout)
    template = command.sql or ""
    identifiers = {name: str(getattr(parameters, name)) for name in placeholders(template)}
    sql = substitute(template, {k: quote_identifier(v) for k, v in identifiers.items()})
    bind = {}
    for name in BIND_PARAMETER.findall(template):
        value = builtins.get(name, getattr(parameters, name, None))
        if isinstance(value, SecretStr):
            value = value.get_secret_value() if not mask_secrets else MASK
        bind[name] = value
    return RenderedCommand(
        "sql",
        sql=sql,
        sql_template=template,
        identifiers=identifiers,
        bind=bind,
        env=env,
        timeout=timeout,
        autocommit=command.autocommit,
    )


@dataclass(frozen=True)
class PlannedStep:
    position: int
    step: Step
    run: RenderedCommand
    verify: RenderedCommand | None
    rollback: RenderedCommand | None


def plan_runbook(
    runbook: Runbook, parameters: BaseModel, builtins: dict[str, str] | None = None
) -> list[PlannedStep]:
    """Every step rendered with the parameters; runs nothing."""
    builtins = builtins or symbolic_builtins()
    planned = []
    for position, step in enumerate(runbook.steps, start=1):
        verify_command = step.verify.command if step.verify else None
        planned.append(
            PlannedStep(
                position=position,
                step=step,
                run=render_command(step.run, step, parameters, builtins),
                verify=render_command(verify_command, step, parameters, builtins)
                if verify_command
                else None,
                rollback=render_command(step.rollback, step, parameters, builtins)
                if step.rollback
                else None,
            )
        )
    return planned

"""Alert routes: which alert starts which runbook, with which parameters (catalog data).

`alert-routes.yaml` in the catalog directory holds an ordered list of routes; the first route
whose `match` fits an alert decides what happens to it. A catalog without the file has no
routes. The file is checked like the rest of the catalog: its shape by the pydantic models
below (`extra="forbid"`), its relations to the runbooks by the rules AR001-AR008, each
reported as a `Problem` (`file > route NAME > field: message [CODE]`). A route with any
problem is left out; `load_routes(strict=True)` refuses the whole file.

  AR001 duplicate route name             AR005 required parameter not mapped
  AR002 unknown runbook                  AR006 regular expression does not compile
  AR003 runbook type not for alerts      AR007 constant or default invalid for the parameter
  AR004 unknown parameter mapped         AR008 secret parameter taken from alert data

Alert data (labels, annotations) reaches a run only through the runbook's own parameter model,
so a hostile label is refused exactly like a hostile form value (DESIGN.md rule 2).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from .durations import Duration
from .loader import Catalog, _display, _friendly, _read_yaml
from .models import SLUG_PATTERN, RunbookType
from .problems import CatalogError, Problem, sort_problems

ROUTES_FILE = "alert-routes.yaml"
# Runbooks an alert may start: the ones written for something that is going wrong now.
# Maintenance, deployments, restores and disaster recovery are started by people.
ALERT_RUNBOOK_TYPES = (RunbookType.INCIDENT_RESPONSE, RunbookType.TROUBLESHOOTING)
Source = Literal["alertmanager", "grafana", "pagerduty", "generic"]
Scalar = str | bool | int | float


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParameterSource(_Model):
    """Where one runbook parameter's value comes from: exactly one of `label` (an alert label),
    `annotation` (an alert annotation) or `value` (a constant). `default` is used when the
    label or annotation is absent; without it an absent one leaves the runbook's own default."""

    label: str | None = Field(default=None, min_length=1)
    annotation: str | None = Field(default=None, min_length=1)
    value: Scalar | None = None
    default: Scalar | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ParameterSource:
        given = [
            name for name in ("label", "annotation", "value") if getattr(self, name) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of label, annotation or value"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.value is not None and self.default is not None:
            raise ValueError("default applies to label and annotation only")
        return self

    def describe(self) -> str:
        if self.label is not None:
            return f"label {self.label}"
        if self.annotation is not None:
            return f"annotation {self.annotation}"
        return "constant value"

    def pick(self, labels: Mapping[str, Any], annotations: Mapping[str, Any]) -> Any:
        """The value for this parameter, or None when the alert does not carry it."""
        if self.value is not None:
            return self.value
        found = (
            labels.get(self.label) if self.label is not None else annotations.get(self.annotation)
        )
        return self.default if found is None else found


class RouteMatch(_Model):
    """An alert matches when every condition holds: the exact alert name, one of `sources`
    (all when absent), every label in `labels` equal, every label in `labels_regex` a full
    match of its regular expression."""

    alertname: str = Field(min_length=1)
    sources: list[Source] | None = Field(default=None, min_length=1)
    labels: dict[str, str] = Field(default_factory=dict)
    labels_regex: dict[str, str] = Field(default_factory=dict)

    def matches(self, source: str, alert_name: str | None, labels: Mapping[str, Any]) -> bool:
        if alert_name != self.alertname:
            return False
        if self.sources is not None and source not in self.sources:
            return False
        for name, expected in self.labels.items():
            if labels.get(name) != expected:
                return False
        for name, pattern in self.labels_regex.items():
            value = labels.get(name)
            if not isinstance(value, str) or re.fullmatch(pattern, value) is None:
                return False
        return True


class AlertRoute(_Model):
    name: Annotated[str, Field(pattern=SLUG_PATTERN)]
    description: str = Field(min_length=1)
    match: RouteMatch
    runbook: Annotated[str, Field(pattern=SLUG_PATTERN)]
    parameters: dict[str, ParameterSource] = Field(default_factory=dict)
    # A still-firing or flapping alert does not start the runbook again for this long.
    cooldown: Duration
    # The circuit breaker: at most `max_runs` runs started by this route within `window`.
    max_runs: int = Field(ge=1, le=10_000)
    window: Duration

    def parameter_values(
        self, labels: Mapping[str, Any], annotations: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """(values for the runbook's parameter model, parameter -> where it came from).
        A parameter the alert does not carry is left out, so the runbook's default applies
        (or the model reports it as required)."""
        values: dict[str, Any] = {}
        origins: dict[str, str] = {}
        for name, source in self.parameters.items():
            value = source.pick(labels, annotations)
            if value is not None:
                values[name] = value
                origins[name] = source.describe()
        return values, origins


@dataclass
class RouteTable:
    """The routes that passed every check, in file order, and the problems of the others."""

    file: Path | None
    routes: list[AlertRoute] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def match(
        self, source: str, alert_name: str | None, labels: Mapping[str, Any]
    ) -> AlertRoute | None:
        """The first route (in file order) that matches the alert."""
        for route in self.routes:
            if route.match.matches(source, alert_name, labels):
                return route
        return None


def load_routes(catalog: Catalog, *, strict: bool = False) -> RouteTable:
    """Read and check `alert-routes.yaml` of a loaded catalog (no file: no routes)."""
    path = Path(catalog.root) / ROUTES_FILE
    if not path.exists():
        return RouteTable(file=None)
    shown = _display(path, Path(catalog.root))
    problems: list[Problem] = []
    table = RouteTable(file=path)
    data = _read_yaml(path, shown, problems)
    raw_routes = _route_list(data, shown, problems) if data is not None else []
    parsed: list[tuple[str, AlertRoute]] = []
    for index, raw in enumerate(raw_routes):
        where = _route_label(raw, index)
        try:
            parsed.append((where, AlertRoute.model_validate(raw)))
        except ValidationError as exc:
            problems.extend(
                Problem(shown, where, None, _location(error["loc"]), _friendly(error), "RB100")
                for error in exc.errors()
            )
    names = Counter(route.name for _, route in parsed)
    for where, route in parsed:
        found = list(_route_problems(route, names, catalog))
        problems.extend(Problem(shown, where, None, f, message, code) for f, message, code in found)
        if not found:
            table.routes.append(route)
    table.problems = sort_problems(problems)
    if strict and table.problems:
        raise CatalogError(table.problems)
    return table


def route_problems(catalog: Catalog) -> list[Problem]:
    """Every problem of the catalog's alert routes (for `runbooks validate`)."""
    return load_routes(catalog).problems


def _route_list(data: dict[str, Any], shown: str, problems: list[Problem]) -> list[Any]:
    unknown = sorted(str(key) for key in data if key != "routes")
    for key in unknown:
        problems.append(Problem(shown, None, None, key, "is not a known field", "RB100"))
    routes = data.get("routes")
    if routes is None:
        problems.append(Problem(shown, None, None, "routes", "is required", "RB100"))
        return []
    if not isinstance(routes, list):
        problems.append(Problem(shown, None, None, "routes", "must be a list of routes", "RB100"))
        return []
    return routes


def _route_label(raw: Any, index: int) -> str:
    name = raw.get("name") if isinstance(raw, dict) else None
    return f"route {name}" if isinstance(name, str) and name else f"route #{index + 1}"


def _location(loc: tuple[Any, ...]) -> str | None:
    path = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[")
    return path or None


Found = Iterator[tuple[str | None, str, str]]  # (field, message, code)


def _route_problems(route: AlertRoute, names: Counter[str], catalog: Catalog) -> Found:
    if names[route.name] > 1:
        yield "name", f"route name is used {names[route.name]} times; names must be unique", "AR001"
    for name, pattern in route.match.labels_regex.items():
        try:
            re.compile(pattern)
        except re.error as exc:
            yield f"match.labels_regex.{name}", f"invalid regular expression: {exc}", "AR006"
    document = catalog.runbooks.get(route.runbook)
    if document is None:
        yield (
            "runbook",
            f"no runbook '{route.runbook}' in the catalog (or it has problems of its own)",
            "AR002",
        )
        return
    runbook = document.model
    if runbook.type not in ALERT_RUNBOOK_TYPES:
        allowed = " and ".join(t.value for t in ALERT_RUNBOOK_TYPES)
        yield (
            "runbook",
            f"'{runbook.slug}' is a {runbook.type.value} runbook; alerts start {allowed} "
            "runbooks only",
            "AR003",
        )
    known = ", ".join(runbook.parameters) or "none"
    for name, source in route.parameters.items():
        spec = runbook.parameters.get(name)
        if spec is None:
            yield (
                f"parameters.{name}",
                f"runbook '{runbook.slug}' has no parameter '{name}' (it takes: {known})",
                "AR004",
            )
            continue
        if spec.type == "secret" and source.value is None:
            yield (
                f"parameters.{name}",
                "a secret parameter takes a constant reference ({value: env:NAME} or "
                "{value: block:NAME}), never alert data",
                "AR008",
            )
        for attribute in ("value", "default"):
            given = getattr(source, attribute)
            if given is None:
                continue
            try:
                TypeAdapter(spec.annotation()).validate_python(given)
            except ValidationError as exc:
                reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
                yield f"parameters.{name}.{attribute}", f"invalid: {reason}", "AR007"
    for name, spec in runbook.parameters.items():
        if spec.is_required() and name not in route.parameters:
            yield (
                "parameters",
                f"runbook '{runbook.slug}' requires parameter '{name}': map it from a label, "
                "an annotation or a value",
                "AR005",
            )

"""Typed runbook parameters and the strict pydantic model built from them (DESIGN.md rule 2).

Each runbook declares its parameters in YAML; `build_parameter_model` turns the declarations
into one pydantic model (`extra="forbid"`) that the CLI, the Prefect UI form and the alert
receiver all validate through. Text types are checked with `re.fullmatch` under `re.ASCII`, so
a trailing newline, a leading `-` or a look-alike Unicode letter never passes.
"""

from __future__ import annotations

import posixpath
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    create_model,
    field_validator,
    model_validator,
)

# Patterns are anchored by fullmatch; the JSON-schema copies (for the UI form) carry ^...$.
IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]{0,62}"
SLUG = r"[a-z0-9][a-z0-9-]{0,62}"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME = rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*"
PATH_CHARS = r"[A-Za-z0-9._/@+=-]+"
TIMESTAMP_WITH_ZONE = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,6})?)?"
    r"(?:Z|[+-][0-9]{2}:?[0-9]{2})"
)
SECRET_REFERENCE = r"(env|block):[A-Za-z_][A-Za-z0-9_.-]{0,127}"  # noqa: S105 - a pattern

PARAMETER_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}", re.ASCII)


def schema_pattern(body: str) -> str:
    """A JSON-schema copy of a full-match rule, read the same by the UI (JavaScript) and the
    server (Python `re.search`, where `$` also matches before a final newline; hence the
    look-ahead refusing any newline)."""
    return f"^(?![^\\n]*\\n)(?:{body})$"


def _fullmatch(pattern: str, what: str):
    compiled = re.compile(pattern, re.ASCII)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"must be {what}")
        return value

    return check


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = Field(min_length=1)
    required: bool | None = None  # default: required when there is no default
    example: Any = None  # a sample value for `plan` and docs

    def is_required(self) -> bool:
        if self.required is not None:
            return self.required
        return getattr(self, "default", None) is None

    def annotation(self) -> Any:  # pragma: no cover - each type overrides
        raise NotImplementedError

    def json_schema_extra(self) -> dict[str, Any]:
        return {}


class IdentifierParam(_Spec):
    """A SQL or system identifier: ASCII letter or _ first, then letters, digits, _ (max 63)."""

    type: Literal["identifier"]
    default: str | None = None

    def annotation(self) -> Any:
        what = "an identifier: an ASCII letter or _ then letters, digits or _, at most 63"
        return Annotated[str, AfterValidator(_fullmatch(IDENTIFIER, what))]

    def json_schema_extra(self) -> dict[str, Any]:
        return {"pattern": schema_pattern(IDENTIFIER)}


class SlugParam(_Spec):
    """A lowercase slug: 1-63 of a-z, 0-9 and '-', not starting with '-'."""

    type: Literal["slug"]
    default: str | None = None

    def annotation(self) -> Any:
        what = "a slug: 1-63 characters of a-z, 0-9 and '-', not starting with '-'"
        return Annotated[str, AfterValidator(_fullmatch(SLUG, what))]

    def json_schema_extra(self) -> dict[str, Any]:
        return {"pattern": schema_pattern(SLUG)}


class HostnameParam(_Spec):
    type: Literal["hostname"]
    default: str | None = None

    def annotation(self) -> Any:
        what = "a host name: dot-separated labels of ASCII letters, digits and '-'"
        return Annotated[str, AfterValidator(_fullmatch(HOSTNAME, what))]

    def json_schema_extra(self) -> dict[str, Any]:
        # The length look-ahead ends with Python's \Z, which JavaScript does not know.
        return {"pattern": schema_pattern(HOSTNAME.replace(r"\Z", "$"))}


class StringParam(_Spec):
    """Free text is not allowed: a string parameter names the pattern it must match."""

    type: Literal["string"]
    pattern: str
    pattern_description: str | None = None
    max_length: int = Field(default=255, ge=1, le=4096)
    default: str | None = None

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        re.compile(value, re.ASCII)
        return value

    def annotation(self) -> Any:
        what = self.pattern_description or f"text matching {self.pattern}"
        return Annotated[
            str,
            Field(max_length=self.max_length),
            AfterValidator(_fullmatch(self.pattern, what)),
        ]

    def json_schema_extra(self) -> dict[str, Any]:
        return {"pattern": schema_pattern(self.pattern)}


class PathParam(_Spec):
    """A path that must stay under `base` once normalised (no '..' escape, no option-like text)."""

    type: Literal["path"]
    base: str
    default: str | None = None

    @field_validator("base")
    @classmethod
    def _absolute(cls, value: str) -> str:
        trimmed = value.rstrip("/") or "/"
        if not value.startswith("/") or posixpath.normpath(trimmed) != trimmed:
            raise ValueError("base must be an absolute, normalised path")
        return trimmed

    def annotation(self) -> Any:
        base = self.base

        def under_base(value: str) -> str:
            if not re.fullmatch(PATH_CHARS, value, re.ASCII) or value.startswith("-"):
                raise ValueError("must be a path of ASCII letters, digits and ._/@+=- only")
            resolved = posixpath.normpath(posixpath.join(base, value))
            # With base "/" every absolute path qualifies ('..' cannot climb above "/").
            if resolved != base and not resolved.startswith(base.rstrip("/") + "/"):
                raise ValueError(f"must stay under {base}")
            return resolved

        return Annotated[str, AfterValidator(under_base)]

    def json_schema_extra(self) -> dict[str, Any]:
        """The same rule for the UI form and the server, which refuse a bad value before a run
        exists: no '..' segment, no leading '-', absolute only under the base. (Slightly
        stricter than the validator, which also takes a '..' that stays under the base.)"""
        no_dotdot = r"(?!(?:.*/)?\.\.(?:/|$))"
        chars = PATH_CHARS.removesuffix("+")
        under = "/" if self.base == "/" else re.escape(self.base) + "(?:/|$)"
        first = chars.replace("/", "")  # a relative path's first character
        return {
            "pattern": schema_pattern(f"(?!-){no_dotdot}(?:(?={under}){chars}*|{first}{chars}*)")
        }


_INTEGER_TEXT = re.compile(r"-?[0-9]{1,18}", re.ASCII)
_NUMBER_TEXT = re.compile(r"-?[0-9]{1,18}(\.[0-9]{1,18})?", re.ASCII)


def _number_input(pattern: re.Pattern[str]):
    def check(value: Any) -> Any:
        # pydantic's lax mode reads True as 1 and " 1\n" as 1; a yes/no is never a count,
        # and text (a CLI value, an alert label) must be exactly a plain ASCII number.
        if isinstance(value, bool):
            raise ValueError("must be a number, not true/false")
        if isinstance(value, str) and not pattern.fullmatch(value):
            raise ValueError("must be a plain number (ASCII digits)")
        return value

    return check


class IntegerParam(_Spec):
    type: Literal["integer"]
    min: int
    max: int
    default: int | None = None

    @model_validator(mode="after")
    def _ordered(self) -> IntegerParam:
        if self.min > self.max:
            raise ValueError("min must not exceed max")
        return self

    def annotation(self) -> Any:
        return Annotated[
            int, BeforeValidator(_number_input(_INTEGER_TEXT)), Field(ge=self.min, le=self.max)
        ]

    def json_schema_extra(self) -> dict[str, Any]:
        # Behind the BeforeValidator pydantic writes the bounds as `ge`/`le`, which JSON
        # schema (the server's check of a UI form) ignores; say them in its own words.
        return {"minimum": self.min, "maximum": self.max}


class NumberParam(_Spec):
    type: Literal["number"]
    min: float
    max: float
    default: float | None = None

    def annotation(self) -> Any:
        return Annotated[
            float,
            BeforeValidator(_number_input(_NUMBER_TEXT)),
            Field(ge=self.min, le=self.max, allow_inf_nan=False),
        ]

    def json_schema_extra(self) -> dict[str, Any]:
        return {"minimum": self.min, "maximum": self.max}


class BooleanParam(_Spec):
    type: Literal["boolean"]
    default: bool | None = None

    def annotation(self) -> Any:
        return bool


class ChoiceParam(_Spec):
    type: Literal["choice"]
    choices: list[Annotated[str, AfterValidator(_fullmatch(r"[A-Za-z0-9_.-]+", "ASCII"))]] = Field(
        min_length=1
    )
    default: str | None = None

    def annotation(self) -> Any:
        return Literal[tuple(self.choices)]  # type: ignore[valid-type]


class TimestampParam(_Spec):
    """A point in time with its timezone, e.g. a point-in-time-recovery target."""

    type: Literal["timestamp"]
    default: None = None

    def annotation(self) -> Any:
        def aware(value: datetime) -> datetime:
            if value.tzinfo is None:
                raise ValueError("must carry a timezone, e.g. 2026-12-04T03:12:00+00:00")
            return value

        return Annotated[datetime, AfterValidator(aware)]

    def json_schema_extra(self) -> dict[str, Any]:
        # JSON schema's `format: date-time` is not enforced by the server; a pattern is.
        return {"pattern": schema_pattern(TIMESTAMP_WITH_ZONE)}


class SecretParam(_Spec):
    """A reference to a secret (`env:NAME` or `block:NAME`), never the secret itself.

    Prefect stores a SecretStr parameter masked and hands a deployment run the mask, so the
    value is resolved at run time from the reference (PREFECT-NOTES.md).
    """

    type: Literal["secret"]
    default: str | None = None

    def annotation(self) -> Any:
        what = "a secret reference: env:VARIABLE or block:secret-block-name"
        return Annotated[SecretStr, AfterValidator(_secret_reference(what))]

    def json_schema_extra(self) -> dict[str, Any]:
        return {"pattern": schema_pattern(SECRET_REFERENCE)}


def _secret_reference(what: str):
    check = _fullmatch(SECRET_REFERENCE, what)

    def validate(value: SecretStr) -> SecretStr:
        check(value.get_secret_value())
        return value

    return validate


ParameterSpec = Annotated[
    IdentifierParam
    | SlugParam
    | HostnameParam
    | StringParam
    | PathParam
    | IntegerParam
    | NumberParam
    | BooleanParam
    | ChoiceParam
    | TimestampParam
    | SecretParam,
    Field(discriminator="type"),
]

PARAMETER_TYPES = sorted(
    spec.model_fields["type"].annotation.__args__[0]  # type: ignore[union-attr]
    for spec in ParameterSpec.__origin__.__args__  # type: ignore[attr-defined]
)


class RunbookParameters(BaseModel):
    """Base of every runbook's parameter model: strict, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def build_parameter_model(model_name: str, specs: dict[str, Any]) -> type[RunbookParameters]:
    """One pydantic model for a runbook's declared parameters."""
    fields: dict[str, Any] = {}
    for name, spec in specs.items():
        default = ... if spec.is_required() else spec.default
        annotation = spec.annotation()
        if default is None:  # optional with no default: absent means None
            annotation = annotation | None
        fields[name] = (
            annotation,
            Field(
                default=default,
                # Defaults go through the same validators as given values (a relative path
                # default is resolved under its base, like a typed one).
                validate_default=True,
                description=spec.description,
                json_schema_extra=spec.json_schema_extra() or None,
            ),
        )
    return create_model(model_name, __base__=RunbookParameters, **fields)


def render_value(value: Any) -> str:
    """A validated parameter value as the text substituted into an argv element."""
    if isinstance(value, SecretStr):
        return "********"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)

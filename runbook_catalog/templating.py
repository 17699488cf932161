"""Placeholders: `{{ name }}` in argv elements and SQL identifiers, and nowhere else.

Rule 1 of DESIGN.md: a parameter value is never parsed by a shell as code. So placeholders are
substituted only into argv elements (one element stays one argument, whatever the value) and
into SQL as quoted identifiers. Shell scripts get parameters as `RB_<NAME>` environment
variables; psql gets them with `-v name={{ name }}` and reads them as `:'name'`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", re.ASCII)
# psycopg named bind parameters: %(name)s
BIND_PARAMETER = re.compile(r"%\(([A-Za-z_][A-Za-z0-9_]*)\)s", re.ASCII)
# $RB_NAME or ${RB_NAME} read by a script
SCRIPT_ENV_REFERENCE = re.compile(r"\$\{?(RB_[A-Z0-9_]+)", re.ASCII)

# Values the engine provides to every run; safe by construction (no user text).
BUILTINS = {
    "run_id": "the execution id (a UUID)",
    "run_stamp": "the run's start time as 20261204T031200Z",
    "workdir": "a working directory private to this run",
}


def placeholders(text: str) -> list[str]:
    return PLACEHOLDER.findall(text)


def env_name(parameter: str) -> str:
    """The environment variable a script reads a parameter from: tenant_id -> RB_TENANT_ID."""
    return "RB_" + parameter.upper()


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace each placeholder with its value; a missing name is a KeyError (lint prevents it)."""
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)

"""Small runbooks for engine tests, built in code so each behaviour is one parameter away.

`ordered` has three local script steps that append to `$RB_DIR/log` and create `$RB_DIR/sN`;
its rollbacks append `undo N`. Parameters choose where it fails and how:
fail_at (step 1-3, 0 = never), fail_how (exit, verify, timeout), broken_rollback (step whose
rollback fails), so rollback order and outcomes are observable on disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .catalog_factory import write_catalog


def _ordered_step(n: int) -> dict[str, Any]:
    return {
        "id": f"s{n}",
        "title": f"Step {n}",
        "run": {
            "script": (
                f'echo "run {n}" >> "$RB_DIR/log"\n'
                f'if [ "$RB_FAIL_AT" = {n} ] && [ "$RB_FAIL_HOW" = exit ]; then echo boom-{n} >&2; exit 3; fi\n'
                f'if [ "$RB_FAIL_AT" = {n} ] && [ "$RB_FAIL_HOW" = timeout ]; then sleep 60; fi\n'
                f'touch "$RB_DIR/s{n}"\n'
                f'echo "step {n} done"\n'
            )
        },
        "verify": {
            "script": (
                f'test -e "$RB_DIR/s{n}"\n'
                f'if [ "$RB_FAIL_AT" = {n} ] && [ "$RB_FAIL_HOW" = verify ]; then exit 1; fi\n'
            )
        },
        "rollback": {
            "script": (
                f'echo "undo {n}" >> "$RB_DIR/log"\n'
                f'rm -f "$RB_DIR/s{n}"\n'
                f'if [ "$RB_BROKEN_ROLLBACK" = {n} ]; then echo cannot-undo-{n} >&2; exit 7; fi\n'
            )
        },
        "timeout": "2s",
    }


def ordered(**changes: Any) -> dict[str, Any]:
    data = {
        "slug": "ordered",
        "title": "Ordered steps",
        "type": "maintenance",
        "priority": "medium",
        "version": "1.0",
        "changelog": [{"version": "1.0", "date": "2026-12-04", "changes": ["test"]}],
        "summary": "Three steps that record their runs and undos.",
        "expected_duration": "1m",
        "parameters": {
            "dir": {"type": "path", "base": "/tmp", "description": "where to write"},
            "fail_at": {"type": "integer", "min": 0, "max": 9, "default": 0, "description": "x"},
            "fail_how": {
                "type": "choice",
                "choices": ["exit", "verify", "timeout"],
                "default": "exit",
                "description": "x",
            },
            "broken_rollback": {
                "type": "integer",
                "min": 0,
                "max": 9,
                "default": 0,
                "description": "x",
            },
        },
        "steps": [_ordered_step(n) for n in (1, 2, 3)],
    }
    data.update(changes)
    return data


def write_engine_catalog(root: Path, *runbooks: dict[str, Any]) -> Path:
    return write_catalog(root, list(runbooks) or [ordered()])


def gated(approval_timeout: str = "1h") -> dict[str, Any]:
    """`ordered` whose second step needs approval."""
    data = ordered(slug="gated", title="Gated steps")
    data["steps"][1]["requires_approval"] = True
    data["steps"][1]["approval_timeout"] = approval_timeout
    return data


def waiting() -> dict[str, Any]:
    """One step that waits for `$RB_DIR/go` (at most 60 s) and records that it ran."""
    data = ordered(slug="waiting", title="Waits for a file")
    data["steps"] = [
        {
            "id": "wait",
            "title": "Wait for the go file",
            "run": {
                "script": 'echo started >> "$RB_DIR/log"\n'
                'for i in $(seq 600); do [ -e "$RB_DIR/go" ] && exit 0; sleep 0.1; done\nexit 1\n'
            },
            "verify": {"output_not_matches": "never"},
            "changes_state": False,
            "timeout": "90s",
        },
        {
            "id": "sleep",
            "title": "Sleep long (killed in tests)",
            "run": {"script": 'echo "$$" > "$RB_DIR/sleeper.pid"\nexec sleep 31.5\n'},
            "verify": {"output_not_matches": "never"},
            # mutating, so its row is written before it starts: a crash leaves evidence
            "rollback": {"argv": ["true"]},
            "timeout": "60s",
        },
    ]
    data["parameters"] = {
        "dir": data["parameters"]["dir"],
        "sleep": {"type": "boolean", "default": False, "description": "x"},
    }
    data["steps"][1]["run"]["script"] = (
        '[ "$RB_SLEEP" = true ] || exit 0\n' + data["steps"][1]["run"]["script"]
    )
    return data


def secretive() -> dict[str, Any]:
    """Prints a secret parameter in its output and its error, then fails."""
    data = ordered(slug="secretive", title="Handles a secret")
    data["parameters"] = {
        "dir": data["parameters"]["dir"],
        "token": {"type": "secret", "description": "an API token, by reference"},
    }
    data["steps"] = [
        {
            "id": "use-token",
            "title": "Use the token",
            "run": {"script": 'echo "token is $RB_TOKEN"\necho "saved" > "$RB_DIR/used"\n'},
            "verify": {"output_matches": "token is"},
            "rollback": {"script": 'rm -f "$RB_DIR/used"; echo "undo with $RB_TOKEN"\n'},
        },
        {
            "id": "leak-and-fail",
            "title": "Fail with the token in the error",
            "run": {"script": 'echo "bad token $RB_TOKEN" >&2\nexit 9\n'},
            "verify": {"output_matches": "never"},
            "changes_state": False,
        },
    ]
    return data


def remote() -> dict[str, Any]:
    """Steps on all three executors: SSH, SQL (identifier + bind parameter), and a local psql
    with `connection:`; `fail_last` makes the last step fail so every rollback runs."""
    return {
        "slug": "remote",
        "title": "Remote steps",
        "type": "maintenance",
        "priority": "medium",
        "version": "1.0",
        "changelog": [{"version": "1.0", "date": "2026-12-04", "changes": ["test"]}],
        "summary": "SSH, SQL and psql steps against real services.",
        "expected_duration": "1m",
        "targets": {
            "host": {"kind": "ssh", "description": "a host reached over SSH"},
            "db": {"kind": "postgres", "description": "a PostgreSQL database"},
        },
        "parameters": {
            "name": {"type": "slug", "description": "a value", "example": "acme"},
            "table": {"type": "identifier", "description": "a table", "example": "notes"},
            "fail_last": {"type": "boolean", "default": False, "description": "x"},
        },
        "steps": [
            {
                "id": "remote-file",
                "title": "Write a file on the SSH host",
                "target": "host",
                "run": {"script": 'echo "$RB_NAME" > "$RB_WORKDIR/name"\nhostname\n'},
                "verify": {"argv": ["cat", "{{ workdir }}/name"], "output_matches": "^acme"},
                "rollback": {"argv": ["rm", "-f", "{{ workdir }}/name"]},
            },
            {
                "id": "create-table",
                "title": "Create the table",
                "target": "db",
                "run": {"sql": "CREATE TABLE {{ table }} (v text)"},
                "verify": {
                    "sql": "SELECT 1 FROM information_schema.tables WHERE table_name = %(table)s",
                    "min_rows": 1,
                },
                "rollback": {"sql": "DROP TABLE IF EXISTS {{ table }}"},
            },
            {
                "id": "insert-row",
                "title": "Insert the value",
                "target": "db",
                "run": {"sql": "INSERT INTO {{ table }} VALUES (%(name)s)"},
                "verify": {"sql": "SELECT v FROM {{ table }} WHERE v = %(name)s", "min_rows": 1},
                "rollback": {"sql": "DELETE FROM {{ table }} WHERE v = %(name)s"},
            },
            {
                "id": "count-with-psql",
                "title": "Count with psql through the connection",
                "connection": "db",
                "changes_state": False,
                "run": {
                    "script": (
                        'psql -X -At -v ON_ERROR_STOP=1 -v t="$RB_TABLE" -v n="$RB_NAME" <<\'SQL\'\n'
                        "SELECT count(*) FROM :\"t\" WHERE v = :'n';\n"
                        "SQL\n"
                        '[ "$RB_FAIL_LAST" = false ]\n'
                    )
                },
                "verify": {"output_matches": "^1$"},
            },
        ],
    }


HOSTILE_BY_TYPE = {
    "identifier": {"type": "identifier", "description": "x", "default": "app_db"},
    "slug": {"type": "slug", "description": "x", "default": "acme"},
    "hostname": {"type": "hostname", "description": "x", "default": "db1.example.com"},
    "string": {
        "type": "string",
        "description": "x",
        "pattern": r"v[0-9]+\.[0-9]+\.[0-9]+",
        "default": "v1.2.3",
    },
    "path": {"type": "path", "base": "/var/backups", "description": "x", "default": "a.dump"},
    "integer": {"type": "integer", "min": 1, "max": 10, "description": "x", "default": 5},
    "number": {"type": "number", "min": 0, "max": 1, "description": "x", "default": 0.5},
    "choice": {"type": "choice", "choices": ["a", "b"], "description": "x", "default": "a"},
    "timestamp": {"type": "timestamp", "description": "x", "required": False},
    "secret": {"type": "secret", "description": "x", "required": False},
}


def typed() -> dict[str, Any]:
    """One parameter of every type, each passed to `echo`, and a marker file when it runs."""
    data = ordered(slug="typed", title="Every parameter type")
    data["parameters"] = {
        "dir": data["parameters"]["dir"],
        **{f"p_{name}": spec for name, spec in HOSTILE_BY_TYPE.items()},
    }
    data["steps"] = [
        {
            "id": "echo",
            "title": "Echo every value as one argument each",
            "run": {"argv": ["echo", *[f"{{{{ p_{name} }}}}" for name in HOSTILE_BY_TYPE]]},
            "verify": {"output_matches": "acme"},
            "changes_state": False,
        },
        {
            "id": "mark",
            "title": "Leave a marker",
            "run": {"argv": ["touch", "{{ dir }}/ran"]},
            "verify": {"argv": ["test", "-e", "{{ dir }}/ran"]},
            "rollback": {"argv": ["rm", "-f", "{{ dir }}/ran"]},
        },
    ]
    return data

"""The catalog as a Markdown table, for the README (`runbooks list --markdown`)."""

from __future__ import annotations

from collections.abc import Iterable

from .durations import format_duration
from .models import Runbook

TYPE_ORDER = [
    "incident_response",
    "maintenance",
    "disaster_recovery",
    "deployment",
    "troubleshooting",
    "backup_restore",
]


def catalog_table(runbooks: Iterable[Runbook]) -> str:
    rows = sorted(runbooks, key=lambda rb: (TYPE_ORDER.index(rb.type.value), rb.slug))
    lines = [
        "| slug | type | priority | steps | expected | RTO | RPO | title |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for rb in rows:
        lines.append(
            f"| `{rb.slug}` | {rb.type.value} | {rb.priority.value} | {len(rb.steps)} | "
            f"{format_duration(rb.expected_duration)} | {format_duration(rb.rto)} | "
            f"{format_duration(rb.rpo)} | {rb.title} |"
        )
    return "\n".join(lines) + "\n"

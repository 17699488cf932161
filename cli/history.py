"""`runbooks history` and `runbooks stats`: what ran, when, and how it went."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from db.stats import execution_detail, history, runbook_stats
from runbook_catalog.durations import format_duration

from . import context
from .catalog import JsonOption
from .output import console, print_json


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}s" if value < 60 else format_duration(round(value))


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def history_command(
    slug: Annotated[str | None, typer.Argument(help="Only this runbook.")] = None,
    status: Annotated[str | None, typer.Option(help="Only executions in this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many, newest first.")] = 20,
    execution: Annotated[
        str | None, typer.Option(help="Show one execution (id or unique prefix) step by step.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Executions, newest first; or one execution in full with --execution."""
    engine = context.mirror()
    if execution:
        _show_execution(engine, execution, as_json)
        return
    rows = history(engine, slug, status, limit)
    if as_json:
        print_json(
            [
                {
                    "id": str(e.id),
                    "flow_run_id": str(e.flow_run_id) if e.flow_run_id else None,
                    "runbook": e.runbook_slug,
                    "version": e.runbook_version,
                    "trigger": e.trigger,
                    "triggered_by": e.triggered_by,
                    "status": e.status,
                    "started_at": e.started_at.isoformat(),
                    "finished_at": e.finished_at.isoformat() if e.finished_at else None,
                    "duration_seconds": e.duration_seconds,
                    "target": e.target,
                    "error": e.error,
                }
                for e in rows
            ]
        )
        return
    table = Table("started (UTC)", "runbook", "ver", "trigger", "status", "duration", "execution")
    for e in rows:
        table.add_row(
            f"{e.started_at:%Y-%m-%d %H:%M:%S}",
            e.runbook_slug,
            e.runbook_version,
            e.trigger,
            e.status,
            _seconds(e.duration_seconds),
            str(e.id)[:8],
        )
    console.print(table)
    console.print(f"{len(rows)} execution(s)")


def _show_execution(engine, execution_id: str, as_json: bool) -> None:
    found = execution_detail(engine, execution_id)
    if found is None:
        raise context.CommandError(f"no execution '{execution_id}' (see `runbooks history`)")
    e, steps = found
    if as_json:
        print_json(
            {
                "id": str(e.id),
                "runbook": e.runbook_slug,
                "version": e.runbook_version,
                "definition_hash": e.definition_hash,
                "trigger": e.trigger,
                "triggered_by": e.triggered_by,
                "parameters": e.parameters,
                "status": e.status,
                "started_at": e.started_at.isoformat(),
                "finished_at": e.finished_at.isoformat() if e.finished_at else None,
                "error": e.error,
                "steps": [
                    {
                        "position": s.position,
                        "step": s.step_id,
                        "status": s.status,
                        "command": s.command,
                        "exit_code": s.exit_code,
                        "attempts": s.attempts,
                        "verify": s.verify_result,
                        "rollback": s.rollback_status,
                        "approved_by": s.approved_by,
                        "output_tail": s.output_tail,
                        "error": s.error,
                    }
                    for s in steps
                ],
            }
        )
        return
    console.print(
        f"[bold]{e.runbook_slug} {e.runbook_version}[/bold] execution {e.id}: {e.status}",
        highlight=False,
    )
    console.print(
        f"started {e.started_at:%Y-%m-%d %H:%M:%S} UTC by {e.trigger}"
        f"{' (' + e.triggered_by + ')' if e.triggered_by else ''}, took "
        f"{_seconds(e.duration_seconds)}; parameters {e.parameters}",
        markup=False,
    )
    if e.error:
        console.print(f"error: {e.error}", markup=False)
    for s in steps:
        console.print(
            f"\n{s.position}. {s.step_id}: {s.status}"
            f" (exit {s.exit_code}, {s.attempts} attempt(s), rollback {s.rollback_status})",
            markup=False,
        )
        if s.command:
            console.print(f"   $ {s.command.splitlines()[0]}", markup=False)
        if s.approved_by:
            reason = f": {s.approval_reason}" if s.approval_reason else ""
            console.print(f"   approval: {s.approved_by}{reason}", markup=False)
        if s.verify_result:
            console.print(f"   verify: {s.verify_result}", markup=False)
        if s.error:
            console.print(f"   error: {s.error}", markup=False)


def stats_command(
    slug: Annotated[str | None, typer.Argument(help="Only this runbook.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Per runbook: runs, success and failure rate, rollbacks, durations against the expected
    duration, and for runbooks with an RTO how often a run finished within it."""
    stats = runbook_stats(context.mirror(), slug)
    if slug and not stats:
        raise context.CommandError(f"no runbook '{slug}' in the mirror (run `runbooks sync`)")
    if as_json:
        print_json([s.as_dict() for s in stats])
        return
    table = Table(
        "runbook",
        "runs",
        "ok",
        "failed",
        "rolled back",
        "last run",
        "mean",
        "p95",
        "expected",
        "within RTO",
    )
    for s in stats:
        rto = "-"
        if s.rto_seconds:
            rto = (
                f"{s.within_rto}/{s.executions} ({_percent(s.within_rto_rate)})"
                if s.executions
                else "-"
            )
        table.add_row(
            s.slug,
            str(s.executions) + (f" (+{s.running} running)" if s.running else ""),
            _percent(s.success_rate),
            _percent(s.failure_rate),
            str(s.rolled_back),
            f"{s.last_executed:%Y-%m-%d %H:%M}" if s.last_executed else "never",
            _seconds(s.mean_duration_seconds),
            _seconds(s.p95_duration_seconds),
            format_duration(s.expected_duration_seconds),
            rto,
        )
    console.print(table)

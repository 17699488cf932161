"""Queries behind `runbooks history` and `runbooks stats`.

Statistics count finished executions only (terminal statuses); the rates are fractions of
those. Percentiles are computed here (nearest rank) so both databases give the same answer.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select

from .engine import session_scope
from .models import TERMINAL_STATUSES, Runbook, RunbookExecution, StepExecution


def history(
    engine: Engine, slug: str | None = None, status: str | None = None, limit: int = 20
) -> list[RunbookExecution]:
    query = select(RunbookExecution).order_by(RunbookExecution.started_at.desc()).limit(limit)
    if slug:
        query = query.where(RunbookExecution.runbook_slug == slug)
    if status:
        query = query.where(RunbookExecution.status == status)
    with session_scope(engine) as session:
        return list(session.scalars(query))


def execution_detail(
    engine: Engine, execution_id: str
) -> tuple[RunbookExecution, list[StepExecution]] | None:
    """An execution and its steps; `execution_id` may be a unique prefix of the id."""
    with session_scope(engine) as session:
        try:
            execution = session.get(RunbookExecution, uuid.UUID(execution_id))
        except ValueError:
            matches = [
                e
                for e in session.scalars(select(RunbookExecution))
                if str(e.id).startswith(execution_id.lower())
            ]
            execution = matches[0] if len(matches) == 1 else None
        if execution is None:
            return None
        steps = list(
            session.scalars(
                select(StepExecution)
                .where(StepExecution.execution_id == execution.id)
                .order_by(StepExecution.position)
            )
        )
        return execution, steps


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


@dataclass
class RunbookStats:
    slug: str
    title: str
    priority: str
    executions: int  # finished ones
    running: int
    succeeded: int
    failed: int  # failed, rollback_failed, crashed
    rolled_back: int
    cancelled: int
    last_executed: datetime | None
    mean_duration_seconds: float | None
    p95_duration_seconds: float | None
    expected_duration_seconds: int
    rto_seconds: int | None
    within_rto: int | None  # succeeded within the RTO, for runbooks with an RTO

    @property
    def success_rate(self) -> float | None:
        return self.succeeded / self.executions if self.executions else None

    @property
    def failure_rate(self) -> float | None:
        return (self.failed + self.rolled_back) / self.executions if self.executions else None

    @property
    def within_rto_rate(self) -> float | None:
        if self.within_rto is None or not self.executions:
            return None
        return self.within_rto / self.executions

    def as_dict(self) -> dict:
        data = dict(self.__dict__)
        data["success_rate"] = self.success_rate
        data["failure_rate"] = self.failure_rate
        data["within_rto_rate"] = self.within_rto_rate
        data["last_executed"] = self.last_executed.isoformat() if self.last_executed else None
        return data


def runbook_stats(engine: Engine, slug: str | None = None) -> list[RunbookStats]:
    terminal = {s.value for s in TERMINAL_STATUSES}
    with session_scope(engine) as session:
        runbooks = select(Runbook).order_by(Runbook.slug)
        if slug:
            runbooks = runbooks.where(Runbook.slug == slug)
        rows = list(session.scalars(runbooks))
        query = select(
            RunbookExecution.runbook_slug,
            RunbookExecution.status,
            RunbookExecution.started_at,
            RunbookExecution.duration_seconds,
        )
        if slug:
            query = query.where(RunbookExecution.runbook_slug == slug)
        executions = session.execute(query).all()
    found = []
    for rb in rows:
        mine = [e for e in executions if e.runbook_slug == rb.slug]
        done = [e for e in mine if e.status in terminal]
        durations = [e.duration_seconds for e in done if e.duration_seconds is not None]
        succeeded = [e for e in done if e.status == "succeeded"]
        found.append(
            RunbookStats(
                slug=rb.slug,
                title=rb.title,
                priority=rb.priority,
                executions=len(done),
                running=len(mine) - len(done),
                succeeded=len(succeeded),
                failed=sum(e.status in ("failed", "rollback_failed", "crashed") for e in done),
                rolled_back=sum(e.status == "rolled_back" for e in done),
                cancelled=sum(e.status == "cancelled" for e in done),
                last_executed=max((e.started_at for e in mine), default=None),
                mean_duration_seconds=sum(durations) / len(durations) if durations else None,
                p95_duration_seconds=percentile(durations, 0.95),
                expected_duration_seconds=rb.expected_duration_seconds,
                rto_seconds=rb.rto_seconds,
                within_rto=(
                    sum((e.duration_seconds or 0) <= rb.rto_seconds for e in succeeded)
                    if rb.rto_seconds
                    else None
                ),
            )
        )
    return found

"""Writes the execution record as a run goes (DESIGN.md, "The mirror").

The execution row is written when the flow starts, a step row before the step's command
starts, and results after, so a crash leaves evidence. Every text that reaches a row has been
redacted by the caller's Redactor, which the writer applies once more as a last line.
Terminal statuses are final: closing an already-closed execution changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, bindparam, insert, select, update

from .base import utcnow
from .engine import session_scope
from .models import (
    TERMINAL_STATUSES,
    AlertEvent,
    ExecutionStatus,
    RollbackStatus,
    RunbookExecution,
    StepExecution,
    StepStatus,
)

OUTPUT_TAIL_CHARS = 16_000  # what the mirror keeps of a step's output (the end of it)


def _tail(text: str | None) -> str | None:
    if text is None or len(text) <= OUTPUT_TAIL_CHARS:
        return text
    return "[… truncated …]\n" + text[-OUTPUT_TAIL_CHARS:]


class MirrorWriter:
    def __init__(self, engine: Engine, redact: Callable[[str], str] = lambda text: text):
        self.engine = engine
        self.redact = redact
        # Writes a caller let wait (finish_step(defer=True)), as (statement, values); they are
        # committed in the same transaction as the next write, or by flush().
        self._deferred: list[tuple[Any, dict[str, Any]]] = []

    def _run_deferred(self, connection) -> None:
        deferred, self._deferred = self._deferred, []
        for statement, values in deferred:
            connection.execute(statement, values)

    def flush(self) -> None:
        if self._deferred:
            with self.engine.begin() as connection:
                self._run_deferred(connection)

    def _text(self, text: str | None) -> str | None:
        return None if text is None else _tail(self.redact(text))

    def start_execution(
        self,
        *,
        execution_id: uuid.UUID,
        flow_run_id: uuid.UUID | None,
        runbook_slug: str,
        runbook_version: str,
        definition_hash: str,
        definition: dict[str, Any],
        trigger: str,
        triggered_by: str | None,
        parameters: dict[str, Any],
        target: str,
        alert_event_id: int | None = None,
    ) -> None:
        with session_scope(self.engine) as session:
            session.add(
                RunbookExecution(
                    id=execution_id,
                    flow_run_id=flow_run_id,
                    runbook_slug=runbook_slug,
                    runbook_version=runbook_version,
                    definition_hash=definition_hash,
                    definition_snapshot=definition,
                    trigger=trigger,
                    triggered_by=triggered_by,
                    parameters=parameters,
                    target=target,
                    status=ExecutionStatus.RUNNING.value,
                    started_at=utcnow(),
                    alert_event_id=alert_event_id,
                )
            )
            if alert_event_id is not None:
                # The alert points at the run it started, in the same commit as the row.
                session.flush()
                session.execute(
                    update(AlertEvent)
                    .where(AlertEvent.id == alert_event_id)
                    .values(execution_id=execution_id)
                )

    def set_status(self, execution_id: uuid.UUID, status: ExecutionStatus) -> None:
        with session_scope(self.engine) as session:
            self._run_deferred(session)
            session.execute(
                update(RunbookExecution)
                .where(RunbookExecution.id == execution_id)
                .where(RunbookExecution.status.not_in([s.value for s in TERMINAL_STATUSES]))
                .values(status=status.value)
            )

    def finish_execution(
        self, execution_id: uuid.UUID, status: ExecutionStatus, error: str | None = None
    ) -> bool:
        """Close the row; False if it was already closed (hooks and the reconciler race)."""
        with session_scope(self.engine) as session:
            self._run_deferred(session)
            row = session.get(RunbookExecution, execution_id, with_for_update=True)
            if row is None or row.status in TERMINAL_STATUSES:
                return False
            finished = utcnow()
            row.status = status.value
            row.finished_at = finished
            row.duration_seconds = (finished - row.started_at).total_seconds()
            row.error = self._text(error)
            if status == ExecutionStatus.SUCCEEDED:
                # The compensation stack is discharged: nothing is waiting to be undone.
                session.execute(
                    update(StepExecution)
                    .where(StepExecution.execution_id == execution_id)
                    .where(StepExecution.rollback_status == RollbackStatus.PENDING.value)
                    .values(rollback_status=RollbackStatus.NOT_NEEDED.value)
                )
            return True

    # Step rows are the hot path (a write per step): constant Core statements whose values
    # arrive as bind parameters, so SQLAlchemy compiles each shape once and every later step
    # only binds values (building `.values(...)` per call re-derives the cache key each time).
    _INSERT_STEP = insert(StepExecution.__table__)
    _UPDATE_STEP = update(StepExecution.__table__).where(
        StepExecution.__table__.c.id == bindparam("step_row_id")
    )

    def start_step(
        self,
        execution_id: uuid.UUID,
        position: int,
        step_id: str,
        title: str,
        command: str,
        target: str | None = None,
        started_at: datetime | None = None,
        **values: Any,
    ) -> int:
        """Insert the step's row: `running` before it starts, or complete (given its final
        `values`) when a step is recorded only once it ended (a skipped step)."""
        row = {
            "execution_id": execution_id,
            "position": position,
            "step_id": step_id,
            "title": title,
            "target": target,
            "command": self._text(command),
            "started_at": started_at or utcnow(),
            "status": StepStatus.RUNNING.value,
            "rollback_status": RollbackStatus.NOT_NEEDED.value,
            "output_truncated": False,
            "attempts": 0,
        } | self._clean(values)
        with self.engine.begin() as connection:
            self._run_deferred(connection)
            return connection.execute(self._INSERT_STEP, row).inserted_primary_key[0]

    def _clean(self, values: dict[str, Any]) -> dict[str, Any]:
        for key in ("output_tail", "verify_result", "rollback_output_tail", "error"):
            if key in values:
                values[key] = self._text(values[key])
        for key in ("status", "rollback_status"):
            if isinstance(values.get(key), StepStatus | RollbackStatus):
                values[key] = values[key].value
        return values

    def update_step(self, step_row_id: int, *, defer: bool = False, **values: Any) -> None:
        write = (self._UPDATE_STEP, {"step_row_id": step_row_id, **self._clean(values)})
        if defer:
            self._deferred.append(write)
            return
        with self.engine.begin() as connection:
            self._run_deferred(connection)
            connection.execute(*write)

    def finish_step(
        self, step_row_id: int, status: StepStatus, *, defer: bool = False, **values: Any
    ) -> None:
        """With defer=True the result is committed with the run's next write (see flush)."""
        self.update_step(step_row_id, defer=defer, status=status, finished_at=utcnow(), **values)


def close_open_steps(engine: Engine, execution_id: uuid.UUID, finished_at: datetime) -> int:
    """Steps a dead run left `running` become `outcome_unknown` (never re-run automatically)."""
    with session_scope(engine) as session:
        return session.execute(
            update(StepExecution)
            .where(StepExecution.execution_id == execution_id)
            .where(StepExecution.status.in_([StepStatus.RUNNING.value, StepStatus.PENDING.value]))
            .values(status=StepStatus.OUTCOME_UNKNOWN.value, finished_at=finished_at)
        ).rowcount


def open_executions(engine: Engine) -> list[RunbookExecution]:
    with session_scope(engine) as session:
        return list(
            session.scalars(
                select(RunbookExecution).where(
                    RunbookExecution.status.not_in([s.value for s in TERMINAL_STATUSES])
                )
            )
        )

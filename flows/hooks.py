"""Prefect state hooks that close the execution row when the flow body could not.

The body closes its own row; these cover endings it never sees: cancellation (the process is
told to stop), a crash, or an exception before the row was closed. Hook parameters are named
exactly `flow, flow_run, state`: the serve process calls hooks by keyword (PREFECT-NOTES.md).
Hooks run outside the run context and their exceptions are swallowed, so they log what they do.
A row a hook closes is also notified (cancelled, crashed), like the endings the body closes.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from config import load_settings
from db.base import utcnow
from db.engine import session_scope
from db.mirror import MirrorWriter, close_open_steps
from db.models import ExecutionStatus, RunbookExecution
from tasks.redaction import Redactor

from . import notifications

logger = logging.getLogger("runbooks.hooks")


def close_for_flow_run(flow_run_id, status: ExecutionStatus, reason: str) -> bool:
    """Close the open execution of this flow run; False if there is none or it was closed."""
    from .execution import open_mirror

    engine = open_mirror()
    with session_scope(engine) as session:
        execution_id = session.scalar(
            select(RunbookExecution.id).where(RunbookExecution.flow_run_id == flow_run_id)
        )
    if execution_id is None:
        return False
    closed = MirrorWriter(engine).finish_execution(execution_id, status, reason)
    if closed:
        close_open_steps(engine, execution_id, utcnow())
        logger.warning("execution %s closed as %s: %s", execution_id, status.value, reason)
        # The run's secrets are unknown here (often another process): the notification says
        # what the mirror holds, redacted when written, and Prefect's state message.
        notifications.notify_run_finished(
            load_settings().notify_urls, engine, execution_id, Redactor()
        )
    return closed


def _message(state) -> str:
    return (getattr(state, "message", None) or getattr(state, "name", "") or "").strip()


def on_cancellation(flow, flow_run, state) -> None:
    close_for_flow_run(flow_run.id, ExecutionStatus.CANCELLED, f"cancelled: {_message(state)}")


def on_crashed(flow, flow_run, state) -> None:
    close_for_flow_run(flow_run.id, ExecutionStatus.CRASHED, f"crashed: {_message(state)}")


def on_failure(flow, flow_run, state) -> None:
    # The body closes its row before failing on purpose; an open row here means it stopped
    # somewhere it did not expect, with its last step's outcome unknown.
    close_for_flow_run(
        flow_run.id, ExecutionStatus.CRASHED, f"flow run failed unexpectedly: {_message(state)}"
    )


def on_completion(flow, flow_run, state) -> None:
    close_for_flow_run(flow_run.id, ExecutionStatus.CRASHED, "completed without closing its row")


HOOKS = {
    "on_completion": [on_completion],
    "on_failure": [on_failure],
    "on_cancellation": [on_cancellation],
    "on_crashed": [on_crashed],
}

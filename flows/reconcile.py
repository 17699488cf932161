"""The reconciler: brings rows of runs that died without a hook to their true terminal state.

Hooks miss endings (PREFECT-NOTES.md): a SIGKILLed run that is not served stays Running in
Prefect forever, and server-side transitions fire no hook. A run proves it is alive by
renewing its lease; an open execution whose lease has expired is dead. Its row is closed
(`crashed`, or `cancelled` if Prefect says so), its in-flight step becomes `outcome_unknown`
(never re-run automatically), and a flow run that Prefect still shows as running is set to
Crashed so the UI agrees.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import Engine, select

from config import load_settings
from db.base import utcnow
from db.engine import session_scope
from db.leases import release_for_executions
from db.mirror import MirrorWriter, close_open_steps, open_executions
from db.models import ExecutionLease, ExecutionStatus
from tasks.redaction import Redactor

from .notifications import notify_run_finished

logger = logging.getLogger("runbooks.reconcile")


@dataclass(frozen=True)
class Reconciled:
    execution_id: str
    runbook: str
    action: str  # "closed as crashed", "still running", ...
    reason: str


def _live_leases(engine: Engine) -> set:
    with session_scope(engine) as session:
        return set(
            session.scalars(
                select(ExecutionLease.execution_id).where(ExecutionLease.expires_at > utcnow())
            )
        )


def _prefect_state(client, flow_run_id):
    """(state type name or None, reachable)."""
    from prefect.exceptions import ObjectNotFound

    try:
        flow_run = client.read_flow_run(flow_run_id)
    except ObjectNotFound:
        return None, True
    except Exception as exc:  # API down: decide nothing about this run now
        logger.warning("Prefect API: cannot read flow run %s: %s", flow_run_id, exc)
        return None, False
    return (flow_run.state.type.value if flow_run.state else None), True


def reconcile(engine: Engine) -> list[Reconciled]:
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    found: list[Reconciled] = []
    settings = load_settings()
    live = _live_leases(engine)
    writer = MirrorWriter(engine)
    with get_client(sync_client=True) as client:
        for execution in open_executions(engine):
            ident, slug = str(execution.id), execution.runbook_slug
            if execution.id in live:
                found.append(Reconciled(ident, slug, "still running", "its lease is renewed"))
                continue
            state, reachable = (None, True)
            if execution.flow_run_id is not None:
                state, reachable = _prefect_state(client, execution.flow_run_id)
            if not reachable:
                found.append(Reconciled(ident, slug, "skipped", "Prefect API unreachable"))
                continue
            status = ExecutionStatus.CANCELLED if state == "CANCELLED" else ExecutionStatus.CRASHED
            reason = "reconciled: the run stopped renewing its lease; Prefect state " + (
                state or "unknown"
            )
            if state in ("RUNNING", "PENDING", "PAUSED", "SCHEDULED", "CANCELLING"):
                try:
                    client.set_flow_run_state(
                        execution.flow_run_id,
                        Crashed(message="runbooks reconcile: the run process is gone"),
                        force=True,
                    )
                    reason += " (set to Crashed)"
                except Exception as exc:
                    logger.warning(
                        "could not mark flow run %s crashed: %s", execution.flow_run_id, exc
                    )
            if writer.finish_execution(execution.id, status, reason):
                unknown = close_open_steps(engine, execution.id, utcnow())
                release_for_executions(engine, [execution.id])
                # Nobody else will tell anyone about a run that died this way.
                notify_run_finished(settings.notify_urls, engine, execution.id, Redactor())
                found.append(
                    Reconciled(
                        ident,
                        slug,
                        f"closed as {status.value}",
                        reason + (f"; {unknown} step(s) outcome_unknown" if unknown else ""),
                    )
                )
    return found

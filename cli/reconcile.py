"""`runbooks reconcile`: close the records of runs that died without telling anyone."""

from __future__ import annotations

from . import context
from .catalog import JsonOption
from .output import console, print_json


def reconcile(as_json: JsonOption = False) -> None:
    """Find executions whose run is gone (SIGKILL, lost host, server-side cancel) and close
    them as crashed or cancelled; their in-flight step becomes outcome_unknown."""
    from flows.reconcile import reconcile as run_reconcile

    results = run_reconcile(context.mirror())
    if as_json:
        print_json([r.__dict__ for r in results])
        return
    for r in results:
        console.print(f"{r.execution_id} {r.runbook}: {r.action} ({r.reason})", markup=False)
    closed = sum(r.action.startswith("closed") for r in results)
    console.print(f"{closed} execution(s) closed, {len(results) - closed} left as they are")

"""`runbooks run`: run a runbook's flow in this process and stream its progress.

Everything that can be refused is refused before Prefect starts: parameters, approval steps
without `--approve`, targets missing from the inventory. The flow runs against
`PREFECT_API_URL` if set, else Prefect's ephemeral server.
"""

from __future__ import annotations

import getpass
import os
import time
from typing import Annotated, Any

import typer

from config import load_settings
from tasks.inventory import Inventory, InventoryError
from tasks.render import ParameterError, parse_assignments, validate_parameters

from . import context
from .catalog import JsonOption
from .output import console, errors, print_json
from .plan import ParamOption


class ProgressPrinter:
    """Turns engine events into one line each on the terminal."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.execution_id: str | None = None
        self.status: str | None = None
        self.error: str | None = None
        self._clock: dict[str, float] = {}

    def __call__(self, event: str, **info: Any) -> None:
        if event == "execution_started":
            self.execution_id = str(info["execution_id"])
            self._say(f"execution {self.execution_id}")
        elif event == "step_started":
            self._clock[info["step"]] = time.monotonic()
            self._say(f"[{info['position']}/{info['total']}] {info['step']}: {info['title']} …")
        elif event == "step_finished":
            took = time.monotonic() - self._clock.get(info["step"], time.monotonic())
            mark = "ok" if info["ok"] else "FAILED"
            self._say(f"      {mark} ({took:.1f}s): {info['detail']}")
        elif event == "awaiting_approval":
            self._say(f"      waiting for approval of {info['step']} in the Prefect UI")
        elif event == "rollback_started":
            self._say(f"rolling back, newest first: {', '.join(info['steps'])}")
        elif event == "rollback_finished":
            mark = "undone" if info["ok"] else "ROLLBACK FAILED"
            self._say(f"      {info['step']}: {mark} ({info['detail']})")
        elif event == "execution_finished":
            self.status = getattr(info["status"], "value", str(info["status"]))
            self.error = info.get("error")

    def _say(self, line: str) -> None:
        if not self.quiet:
            console.print(line, markup=False, highlight=False)


def run(
    slug: Annotated[str, typer.Argument(help="The runbook's slug.")],
    param: ParamOption = None,
    approve: Annotated[
        bool,
        typer.Option("--approve", help="Approve the runbook's approval steps up front (recorded)."),
    ] = False,
    verbose: Annotated[bool, typer.Option(help="Also show Prefect's own log lines.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Run a runbook now, step by step; exit 0 only if it succeeded."""
    document = context.runbook_document(slug)
    runbook = document.model
    try:
        parameters = validate_parameters(runbook, parse_assignments(param or []))
    except ParameterError as exc:
        raise context.CommandError(str(exc)) from None
    needs_approval = [s.id for s in runbook.steps if s.requires_approval]
    if needs_approval and not approve:
        raise context.CommandError(
            f"{slug} stops for approval at {', '.join(needs_approval)}: review "
            f"`runbooks plan {slug}` and rerun with --approve, or start it from the Prefect UI"
        )
    try:
        Inventory.load(load_settings().inventory).resolve(runbook)
    except InventoryError as exc:
        raise context.CommandError(str(exc)) from None
    context.mirror()  # migrate before the flow starts, so errors are about the database

    if not verbose:  # our progress lines instead of Prefect's console log (the API gets all)
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    # The ephemeral server's telemetry writes race on its SQLite file and log "database is
    # locked"; a one-off run has nothing to report anyway.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.engine import build_flow
    from flows.execution import LOCAL_RUN_OPTIONS, LocalRunOptions

    user = getpass.getuser()
    printer = ProgressPrinter(quiet=as_json)
    token = LOCAL_RUN_OPTIONS.set(
        LocalRunOptions(
            pre_approved_by=f"{user} (runbooks run --approve)" if approve else None,
            on_event=printer,
        )
    )
    try:
        state = build_flow(document)(
            parameters=parameters, trigger="cli", triggered_by=user, return_state=True
        )
    finally:
        LOCAL_RUN_OPTIONS.reset(token)
    status = printer.status or ("crashed" if printer.execution_id else "not started")
    error = printer.error or (None if printer.status else (state.message or state.name))
    if as_json:
        print_json({"execution_id": printer.execution_id, "status": status, "error": error})
    else:
        line = f"{slug}: {status}" + (
            f" (execution {printer.execution_id})" if printer.execution_id else ""
        )
        (console if status == "succeeded" else errors).print(line, markup=False)
    if status != "succeeded":
        raise context.CommandError(error or status)

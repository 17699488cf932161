"""The `runbooks` console script and its one error boundary.

Exit codes: 0 success; 1 a failure the user can act on (one line on stderr); 2 bad usage
(typer's own); 3 a bug (one line, traceback with RUNBOOKS_DEBUG=1); 130 interrupted.
"""

from __future__ import annotations

import os
import sys

import typer

from db.sync import SyncRefused
from runbook_catalog import CatalogError

from . import catalog, deployments, history, lab, notes, plan, receiver, reconcile, run, up
from .context import CommandError
from .output import errors

app = typer.Typer(
    name="runbooks",
    help="Operational runbooks as verified Prefect flows, with rollback and an exact record.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # our boundary prints one line; no locals (secrets)
)
app.command()(catalog.validate)
app.command()(catalog.sync)
app.command("list")(catalog.list_runbooks)
app.command()(catalog.show)
app.command()(plan.plan)
app.command()(run.run)
app.command("history")(history.history_command)
app.command("stats")(history.stats_command)
app.command()(reconcile.reconcile)
app.command()(up.up)
app.command()(receiver.receiver)
app.add_typer(notes.app, name="notes")
app.add_typer(deployments.app, name="deployments")
app.add_typer(lab.app, name="lab")


def main() -> None:
    try:
        app(standalone_mode=False)
    except (CommandError, SyncRefused) as exc:
        errors.print(f"error: {exc}", markup=False)
        sys.exit(1)
    except CatalogError as exc:
        for problem in exc.problems:
            errors.print(str(problem), markup=False)
        errors.print(f"error: {len(exc.problems)} problem(s) in the catalog", markup=False)
        sys.exit(1)
    except typer.Abort:
        errors.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        errors.print("interrupted")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # the boundary: a bug, reported in one line
        if os.environ.get("RUNBOOKS_DEBUG"):
            raise
        errors.print(
            f"internal error: {type(exc).__name__}: {exc} (RUNBOOKS_DEBUG=1 shows the traceback)",
            markup=False,
        )
        sys.exit(3)

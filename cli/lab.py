"""`runbooks lab up | down | status`: the local lab of real services (docs/lab.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from . import context
from .catalog import JsonOption
from .output import console, print_json

app = typer.Typer(help="The lab: real services on loopback for trying and proving runbooks.")

OnlyOption = Annotated[
    list[str] | None, typer.Option("--only", help="Only this service (repeatable)")
]


def _lab(only: list[str] | None):
    from lab.lab import Lab
    from lab.layout import LabLayout
    from lab.processes import LabError

    try:
        return Lab(LabLayout.from_settings(context.settings()), only)
    except LabError as exc:
        raise context.CommandError(str(exc)) from None


def _say(line: str) -> None:
    console.print(line, markup=False)


@app.command()
def up(only: OnlyOption = None) -> None:
    """Start the lab's services (installing missing Debian packages) and write its inventory."""
    from lab.processes import LabError

    lab = _lab(only)
    try:
        lab.up(_say)
    except LabError as exc:
        raise context.CommandError(str(exc)) from None
    console.print(
        f"try: RUNBOOKS_INVENTORY={lab.layout.inventory_path} runbooks plan manual-database-backup",
        markup=False,
    )


@app.command()
def down(only: OnlyOption = None) -> None:
    """Stop the lab's services; their data stays in the lab directory."""
    from lab.processes import LabError

    try:
        _lab(only).down(_say)
    except LabError as exc:
        raise context.CommandError(str(exc)) from None


@app.command()
def status(only: OnlyOption = None, as_json: JsonOption = False) -> None:
    """Each service: running or not, and where."""
    rows = _lab(only).status()
    if as_json:
        print_json([{"service": n, "running": r, "detail": d} for n, r, d in rows])
        return
    for name, running, detail in rows:
        console.print(f"{name:10s} {'up  ' if running else 'down'}  {detail}", markup=False)
    if not all(running for _, running, _ in rows):
        raise typer.Exit(1)

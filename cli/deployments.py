"""`runbooks deployments write|check`: prefect.yaml, generated from the catalog."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from config import PROJECT_ROOT

from . import context
from .output import console

app = typer.Typer(
    help="prefect.yaml: one Prefect deployment per runbook, for `prefect deploy --all`.",
    no_args_is_help=True,
)

FileOption = Annotated[
    Path, typer.Option("--file", help="The prefect.yaml to write or check.", dir_okay=False)
]
DEFAULT_FILE = PROJECT_ROOT / "prefect.yaml"


def _expected() -> tuple[str, int]:
    from flows.prefect_yaml import render_catalog  # imports Prefect: only when needed

    loaded = context.catalog()
    return render_catalog(loaded), len(loaded.runbooks)


@app.command()
def write(file: FileOption = DEFAULT_FILE) -> None:
    """Regenerate prefect.yaml from the catalog."""
    text, count = _expected()
    if file.exists() and file.read_text(encoding="utf-8") == text:
        console.print(f"{file.name} is up to date ({count} deployments)")
        return
    file.write_text(text, encoding="utf-8")
    console.print(f"wrote {file} ({count} deployments)")


@app.command()
def check(file: FileOption = DEFAULT_FILE) -> None:
    """Exit 1 when prefect.yaml differs from what `write` would produce, naming what differs."""
    from flows.prefect_yaml import differences

    text, count = _expected()
    if not file.exists():
        raise context.CommandError(f"{file} does not exist; run `runbooks deployments write`")
    found = differences(file.read_text(encoding="utf-8"), text)
    if found is not None:
        raise context.CommandError(
            f"{file.name} is out of date: {found}; run `runbooks deployments write`"
        )
    console.print(f"{file.name} is up to date ({count} deployments)")

"""`runbooks up`: the main job, in the foreground until Ctrl-C."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from . import context
from .output import console


def up(
    host: Annotated[
        str | None, typer.Option(help="Listen address for everything [RUNBOOKS_HOST]")
    ] = None,
    prefect_port: Annotated[
        int | None,
        typer.Option(help="Port of the Prefect server and UI [RUNBOOKS_PREFECT_PORT, 4200]"),
    ] = None,
    receiver_port: Annotated[
        int | None,
        typer.Option(help="Port of the alert receiver [RUNBOOKS_RECEIVER_PORT, 8765]"),
    ] = None,
    no_receiver: Annotated[
        bool, typer.Option("--no-receiver", help="Serve the runbooks without the alert receiver")
    ] = False,
) -> None:
    """Start the Prefect server (SQLite in the data directory, unless PREFECT_API_URL is set),
    serve every runbook as a deployment with its schedules, run the alert receiver and the
    reconciler, and print the URLs. Ctrl-C stops everything."""
    from services.main_job import MainJob, MainJobError, MainJobOptions
    from services.prefect_server import ServerFailed
    from services.receiver_process_handle import ReceiverFailed

    settings = context.settings()
    options = MainJobOptions(
        host=host or settings.host,
        prefect_port=prefect_port or settings.prefect_port,
        receiver_port=receiver_port or settings.receiver_port,
        receiver=not no_receiver,
        external_api_url=os.environ.get("PREFECT_API_URL") or None,
    )
    # The runner's own log lines (run submitted, process exited) are worth seeing here;
    # Prefect's analytics are not (and they lock the server's SQLite file).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

    def say(line: str) -> None:
        console.print(line, markup=False)

    def ready(endpoints) -> None:
        console.print()
        console.print("[bold]runbooks are up[/bold]")
        console.print(f"  Prefect UI        {endpoints.ui_url}", markup=False)
        console.print(f"  Prefect API       {endpoints.api_url}", markup=False)
        if endpoints.receiver_url:
            console.print(
                f"  alert receiver    {endpoints.receiver_url}/alerts/alertmanager "
                "| /alerts/pagerduty | /alerts/generic",
                markup=False,
            )
            console.print(f"  receiver health   {endpoints.receiver_url}/healthz", markup=False)
        console.print(f"  mirror database   {endpoints.mirror_url}", markup=False)
        if endpoints.server_log:
            console.print(f"  server log        {endpoints.server_log}", markup=False)
        console.print(f"  deployments       {len(endpoints.deployments)}", markup=False)
        for schedule in endpoints.schedules:
            console.print(f"  schedule          {schedule}", markup=False)
        console.print("Ctrl-C stops everything.")

    try:
        MainJob(settings, options, say, on_ready=ready).run()
    except (MainJobError, ServerFailed, ReceiverFailed) as exc:
        raise context.CommandError(str(exc)) from None
    console.print("stopped")

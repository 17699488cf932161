"""`runbooks receiver`: the alert receiver alone (the main job, `runbooks up`, runs it too)."""

from __future__ import annotations

import asyncio
import errno
import signal
import socket
from typing import Annotated

import typer

from . import context
from .output import console


def _listen(host: str, port: int) -> socket.socket:
    """Bind before uvicorn starts, so a taken port is one clear line, not a log traceback."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise context.CommandError(
                f"cannot listen on {host}:{port}: the port is in use "
                "(another receiver? choose one with --port or RUNBOOKS_RECEIVER_PORT)"
            ) from None
        raise context.CommandError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def receiver(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default: RUNBOOKS_HOST).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Port (default: RUNBOOKS_RECEIVER_PORT, 8765)."),
    ] = None,
    warm_runs: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=8,
            help="Run processes kept imported for alert runs (default: RUNBOOKS_WARM_RUNS, 1).",
        ),
    ] = None,
) -> None:
    """Run the alert receiver: Alertmanager, Grafana, PagerDuty and signed generic alerts
    start runbook runs on the Prefect server (PREFECT_API_URL). See docs/alerts.md."""
    from prefect.settings import PREFECT_API_URL

    from services.receiver_process import serve_receiver

    settings = context.settings()
    if not PREFECT_API_URL.value():
        raise context.CommandError(
            "PREFECT_API_URL is not set: the receiver creates runs on a running Prefect "
            "server (`runbooks up` starts one)"
        )
    context.mirror().dispose()  # migrated to the newest schema before the first alert
    host = host or settings.host
    port = port or settings.receiver_port
    sock = _listen(host, port)
    configured = {
        "alertmanager": settings.alert_token,
        "pagerduty": settings.pagerduty_secret,
        "generic": settings.alert_hmac_secret,
    }
    shown = ", ".join(
        f"/alerts/{name}" + ("" if secret else " (not configured: answers 401)")
        for name, secret in configured.items()
    )
    console.print(f"alert receiver on http://{host}:{port}: {shown}", markup=False)
    # uvicorn stops gracefully on SIGTERM, then raises the signal again: end with status 0
    # (a requested stop), not killed-by-signal. SIGINT still ends as "interrupted" (130).
    signal.signal(signal.SIGTERM, _stopped)
    warm = settings.warm_runs if warm_runs is None else warm_runs
    asyncio.run(serve_receiver(settings, host, port, sock, warm, _say))


def _say(line: str) -> None:
    console.print(line, markup=False)


def _stopped(_signum: int, _frame: object) -> None:
    raise SystemExit(0)

"""The receiver as the main job runs it: its own process (so neither the runner's event loop
nor the run processes it starts, which run at a lower priority, delay an alert's answer),
with warm run processes for the runs it creates (services/warm_start.py)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

from config import Settings

from .warm_start import WarmStarter


async def serve_receiver(
    settings: Settings,
    host: str,
    port: int,
    sock: socket.socket,
    warm_runs: int,
    say: Callable[[str], None],
) -> None:
    from alerts.enqueue import Enqueuer
    from alerts.server import build_server

    starter = WarmStarter(warm_runs) if warm_runs else None
    if starter is not None:
        starter.start()
        # Ready means ready: the first alert after start-up already finds a warm process.
        started = time.monotonic()
        while starter.ready_count < starter.size and time.monotonic() - started < 60:
            await asyncio.sleep(0.1)
        say(f"{starter.ready_count} warm run process(es) ready")

    def hand_off(run) -> None:
        how = "a warm run process" if starter.hand_off(run.id) else "the runner's next poll"
        say(f"alert run {run.id} ({run.name}): started by {how}")

    enqueuer = Enqueuer(on_enqueued=hand_off if starter else None)
    server = build_server(settings, host, port, enqueuer=enqueuer)
    watcher = asyncio.create_task(starter.watch_cancellations()) if starter else None
    try:
        await server.serve(sockets=[sock])
    finally:
        if watcher is not None:
            watcher.cancel()
        if starter is not None:
            await asyncio.to_thread(starter.stop)

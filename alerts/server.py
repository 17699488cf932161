"""The receiver as a `uvicorn.Server`, for `runbooks receiver` and for the main job.

`build_server(...)` only builds: the caller runs it, `server.run()` in a thread or process of
its own, or `await server.serve()` in its own event loop, and stops it with
`server.should_exit = True`.
"""

from __future__ import annotations

import uvicorn

from config import Settings

from .app import create_app
from .enqueue import Enqueuer


def build_server(
    settings: Settings,
    host: str | None = None,
    port: int | None = None,
    enqueuer: Enqueuer | None = None,
) -> uvicorn.Server:
    """A server for the receiver on `host:port` (default: settings.host, settings.receiver_port)."""
    config = uvicorn.Config(
        create_app(settings, enqueuer),
        host=host or settings.host,
        port=port or settings.receiver_port,
        lifespan="on",
        proxy_headers=False,  # loopback service; a proxy in front must not forge client addresses
        server_header=False,
        timeout_graceful_shutdown=5,
        log_level="info",
    )
    return uvicorn.Server(config)

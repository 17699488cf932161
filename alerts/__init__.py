"""The alert receiver: HTTP endpoints that turn alerts into runbook runs (docs/alerts.md).

`create_app(settings, enqueuer=None)` builds the FastAPI application; `build_server(settings,
host, port, enqueuer=None)` wraps it in a `uvicorn.Server` for a caller's own event loop;
`Enqueuer` creates the flow runs on the Prefect server. One module per concern: `auth`
(who may send), `body` (size cap, JSON), `payloads` (the senders' formats), `intake` (store
and decide), `enqueue` (Prefect), `app` (HTTP), `server` (uvicorn).
"""

from .app import create_app
from .enqueue import EnqueueError, Enqueuer, RunRequest
from .server import build_server

__all__ = ["EnqueueError", "Enqueuer", "RunRequest", "build_server", "create_app"]

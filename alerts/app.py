"""The receiver's HTTP surface: three alert endpoints and a health check.

Each alert endpoint does the same five things in the same order: refuse an unconfigured or
unauthenticated sender (401), read the body under the size cap (413), check a signature over
the raw bytes (401), parse JSON (400) and its shape (422), then store and decide every alert
and answer what was done with each. Handlers take the bare `Request`, so FastAPI reads
nothing before the checks run. 503 means "retry": the mirror or Prefect was unavailable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from config import Settings
from db.engine import make_engine
from runbook_catalog import load_catalog
from runbook_catalog.routes import load_routes

from . import auth
from .body import parse_json, read_body
from .enqueue import Enqueuer
from .errors import Refused
from .intake import AlertIntake
from .payloads import IncomingAlert, parse_alertmanager, parse_generic, parse_pagerduty

logger = logging.getLogger("runbooks.alerts")


def create_app(settings: Settings, enqueuer: Enqueuer | None = None) -> FastAPI:
    """The receiver for `settings`: its catalog's routes (loaded strictly: a broken routes
    file refuses to start), its mirror database (already migrated), and `enqueuer` (default:
    an Enqueuer for PREFECT_API_URL). The app opens the enqueuer's Prefect client when it
    starts and closes it, and the database engine, when it stops."""
    catalog = load_catalog(settings.catalog_dir, strict=True)
    routes = load_routes(catalog, strict=True)
    engine = make_engine(settings.resolved_database_url)
    enqueuer = enqueuer or Enqueuer()
    intake = AlertIntake(
        engine, catalog, routes, enqueuer, answer_within=settings.alert_answer_within_seconds
    )
    limit = settings.alert_max_body_bytes

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await enqueuer.start()
        try:
            yield
        finally:
            await enqueuer.close()
            engine.dispose()

    app = FastAPI(
        title="runbooks alert receiver",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.intake = intake

    @app.exception_handler(Refused)
    async def refused(_: Request, exc: Refused) -> JSONResponse:
        return JSONResponse({"error": exc.reason}, status_code=exc.status, headers=exc.headers)

    async def answer(alerts: list[IncomingAlert]) -> JSONResponse:
        started = time.perf_counter()
        try:
            outcomes = await intake.receive(alerts)
        except SQLAlchemyError as exc:
            logger.error("mirror database unavailable: %s", type(exc).__name__)
            raise Refused(503, "the mirror database is unavailable; retry later") from None
        status = 503 if any(o.retryable for o in outcomes) else 200
        logger.debug(
            "%d alert(s) decided in %.1f ms", len(alerts), (time.perf_counter() - started) * 1e3
        )
        return JSONResponse(
            {"alerts": [o.as_json() for o in outcomes]},
            status_code=status,
            headers={"Retry-After": "30"} if status == 503 else None,
        )

    @app.post("/alerts/alertmanager")
    async def alertmanager(request: Request) -> JSONResponse:
        """Alertmanager webhook v4, or Grafana's webhook contact point (same shape)."""
        auth.require_bearer(request.headers, settings.alert_token)
        body = await read_body(request, limit)
        return await answer(parse_alertmanager(parse_json(body)))

    @app.post("/alerts/pagerduty")
    async def pagerduty(request: Request) -> JSONResponse:
        """PagerDuty v3 webhook subscriptions, signed with the subscription's secret."""
        header = auth.pagerduty_signature_header(request.headers, settings.pagerduty_secret)
        body = await read_body(request, limit)
        auth.verify_pagerduty_signature(header, body, settings.pagerduty_secret)
        alerts = parse_pagerduty(parse_json(body), request.headers.get("x-webhook-id"))
        return await answer(alerts)

    @app.post("/alerts/generic")
    async def generic(request: Request) -> JSONResponse:
        """One alert in our own format, signed over timestamp and body."""
        timestamp, signature = auth.generic_signature_headers(
            request.headers, settings.alert_hmac_secret, time.time()
        )
        body = await read_body(request, limit)
        auth.verify_generic_signature(timestamp, signature, body, settings.alert_hmac_secret)
        return await answer(parse_generic(parse_json(body)))

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """Unauthenticated and says nothing but yes/no: is the mirror there, is Prefect."""
        database = await intake.database_reachable()
        prefect = await enqueuer.is_reachable()
        return JSONResponse(
            {
                "status": "ok" if database and prefect else "degraded",
                "database": database,
                "prefect": prefect,
            }
        )

    return app

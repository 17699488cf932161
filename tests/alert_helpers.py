"""Shared parts of the alert receiver tests: a small catalog with routes, the receiver on a
free loopback port (real uvicorn in a thread), real-shaped payloads of every sender, signing,
and a TCP forwarder that stands in for a Prefect server that goes away and comes back.

Each receiver gets its own runbook slug (a suffix per test), so its deployment, its flow runs
and Prefect's idempotency keys are its own on the shared session Prefect server.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import hmac
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from pydantic import SecretStr
from sqlalchemy import select

from config import Settings
from db import migrate
from db.engine import make_engine, session_scope
from db.models import AlertEvent
from runbook_catalog import load_catalog

from .catalog_factory import write_catalog

TOKEN = "am-token-0123456789abcdef"
PAGERDUTY_SECRET = "pd-secret-fedcba9876543210"
HMAC_SECRET = "generic-secret-5555aaaa"


def probe_runbook(slug: str, **changes: Any) -> dict[str, Any]:
    """A read-only troubleshooting runbook whose parameters cover the types alerts feed."""
    data: dict[str, Any] = {
        "slug": slug,
        "title": "Probe a service",
        "type": "troubleshooting",
        "priority": "medium",
        "version": "1.0",
        "changelog": [{"version": "1.0", "date": "2026-12-04", "changes": ["First version."]}],
        "summary": "Looks at a service on a host; used by the alert receiver tests.",
        "expected_duration": "5m",
        "parameters": {
            "service": {"type": "slug", "description": "The service.", "example": "webapp"},
            "host": {
                "type": "hostname",
                "description": "The host.",
                "default": "localhost",
                "example": "app1.example.com",
            },
            "depth": {
                "type": "integer",
                "min": 1,
                "max": 10,
                "default": 3,
                "description": "How deep to look.",
            },
            "hook": {
                "type": "secret",
                "default": "env:PROBE_HOOK",
                "description": "Where to report, by reference.",
            },
        },
        "steps": [
            {
                "id": "look",
                "title": "Look at the service",
                "changes_state": False,
                "run": {"argv": ["echo", "{{ service }}", "{{ host }}", "{{ depth }}"]},
                "verify": {"output_matches": "."},
            },
            {
                "id": "report",
                "title": "Report",
                "changes_state": False,
                "run": {"script": 'test -n "$RB_HOOK"\n'},
                "verify": {"output_not_matches": "never"},
            },
        ],
    }
    data.update(changes)
    return data


def routes_for(slug: str) -> dict[str, Any]:
    common = {"runbook": slug, "cooldown": "10m", "max_runs": 100, "window": "1h"}
    return {
        "routes": [
            {
                "name": "service-down",
                "description": "A service is down: probe it on its host.",
                "match": {
                    "alertname": "ServiceDown",
                    "sources": ["alertmanager", "grafana"],
                    "labels": {"severity": "critical"},
                },
                "parameters": {
                    "service": {"label": "service"},
                    "host": {"label": "host"},
                    "hook": {"value": "block:probe-hook"},
                },
                **common,
            },
            {
                "name": "disk-full",
                "description": "A disk is full: a small circuit breaker.",
                "match": {"alertname": "DiskFull"},
                "parameters": {"service": {"value": "storage"}, "host": {"label": "host"}},
                **common,
                "cooldown": "1m",
                "max_runs": 2,
            },
            {
                "name": "checkout-latency",
                "description": "A PagerDuty incident about checkout latency.",
                "match": {
                    "alertname": "Checkout latency high",
                    "sources": ["pagerduty"],
                    "labels": {"urgency": "high"},
                    "labels_regex": {"service": "Checkout.*"},
                },
                "parameters": {"service": {"value": "checkout"}, "depth": {"value": 5}},
                **common,
            },
            {
                "name": "queue-backlog",
                "description": "A queue backs up (generic sender).",
                "match": {"alertname": "QueueBacklog", "sources": ["generic"]},
                "parameters": {
                    "service": {"label": "queue"},
                    "depth": {"annotation": "depth", "default": 2},
                },
                **common,
            },
        ]
    }


def write_alert_catalog(root: Path, slug: str) -> Path:
    write_catalog(root, [probe_runbook(slug)])
    (root / "alert-routes.yaml").write_text(yaml.safe_dump(routes_for(slug), sort_keys=False))
    return root


def register_deployment(catalog_root: Path, slug: str) -> uuid.UUID:
    """The runbook's deployment "{slug}/{slug}" on the Prefect server. Nothing serves it, so
    the runs the receiver creates stay Scheduled and can be counted."""
    from flows.engine import build_flow

    catalog = load_catalog(catalog_root, strict=True)
    return build_flow(catalog.runbooks[slug]).to_deployment(name=slug).apply()


def count_runs(deployment_id: uuid.UUID) -> int:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        return client.count_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )


def read_run(flow_run_id: uuid.UUID | str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(uuid.UUID(str(flow_run_id)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_settings(
    catalog: Path,
    database_url: str,
    *,
    token: str | None = TOKEN,
    pagerduty_secret: str | None = PAGERDUTY_SECRET,
    hmac_secret: str | None = HMAC_SECRET,
    max_body: int = 1_048_576,
    answer_within: float = 30.0,
) -> Settings:
    # By default answers wait for Prefect (a test knows each answer's action); the main job's
    # short wait has its own test (test_alert_storm.py).
    return Settings(
        alert_answer_within_seconds=answer_within,
        catalog=catalog,
        database_url=database_url,
        alert_token=SecretStr(token) if token else None,
        pagerduty_secret=SecretStr(pagerduty_secret) if pagerduty_secret else None,
        alert_hmac_secret=SecretStr(hmac_secret) if hmac_secret else None,
        alert_max_body_bytes=max_body,
    )


@dataclass
class Receiver:
    """A running receiver and what a test asks about it."""

    url: str
    database_url: str
    slug: str
    deployment_id: uuid.UUID | None
    server: Any
    thread: threading.Thread
    enqueued: list[Any] = field(default_factory=list)

    def rows(self) -> list[AlertEvent]:
        engine = make_engine(self.database_url)
        try:
            with session_scope(engine) as session:
                return list(session.scalars(select(AlertEvent).order_by(AlertEvent.id)))
        finally:
            engine.dispose()

    def runs(self) -> int:
        assert self.deployment_id is not None
        return count_runs(self.deployment_id)

    def post(self, path: str, content: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", content=content, headers=headers, timeout=30)

    def alertmanager(self, payload: dict[str, Any], token: str = TOKEN) -> httpx.Response:
        return self.post("/alerts/alertmanager", *bearer(payload, token))

    def pagerduty(self, payload: dict[str, Any], delivery_id: str | None = None):
        return self.post("/alerts/pagerduty", *pagerduty_signed(payload, delivery_id))

    def generic(self, payload: dict[str, Any], timestamp: int | None = None):
        return self.post("/alerts/generic", *generic_signed(payload, timestamp))


def migrated(database_url: str) -> str:
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    engine.dispose()
    return database_url


@contextlib.contextmanager
def running_receiver(
    settings: Settings,
    *,
    slug: str,
    deployment_id: uuid.UUID | None,
    api_url: str | None,
    enqueuer: Any = None,
):
    """The receiver under real uvicorn in a thread (its own event loop) on a free port."""
    from alerts import Enqueuer
    from alerts.server import build_server

    enqueued: list[Any] = []
    if enqueuer is None:
        enqueuer = Enqueuer(api_url=api_url, on_enqueued=enqueued.append)
    port = free_port()
    server = build_server(settings, "127.0.0.1", port, enqueuer=enqueuer)
    server.config.access_log = False  # a storm would print a thousand lines
    server.config.configure_logging()
    context = contextvars.copy_context()  # Prefect's settings live in context variables
    thread = threading.Thread(target=context.run, args=(server.run,), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AssertionError("the receiver did not start")
        time.sleep(0.02)
    receiver = Receiver(
        f"http://127.0.0.1:{port}",
        settings.resolved_database_url,
        slug,
        deployment_id,
        server,
        thread,
        enqueued,
    )
    try:
        yield receiver
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@contextlib.contextmanager
def receivers(tmp_path: Path, prefect_api_url: str | None):
    """Starts receivers, each with its own catalog, runbook slug and mirror; stops them all.
    Without a Prefect server nothing is deployed and Prefect is a closed port."""
    with contextlib.ExitStack() as stack:

        def start(database_url: str | None = None, *, api_url: str | None = None, **settings):
            slug = f"probe-{uuid.uuid4().hex[:8]}"
            root = write_alert_catalog(tmp_path / slug, slug)
            deployment_id = register_deployment(root, slug) if prefect_api_url else None
            url = migrated(database_url or f"sqlite:///{tmp_path / slug}.db")
            closed = f"http://127.0.0.1:{free_port()}/api"
            return stack.enter_context(
                running_receiver(
                    make_settings(root, url, **settings),
                    slug=slug,
                    deployment_id=deployment_id,
                    api_url=api_url or prefect_api_url or closed,
                )
            )

        yield start


# --- payloads, as the senders document them ------------------------------------------------


def am_alert(
    alertname: str = "ServiceDown",
    *,
    fingerprint: str | None = None,
    status: str = "firing",
    starts_at: str = "2026-12-04T10:00:00.000Z",
    **labels: str,
) -> dict[str, Any]:
    labels = {"alertname": alertname, "severity": "critical", **labels}
    return {
        "status": status,
        "labels": labels,
        "annotations": {"summary": f"{alertname} on {labels.get('host', '?')}"},
        "startsAt": starts_at,
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-12-04T10:30:00.000Z",
        "generatorURL": "http://prometheus.internal:9090/graph?g0.expr=up%3D%3D0",
        "fingerprint": fingerprint
        or hashlib.sha256(repr(sorted(labels.items())).encode()).hexdigest()[:16],
    }


def alertmanager_payload(*alerts: dict[str, Any]) -> dict[str, Any]:
    """Alertmanager webhook v4, as Alertmanager 0.27 sends it."""
    first = alerts[0]
    return {
        "version": "4",
        "groupKey": '{}:{alertname="' + first["labels"]["alertname"] + '"}',
        "truncatedAlerts": 0,
        "status": first["status"],
        "receiver": "runbooks",
        "groupLabels": {"alertname": first["labels"]["alertname"]},
        "commonLabels": first["labels"],
        "commonAnnotations": first["annotations"],
        "externalURL": "http://alertmanager.internal:9093",
        "alerts": list(alerts),
    }


def grafana_payload(*alerts: dict[str, Any]) -> dict[str, Any]:
    """Grafana's webhook contact point (unified alerting): the same shape and its extras."""
    payload = alertmanager_payload(*alerts)
    payload["version"] = "1"
    payload.update(
        {
            "orgId": 1,
            "title": f"[FIRING:{len(alerts)}] {alerts[0]['labels']['alertname']}",
            "state": "alerting",
            "message": "**Firing**\n\nValue: B=0",
        }
    )
    for alert in payload["alerts"]:
        alert.update(
            {
                "values": {"B": 0, "C": 1},
                "valueString": "[ var='B' labels={} value=0 ]",
                "silenceURL": "http://grafana.internal:3000/alerting/silence/new",
                "dashboardURL": "",
                "panelURL": "",
                "imageURL": "",
            }
        )
    return payload


def pagerduty_payload(
    event_type: str = "incident.triggered",
    *,
    incident_id: str = "PT4KHLK",
    title: str = "Checkout latency high",
    urgency: str = "high",
    service: str = "Checkout API",
    status: str | None = None,
) -> dict[str, Any]:
    """A PagerDuty v3 webhook event (shape of PagerDuty's documented example)."""
    return {
        "event": {
            "id": str(uuid.uuid4()),
            "event_type": event_type,
            "resource_type": "incident",
            "occurred_at": "2026-12-04T10:00:00.000Z",
            "agent": {"id": "PXPGF42", "summary": "Earline Greenholt", "type": "user_reference"},
            "client": {"name": "PagerDuty"},
            "data": {
                "id": incident_id,
                "type": "incident",
                "self": f"https://api.pagerduty.com/incidents/{incident_id}",
                "html_url": f"https://acme.pagerduty.com/incidents/{incident_id}",
                "number": 1234,
                "status": status
                or ("resolved" if event_type == "incident.resolved" else "triggered"),
                "incident_key": "baf7cf21b1da41b4b0221008339ff357",
                "created_at": "2026-12-04T10:00:00.000Z",
                "title": title,
                "service": {
                    "html_url": "https://acme.pagerduty.com/services/PIJ90N7",
                    "id": "PIJ90N7",
                    "self": "https://api.pagerduty.com/services/PIJ90N7",
                    "summary": service,
                    "type": "service_reference",
                },
                "assignees": [{"id": "PXPGF42", "summary": "Earline Greenholt"}],
                "escalation_policy": {"id": "PUS0KTE", "summary": "Default"},
                "teams": [],
                "priority": {"id": "PSO75BM", "summary": "P1", "type": "priority_reference"},
                "urgency": urgency,
                "conference_bridge": None,
                "resolve_reason": None,
            },
        }
    }


def generic_payload(
    alertname: str = "QueueBacklog",
    *,
    key: str = "orders-backlog",
    status: str = "firing",
    **labels,
) -> dict[str, Any]:
    return {
        "alertname": alertname,
        "status": status,
        "key": key,
        "labels": {"queue": "orders", **labels},
        "annotations": {"summary": "orders queue backs up"},
    }


# --- signing ----------------------------------------------------------------------------------


def bearer(payload: dict[str, Any], token: str | None = TOKEN) -> tuple[bytes, dict[str, str]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return json.dumps(payload).encode(), headers


def pagerduty_signed(
    payload: dict[str, Any], delivery_id: str | None = None, secret: str = PAGERDUTY_SECRET
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-PagerDuty-Signature": f"v1={signature}",
        "X-Webhook-Id": delivery_id or str(uuid.uuid4()),
        "X-Webhook-Subscription": "PY1OL64",
    }
    return body, headers


def generic_signed(
    payload: dict[str, Any] | bytes, timestamp: int | None = None, secret: str = HMAC_SECRET
) -> tuple[bytes, dict[str, str]]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return body, {
        "Content-Type": "application/json",
        "X-Runbooks-Timestamp": stamp,
        "X-Runbooks-Signature": f"sha256={digest}",
    }


# --- a Prefect server that goes away and comes back -------------------------------------------


class Forwarder:
    """A TCP forwarder on a fixed loopback port to the real Prefect server. Before `start()`
    (and after `stop()`) the port is closed: to the receiver, Prefect is down."""

    def __init__(self, upstream_url: str):
        parsed = httpx.URL(upstream_url)
        self.upstream = (parsed.host, parsed.port)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}{parsed.path}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        ready = threading.Event()
        connections: set[asyncio.Task] = set()

        async def pipe(reader, writer):
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except ConnectionError:
                pass
            finally:
                writer.close()

        async def handle(client_reader, client_writer):
            connections.add(asyncio.current_task())
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
                await asyncio.gather(
                    pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer)
                )
            finally:
                connections.discard(asyncio.current_task())

        async def main():
            self._stopping = asyncio.Event()
            server = await asyncio.start_server(handle, "127.0.0.1", self.port)
            ready.set()
            await self._stopping.wait()
            server.close()
            for task in list(connections):
                task.cancel()
            await asyncio.gather(*connections, return_exceptions=True)
            await server.wait_closed()

        def run():
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(main())
            self._loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        assert ready.wait(5)

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(timeout=5)

"""Creating (and cancelling) runbook flow runs on the Prefect server for alerts.

The receiver never runs a flow itself: it creates a run of the runbook's deployment
`"{slug}/{slug}"` (flow name = deployment name = runbook slug, the project's convention) and
whatever serves the deployments (`runbooks up`) starts it. One long-lived async Prefect client
serves every request; deployment ids are cached. Every call has a deadline: the Prefect
client retries a lost connection with back-off for up to a minute, and a sender should get a
503 (and retry itself) long before that.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Cancelling

logger = logging.getLogger("runbooks.alerts")

# Called with each new flow run, in the event loop, right after it was created (the main job
# hands the run to a warm process). It must not block; a coroutine it returns is scheduled,
# not awaited, and its failure is only logged: the run exists either way.
OnEnqueued = Callable[[FlowRun], Any]


@dataclass(frozen=True)
class RunRequest:
    runbook: str  # slug: the deployment is "{slug}/{slug}"
    parameters: dict[str, Any]  # the runbook's validated parameters, JSON-ready
    source: str
    alert_name: str | None
    alert_event_id: int
    dedup_key: str

    def idempotency_key(self) -> str:
        """Same alert delivery, same key: if a first attempt created the run but its answer
        was lost, the retry gets that run back instead of a second one."""
        digest = hashlib.sha256(f"{self.source}\0{self.dedup_key}".encode()).hexdigest()
        return f"alert-{self.source}-{digest[:40]}"

    def flow_parameters(self) -> dict[str, Any]:
        return {
            "parameters": self.parameters,
            "trigger": "alert",
            "triggered_by": f"{self.source}:{self.alert_name or '?'}"[:255],
            "alert_event_id": self.alert_event_id,
        }


class EnqueueError(Exception):
    """Prefect did not create (or cancel) the run. `retryable`: a later try may work
    (unreachable, timed out, server error, deployment not there yet), so the sender is told
    503 and retries; otherwise Prefect refused the request itself."""

    def __init__(self, reason: str, *, retryable: bool = True):
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class Enqueuer:
    """Creates flow runs of runbook deployments through one async Prefect client.

    `api_url` overrides PREFECT_API_URL for this client only. `start()` opens the client in
    the running event loop (the receiver's lifespan does this) and `close()` closes it.
    """

    def __init__(
        self,
        *,
        on_enqueued: OnEnqueued | None = None,
        api_url: str | None = None,
        timeout_seconds: float = 10.0,
    ):
        self._on_enqueued = on_enqueued
        self._api_url = api_url
        self.timeout_seconds = timeout_seconds
        self._client: PrefectClient | None = None
        self._deployment_ids: dict[str, UUID] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._probed: tuple[float, bool] = (float("-inf"), False)  # (when, refused)

    @property
    def api_url(self) -> str | None:
        return self._api_url or PREFECT_API_URL.value()

    async def start(self) -> None:
        if self._client is not None:
            return
        if not self.api_url:
            # get_client() would start a throwaway ephemeral server nobody serves runs from
            raise EnqueueError("PREFECT_API_URL is not set: runs need a running Prefect server")
        if self._api_url:
            with temporary_settings(updates={PREFECT_API_URL: self._api_url}):
                client = get_client()
        else:
            client = get_client()
        await client.__aenter__()
        self._client = client

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        client, self._client = self._client, None
        if client is not None:
            await client.__aexit__(None, None, None)

    async def __aenter__(self) -> Enqueuer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def client(self) -> PrefectClient:
        if self._client is None:
            raise EnqueueError("the enqueuer is not started")
        return self._client

    async def enqueue(self, request: RunRequest) -> FlowRun:
        """A new (Scheduled) run of the runbook's deployment, or EnqueueError."""
        async with self._deadline("create the run"):
            deployment_id = await self._deployment_id(request.runbook)
            try:
                flow_run = await self._create(deployment_id, request)
            except httpx.HTTPStatusError as exc:
                if exc.response.status_code != 404:
                    raise
                # the deployment was replaced since its id was cached
                self._deployment_ids.pop(request.runbook, None)
                flow_run = await self._create(await self._deployment_id(request.runbook), request)
        self._announce(flow_run)
        return flow_run

    async def cancel_if_paused(self, flow_run_id: UUID) -> tuple[bool, str]:
        """Cancel the run if it is waiting for approval (Prefect state Paused).
        Returns (cancelled, the state it was found in)."""
        async with self._deadline("cancel the run"):
            flow_run = await self.client.read_flow_run(flow_run_id)
            state = flow_run.state
            if state is None or not state.is_paused():
                return False, state.name if state else "unknown"
            result = await self.client.set_flow_run_state(
                flow_run_id, Cancelling(message="The alert resolved before the run was approved.")
            )
            accepted = result.state is not None and result.state.is_cancelling()
            return accepted, state.name if accepted else f"{state.name} (cancel refused)"

    async def refuses_connections(self) -> bool:
        """True when nothing listens at the API address: Prefect is down, not merely slow.
        A refused connection is immediate; a busy server answers late, or not within this."""
        now = asyncio.get_running_loop().time()
        if now - self._probed[0] < 1.0:  # one probe a second is plenty, even in a storm
            return self._probed[1]
        refused = await self._probe_refused()
        self._probed = (now, refused)
        return refused

    async def _probe_refused(self) -> bool:
        try:
            async with httpx.AsyncClient(timeout=0.1) as probe:
                await probe.get(f"{self.api_url.rstrip('/')}/health")
        except httpx.ConnectError:
            return True
        except httpx.HTTPError:
            return False
        return False

    async def is_reachable(self, timeout: float = 2.0) -> bool:
        if self._client is None:
            return False
        try:
            async with asyncio.timeout(timeout):
                return await self._client.api_healthcheck() is None
        except TimeoutError:
            return False

    async def _deployment_id(self, slug: str) -> UUID:
        cached = self._deployment_ids.get(slug)
        if cached is not None:
            return cached
        try:
            deployment = await self.client.read_deployment_by_name(f"{slug}/{slug}")
        except ObjectNotFound:
            raise EnqueueError(
                f"no deployment '{slug}/{slug}' on the Prefect server (is the catalog served?)"
            ) from None
        self._deployment_ids[slug] = deployment.id
        return deployment.id

    async def _create(self, deployment_id: UUID, request: RunRequest) -> FlowRun:
        return await self.client.create_flow_run_from_deployment(
            deployment_id,
            parameters=request.flow_parameters(),
            idempotency_key=request.idempotency_key(),
            tags=["alert", request.source],
        )

    @contextlib.asynccontextmanager
    async def _deadline(self, what: str):
        """Every Prefect failure becomes one EnqueueError line (no bodies, no URLs with
        credentials)."""
        try:
            async with asyncio.timeout(self.timeout_seconds):
                yield
        except EnqueueError:
            raise
        except TimeoutError:
            raise EnqueueError(
                f"Prefect did not answer within {self.timeout_seconds:g}s ({what})"
            ) from None
        except httpx.HTTPStatusError as exc:
            code = exc.response.status_code
            detail = _detail(exc.response)
            raise EnqueueError(
                f"Prefect answered HTTP {code} ({what}){': ' + detail if detail else ''}",
                retryable=code >= 500 or code in (404, 408, 429),
            ) from None
        except (httpx.TransportError, OSError) as exc:
            raise EnqueueError(
                f"Prefect API unreachable ({what}): {type(exc).__name__}: {exc}"[:300]
            ) from None

    def _announce(self, flow_run: FlowRun) -> None:
        if self._on_enqueued is None:
            return
        try:
            result = self._on_enqueued(flow_run)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._background.add(task)
                task.add_done_callback(self._background_done)
        except Exception:
            logger.exception("on_enqueued failed for flow run %s", flow_run.id)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("on_enqueued failed: %r", task.exception())


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except Exception:
        return ""
    return str(detail)[:200] if detail else ""

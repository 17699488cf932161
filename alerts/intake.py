"""Store every alert first, then decide what it does, then record the decision.

Per alert: (1) a row in `alert_events`, committed, action `received`, before anything else
can fail, so every delivery leaves evidence; (2) the decision; (3) the row updated with the
action, its reason, the route and the flow run.

Firing alerts, in this order: no route matches -> `ignored`; a label or annotation the runbook's
parameter model refuses -> `rejected`; this delivery (dedup key) already started a run ->
`deduplicated`; the route started a run for this alert (group key) within its cooldown ->
`deduplicated`; the route started `max_runs` runs within its window -> `rejected` (circuit
open); otherwise a flow run is created -> `triggered`, or `failed` when Prefect cannot be
reached (the sender is answered 503 and retries; only `triggered` rows count as runs, so the
retry can still start one). A resolved alert never starts a run: a run it started that still
waits for approval (Prefect state Paused) is cancelled -> `cancelled_run`, else `ignored`.

"Did this already start a run?" and "start it and record it" must be one step, or concurrent
deliveries of one alert start several runs: they run under an asyncio.Lock per route. The lock
lives in this process, so one receiver serves one mirror database. The database work is
synchronous SQLAlchemy in worker threads, at most `db_threads` at a time (fewer than the
connection pool holds), so the event loop never waits on the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import anyio
import anyio.to_thread
from sqlalchemy import Engine, func, select, update

from db.base import utcnow
from db.engine import session_scope
from db.models import AlertAction, AlertEvent
from runbook_catalog.durations import format_duration
from runbook_catalog.loader import Catalog
from runbook_catalog.routes import AlertRoute, RouteTable
from tasks.render import ParameterError, validate_parameters

from .enqueue import EnqueueError, Enqueuer, RunRequest
from .keyed_lock import KeyedLock
from .payloads import IncomingAlert

logger = logging.getLogger("runbooks.alerts")

REASON_LIMIT = 500
CONCURRENT_CREATES = 4
# How long an answer waits for Prefect to create a run before it goes out without the run's
# id; the creation goes on, and is retried after these delays if Prefect fails meanwhile.
ANSWER_WITHIN_SECONDS = 0.1
DETACHED_RETRY_DELAYS = (1, 2, 5, 10, 30, 60, 120)
STARTED_MEMORY = 10_000
_PARAMETER_NAME = re.compile(r"parameter (\w+):")
T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    """What was done with one alert: the answer to the sender and the row's final state."""

    event_id: int
    action: AlertAction
    reason: str | None
    flow_run_id: UUID | None = None
    retryable: bool = False  # failed in a way a retry of the delivery may fix

    def as_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "action": self.action.value,
            "reason": self.reason,
            "flow_run_id": str(self.flow_run_id) if self.flow_run_id else None,
        }


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def runbook_flow_parameters(parameters: Any) -> dict[str, Any]:
    """The validated parameters as the flow run receives them. model_dump(mode="json") masks
    SecretStr, but a secret parameter holds a reference (env:NAME, block:NAME), not a secret,
    and the run must receive the reference itself."""
    dumped = parameters.model_dump(mode="json")
    for name, value in parameters:
        if hasattr(value, "get_secret_value"):
            dumped[name] = value.get_secret_value()
    return dumped


class AlertIntake:
    def __init__(
        self,
        engine: Engine,
        catalog: Catalog,
        routes: RouteTable,
        enqueuer: Enqueuer,
        *,
        db_threads: int = 8,
        answer_within: float = ANSWER_WITHIN_SECONDS,
    ):
        self.engine = engine
        self.catalog = catalog
        self.routes = routes
        self.enqueuer = enqueuer
        self._db_threads = db_threads
        self._limiters: dict[str, anyio.CapacityLimiter] = {}
        is_sqlite = engine.dialect.name == "sqlite"
        self._writer = threading.Lock() if is_sqlite else contextlib.nullcontext()
        # Deliveries of one alert group on one route are decided one at a time (dedup and
        # cooldown); different alerts go on in parallel, so a slow Prefect call for one alert
        # never holds up the others. The circuit breaker counts per route: its check and a
        # reservation of the run are one short step under the route's lock.
        self._group_locks = KeyedLock()
        self._route_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._reserved: Counter[str] = Counter()  # runs being created now, per route
        # Prefect writes each new run in its own transaction; a few at a time keep every call
        # well inside the enqueuer's deadline when a storm brings many new alerts at once.
        self._creating = asyncio.Semaphore(CONCURRENT_CREATES)
        # (source, dedup key) -> (event id, flow run id) of the deliveries that started a run
        # here, newest last: a memory of the `triggered` rows this process wrote.
        self._started: dict[tuple[str, str], tuple[int, UUID]] = {}
        # Runs being created now, by delivery and by (route, alert group): their repeats are
        # answered from here, not started again, even after the first answer went out.
        self._starting: dict[tuple[str, str], tuple[int, asyncio.Task[Outcome]]] = {}
        self._starting_groups: dict[tuple[str, str], tuple[int, asyncio.Task[Outcome]]] = {}
        self.answer_within = answer_within

    async def receive(self, alerts: list[IncomingAlert]) -> list[Outcome]:
        """Store every alert of one delivery, then decide each in turn."""
        event_ids = await self._db(self._store_received, alerts)
        return [
            await self._decide(event_id, alert)
            for event_id, alert in zip(event_ids, alerts, strict=True)
        ]

    async def database_reachable(self) -> bool:
        def probe() -> bool:
            with self.engine.connect() as connection:
                connection.execute(select(1))
            return True

        try:
            with anyio.fail_after(2):
                return await self._db(probe)
        except Exception:
            return False

    async def _db(self, function: Callable[..., T], *args: Any, locked: bool = False) -> T:
        """Run database work in a worker thread. Work done while a route's lock is held gets
        threads of its own: queued behind a storm's inserts it would hold the lock (and every
        other delivery of the route) for as long as they take."""
        kind = "locked" if locked else "open"
        limiter = self._limiters.get(kind)
        if limiter is None:  # created in the running event loop
            limiter = self._limiters[kind] = anyio.CapacityLimiter(
                max(2, self._db_threads // 2) if locked else self._db_threads
            )
        return await anyio.to_thread.run_sync(self._serialized, function, args, limiter=limiter)

    def _serialized(self, function: Callable[..., T], args: tuple[Any, ...]) -> T:
        # SQLite has one writer at a time; a second one sleeps in its busy handler (1 ms, then
        # 2, 5, 10, ... up to 100 ms per retry). Queuing on a lock here is far cheaper.
        with self._writer:
            return function(*args)

    async def _decide(self, event_id: int, alert: IncomingAlert) -> Outcome:
        if alert.inert_reason:
            return await self._finish(event_id, AlertAction.IGNORED, alert.inert_reason)
        route = self.routes.match(alert.source, alert.alert_name, alert.labels)
        if alert.status == "resolved":
            return await self._resolve(event_id, alert, route)
        if route is None:
            return await self._finish(event_id, AlertAction.IGNORED, "no route matches")
        try:
            parameters = self._parameters(route, alert)
        except ParameterError as exc:
            return await self._finish(event_id, AlertAction.REJECTED, str(exc), route=route.name)
        # A repeat of a delivery that started a run here is answered without the lock: in a
        # storm of repeats only the first delivery of each alert waits for its turn.
        key, group = (alert.source, alert.dedup_key), (route.name, alert.group_key)
        known = self._started.get(key)
        if known is not None:
            return await self._duplicate(event_id, route, *known)
        if key in self._starting:
            return await self._duplicate_of_starting(event_id, route, *self._starting[key])
        async with self._group_locks(group):
            known = self._started.get(key)
            if known is not None:
                return await self._duplicate(event_id, route, *known, locked=True)
            if key in self._starting or group in self._starting_groups:
                first = self._starting.get(key) or self._starting_groups[group]
                return await self._duplicate_of_starting(event_id, route, *first)
            async with self._route_locks[route.name]:
                verdict = await self._db(
                    self._check_firing,
                    event_id,
                    alert,
                    route,
                    utcnow(),
                    self._reserved[route.name],
                    locked=True,
                )
                if verdict is not None:
                    return verdict
                self._reserved[route.name] += 1
            answered = asyncio.Event()
            task = asyncio.create_task(
                self._start_run(event_id, alert, route, parameters, answered)
            )
            self._starting[key] = self._starting_groups[group] = (event_id, task)
            task.add_done_callback(lambda _: self._started_or_given_up(key, group, route.name))
            # Wait for Prefect, but not for long: a Prefect server slowed down by the runs it
            # serves must not slow down the answer. The run's creation goes on without us.
            done, _ = await asyncio.wait({task}, timeout=self.answer_within)
            if task not in done and await self.enqueuer.refuses_connections():
                # Down, not slow: wait for the failure, so the sender hears 503 and retries.
                done, _ = await asyncio.wait({task})
            if task in done:
                return task.result()
            answered.set()
            return Outcome(
                event_id,
                AlertAction.RECEIVED,
                f"route {route.name} is starting a {route.runbook} run; Prefect is slow to "
                "answer, so the run's id will be in this event's row",
            )

    def _started_or_given_up(self, key: tuple[str, str], group: tuple[str, str], route: str):
        self._starting.pop(key, None)
        self._starting_groups.pop(group, None)
        self._reserved[route] -= 1

    async def _duplicate_of_starting(
        self, event_id: int, route: AlertRoute, first_event: int, task: asyncio.Task[Outcome]
    ) -> Outcome:
        """A repeat of an alert whose run is being created: the same answer if Prefect answers
        in time, else a deduplication naming the first delivery's event."""
        await asyncio.wait({task}, timeout=self.answer_within)  # never cancels the task
        first = task.result() if task.done() and not task.cancelled() else None
        if first is not None and first.action == AlertAction.TRIGGERED:
            return await self._duplicate(event_id, route, first_event, first.flow_run_id)
        if first is not None:  # the first delivery failed to start it: this one may not either
            return await self._finish(
                event_id, first.action, first.reason or "", route=route.name,
                retryable=first.retryable,
            )  # fmt: skip
        return await self._finish(
            event_id,
            AlertAction.DEDUPLICATED,
            f"the run of this alert is being started by event {first_event}",
            route=route.name,
        )

    async def _start_run(
        self,
        event_id: int,
        alert: IncomingAlert,
        route: AlertRoute,
        parameters: dict[str, Any],
        answered: asyncio.Event,
    ) -> Outcome:
        """Create the run and record it `triggered` (which the breaker then counts). Once the
        sender has its answer, nobody else will retry: a failure that may pass is retried here,
        with back-off, for a few minutes before the event is recorded `failed`."""
        request = RunRequest(
            runbook=route.runbook,
            parameters=parameters,
            source=alert.source,
            alert_name=alert.alert_name,
            alert_event_id=event_id,
            dedup_key=alert.dedup_key,
        )
        delays = iter(DETACHED_RETRY_DELAYS)
        while True:
            try:
                async with self._creating:
                    flow_run = await self.enqueuer.enqueue(request)
                break
            except EnqueueError as exc:
                delay = next(delays, None) if answered.is_set() and exc.retryable else None
                if delay is None:
                    return await self._give_up(event_id, route, exc)
                logger.warning("alert event %s: %s; retrying in %s s", event_id, exc, delay)
                await asyncio.sleep(delay)
        self._remember(alert, event_id, flow_run.id)
        return await self._finish(
            event_id,
            AlertAction.TRIGGERED,
            f"route {route.name} started {route.runbook} run {flow_run.name}",
            route=route.name,
            flow_run_id=flow_run.id,
            locked=True,
        )

    async def _give_up(self, event_id: int, route: AlertRoute, exc: EnqueueError) -> Outcome:
        return await self._finish(
            event_id,
            AlertAction.FAILED,
            exc.reason,
            route=route.name,
            retryable=exc.retryable,
            locked=True,
        )

    def _remember(self, alert: IncomingAlert, event_id: int, flow_run_id: UUID) -> None:
        self._started[(alert.source, alert.dedup_key)] = (event_id, flow_run_id)
        while len(self._started) > STARTED_MEMORY:
            self._started.pop(next(iter(self._started)))  # the oldest; the database still knows

    async def _duplicate(
        self, event_id: int, route: AlertRoute, first_event: int, flow_run_id: UUID, **kw: Any
    ) -> Outcome:
        return await self._finish(
            event_id,
            AlertAction.DEDUPLICATED,
            f"this delivery already started run {flow_run_id} (event {first_event})",
            route=route.name,
            flow_run_id=flow_run_id,
            **kw,
        )

    def _parameters(self, route: AlertRoute, alert: IncomingAlert) -> dict[str, Any]:
        """The runbook's parameters from the alert, through the runbook's own model: a hostile
        label is refused exactly like a hostile value on the command line."""
        runbook = self.catalog.runbooks[route.runbook].model
        values, origins = route.parameter_values(alert.labels, alert.annotations)
        try:
            return runbook_flow_parameters(validate_parameters(runbook, values))
        except ParameterError as exc:
            found = _PARAMETER_NAME.match(str(exc))
            origin = origins.get(found.group(1)) if found else None
            where = f" (from {origin})" if origin else ""
            raise ParameterError(f"route {route.name}: {exc}{where}") from None

    async def _resolve(
        self, event_id: int, alert: IncomingAlert, route: AlertRoute | None
    ) -> Outcome:
        async with self._group_locks((route.name if route else None, alert.group_key)):
            runs = await self._db(self._runs_of_group, alert.source, alert.group_key, locked=True)
            if not runs:
                return await self._finish(
                    event_id,
                    AlertAction.IGNORED,
                    "resolved: no run was started for this alert",
                    locked=True,
                )
            found: list[str] = []
            try:
                for run_route, flow_run_id in runs:
                    cancelled, state = await self.enqueuer.cancel_if_paused(flow_run_id)
                    if cancelled:
                        return await self._finish(
                            event_id,
                            AlertAction.CANCELLED_RUN,
                            f"resolved: cancelled run {flow_run_id}, which was waiting for "
                            "approval",
                            route=run_route,
                            flow_run_id=flow_run_id,
                            locked=True,
                        )
                    found.append(f"{flow_run_id} is {state}")
            except EnqueueError as exc:
                return await self._finish(
                    event_id, AlertAction.FAILED, exc.reason, retryable=exc.retryable, locked=True
                )
            return await self._finish(
                event_id,
                AlertAction.IGNORED,
                f"resolved: no run of this alert waits for approval (run {', '.join(found)})",
                locked=True,
            )

    async def _finish(
        self,
        event_id: int,
        action: AlertAction,
        reason: str,
        *,
        route: str | None = None,
        flow_run_id: UUID | None = None,
        retryable: bool = False,
        locked: bool = False,
    ) -> Outcome:
        outcome = Outcome(event_id, action, reason[:REASON_LIMIT], flow_run_id, retryable)
        await self._db(self._record, outcome, route, locked=locked)
        return outcome

    # --- database work, in worker threads ---------------------------------------------------

    def _store_received(self, alerts: list[IncomingAlert]) -> list[int]:
        with session_scope(self.engine) as session:
            rows = [
                AlertEvent(
                    source=alert.source,
                    dedup_key=alert.dedup_key[:255],
                    group_key=alert.group_key[:255],
                    alert_name=alert.alert_name[:255] if alert.alert_name else None,
                    status=alert.status,
                    labels=alert.labels,
                    annotations=alert.annotations,
                    action=AlertAction.RECEIVED.value,
                )
                for alert in alerts
            ]
            session.add_all(rows)
            session.flush()
            return [row.id for row in rows]

    def _record(self, outcome: Outcome, route: str | None) -> None:
        with session_scope(self.engine) as session:
            self._write(session, outcome, route)
        logger.info(
            "alert event %s: %s (%s)", outcome.event_id, outcome.action.value, outcome.reason
        )

    @staticmethod
    def _write(session: Any, outcome: Outcome, route: str | None) -> None:
        session.execute(
            update(AlertEvent)
            .where(AlertEvent.id == outcome.event_id)
            .values(
                action=outcome.action.value,
                reason=outcome.reason,
                route=route,
                flow_run_id=outcome.flow_run_id,
            )
        )

    def _check_firing(
        self,
        event_id: int,
        alert: IncomingAlert,
        route: AlertRoute,
        now: datetime,
        reserved: int = 0,
    ) -> Outcome | None:
        """Deduplicated or circuit open (recorded in the same transaction), or None: start it."""
        triggered = AlertEvent.action == AlertAction.TRIGGERED.value
        with session_scope(self.engine) as session:
            outcome = None
            earlier = session.execute(
                select(AlertEvent.id, AlertEvent.flow_run_id)
                .where(
                    AlertEvent.source == alert.source,
                    AlertEvent.dedup_key == alert.dedup_key[:255],
                    triggered,
                )
                .limit(1)
            ).first()
            if earlier is not None:
                outcome = Outcome(
                    event_id,
                    AlertAction.DEDUPLICATED,
                    f"this delivery already started run {earlier.flow_run_id} (event {earlier.id})",
                    earlier.flow_run_id,
                )
            if outcome is None:
                recent = session.execute(
                    select(AlertEvent.received_at, AlertEvent.flow_run_id)
                    .where(
                        AlertEvent.route == route.name,
                        AlertEvent.group_key == alert.group_key[:255],
                        triggered,
                        AlertEvent.received_at >= now - timedelta(seconds=route.cooldown),
                    )
                    .order_by(AlertEvent.received_at.desc())
                    .limit(1)
                ).first()
                if recent is not None:
                    until = recent.received_at + timedelta(seconds=route.cooldown)
                    outcome = Outcome(
                        event_id,
                        AlertAction.DEDUPLICATED,
                        f"cooldown: route {route.name} started run {recent.flow_run_id} for "
                        f"this alert at {_when(recent.received_at)}; no new run before "
                        f"{_when(until)}",
                        recent.flow_run_id,
                    )
            if outcome is None:
                count, oldest = session.execute(
                    select(func.count(), func.min(AlertEvent.received_at)).where(
                        AlertEvent.route == route.name,
                        triggered,
                        AlertEvent.received_at >= now - timedelta(seconds=route.window),
                    )
                ).one()
                if count + reserved >= route.max_runs:
                    closes = _aware(oldest) + timedelta(seconds=route.window)
                    outcome = Outcome(
                        event_id,
                        AlertAction.REJECTED,
                        f"circuit open: route {route.name} started {count} runs in the last "
                        f"{format_duration(route.window)} (max_runs {route.max_runs}); "
                        f"it closes at {_when(closes)}",
                    )
            if outcome is not None:
                self._write(session, outcome, route.name)
        if outcome is not None:
            logger.info("alert event %s: %s (%s)", event_id, outcome.action.value, outcome.reason)
        return outcome

    def _runs_of_group(self, source: str, group_key: str) -> list[tuple[str | None, UUID]]:
        with session_scope(self.engine) as session:
            rows = session.execute(
                select(AlertEvent.route, AlertEvent.flow_run_id)
                .where(
                    AlertEvent.source == source,
                    AlertEvent.group_key == group_key[:255],
                    AlertEvent.action == AlertAction.TRIGGERED.value,
                    AlertEvent.flow_run_id.is_not(None),
                )
                .order_by(AlertEvent.id.desc())
                .limit(5)
            ).all()
        return [(row.route, row.flow_run_id) for row in rows]


def _aware(moment: datetime) -> datetime:
    """func.min() bypasses the column type, so SQLite hands back naive UTC (or text)."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment if moment.tzinfo else moment.replace(tzinfo=utcnow().tzinfo)

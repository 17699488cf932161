"""Leases: one active execution per runbook and target, held in the database.

`acquire` inserts the lease row (the primary key makes a second holder fail) after clearing an
expired one; `LeaseKeeper` renews it from a daemon thread at a third of its time to live and
releases it when the run ends. A holder that dies stops renewing and its lease expires, so a
crash never blocks the runbook for longer than the TTL.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import timedelta

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import IntegrityError

from .base import utcnow
from .engine import session_scope
from .models import ExecutionLease, RunbookExecution

DEFAULT_TTL_SECONDS = 60.0
logger = logging.getLogger("runbooks.leases")


class LeaseHeld(Exception):
    """Another execution holds the lease; the message names it."""


def lease_key(runbook_slug: str, target: str) -> str:
    return f"{runbook_slug}|{target}"


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def acquire(
    engine: Engine,
    runbook_slug: str,
    target: str,
    execution_id: uuid.UUID,
    ttl: float = DEFAULT_TTL_SECONDS,
) -> None:
    key, now = lease_key(runbook_slug, target), utcnow()
    try:
        with session_scope(engine) as session:
            session.execute(
                delete(ExecutionLease).where(
                    ExecutionLease.key == key, ExecutionLease.expires_at < now
                )
            )
            session.add(
                ExecutionLease(
                    key=key,
                    runbook_slug=runbook_slug,
                    target=target,
                    execution_id=execution_id,
                    holder=holder_name(),
                    acquired_at=now,
                    expires_at=now + timedelta(seconds=ttl),
                )
            )
    except IntegrityError:
        raise LeaseHeld(_describe_holder(engine, key, runbook_slug, target)) from None


def _describe_holder(engine: Engine, key: str, runbook_slug: str, target: str) -> str:
    with session_scope(engine) as session:
        lease = session.get(ExecutionLease, key)
        if lease is None:  # released in between: say so rather than guess
            return f"{runbook_slug} on {target} was busy a moment ago; try again"
        started = session.scalar(
            select(RunbookExecution.started_at).where(RunbookExecution.id == lease.execution_id)
        )
    since = f" since {started:%Y-%m-%d %H:%M:%S} UTC" if started else ""
    return (
        f"{runbook_slug} is already running on {target}: execution {lease.execution_id}"
        f"{since} (held by {lease.holder}, lease until {lease.expires_at:%H:%M:%S} UTC)"
    )


def renew(engine: Engine, key: str, execution_id: uuid.UUID, ttl: float) -> bool:
    """Extend the lease; False if it is no longer ours (expired and taken, or released)."""
    with session_scope(engine) as session:
        updated = session.execute(
            update(ExecutionLease)
            .where(ExecutionLease.key == key, ExecutionLease.execution_id == execution_id)
            .values(expires_at=utcnow() + timedelta(seconds=ttl))
        ).rowcount
    return updated == 1


def release(engine: Engine, key: str, execution_id: uuid.UUID) -> None:
    with session_scope(engine) as session:
        session.execute(
            delete(ExecutionLease).where(
                ExecutionLease.key == key, ExecutionLease.execution_id == execution_id
            )
        )


def release_for_executions(engine: Engine, execution_ids: list[uuid.UUID]) -> None:
    """For the reconciler: drop the leases of executions it has found dead."""
    with session_scope(engine) as session:
        session.execute(
            delete(ExecutionLease).where(ExecutionLease.execution_id.in_(execution_ids))
        )


class LeaseKeeper:
    """Holds a lease for the duration of a `with` block, renewing it in the background."""

    def __init__(
        self,
        engine: Engine,
        runbook_slug: str,
        target: str,
        execution_id: uuid.UUID,
        ttl: float = DEFAULT_TTL_SECONDS,
    ):
        self.engine, self.execution_id, self.ttl = engine, execution_id, ttl
        self.runbook_slug, self.target = runbook_slug, target
        self.key = lease_key(runbook_slug, target)
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, name="lease-renewal", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        acquire(self.engine, self.runbook_slug, self.target, self.execution_id, self.ttl)
        self._thread.start()
        return self

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                if not renew(self.engine, self.key, self.execution_id, self.ttl):
                    self.lost = True
                    return
            except Exception as exc:  # a database hiccup: try again at the next interval
                logger.warning("renewing lease %s failed, will retry: %s", self.key, exc)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        release(self.engine, self.key, self.execution_id)

"""`runbooks up`: the main job.

Start order: refuse taken ports; start the Prefect server (SQLite in the data directory) unless
PREFECT_API_URL names one; migrate and sync the mirror; serve one deployment per active runbook
(schedules included) from a Prefect runner that polls every `runner_poll_seconds`; run the
alert receiver and the reconciler in the same event loop; print the URLs.

Ctrl-C (or SIGTERM) stops in reverse: the receiver stops taking alerts, the runner stops (runs
in flight are cancelled and recorded as such, schedules are paused so nothing piles up while
nobody serves them), then the server. Serving again un-pauses the schedules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from config import PROJECT_ROOT, Settings, load_settings

from .ports import ensure_port_free
from .prefect_server import PrefectServer, is_healthy
from .receiver_process_handle import ReceiverProcess
from .warm_start import RUN_NICENESS

logger = logging.getLogger("runbooks.up")


class MainJobError(Exception):
    """A reason the main job cannot start, in one line."""


@dataclass
class Endpoints:
    ui_url: str
    api_url: str
    receiver_url: str | None
    mirror_url: str
    server_log: str | None
    deployments: list[str] = field(default_factory=list)
    schedules: list[str] = field(default_factory=list)


@dataclass
class MainJobOptions:
    host: str
    prefect_port: int
    receiver_port: int
    receiver: bool = True
    external_api_url: str | None = None  # PREFECT_API_URL when the user set it


def _anchor_paths() -> None:
    """Run processes start in the project root (deployment entrypoints are relative to it), so
    paths the user gave relative to where they typed the command are made absolute first."""
    for name in ("RUNBOOKS_CATALOG", "RUNBOOKS_DATA_DIR", "RUNBOOKS_INVENTORY"):
        value = os.environ.get(name)
        if value:
            os.environ[name] = str(Path(value).expanduser().resolve())
    os.chdir(PROJECT_ROOT)


async def in_daemon_thread(function, *args):
    """`asyncio.to_thread` for work that may outlive its caller: the default executor's
    threads are joined at interpreter exit, so a reconcile round still retrying a Prefect
    server that has just stopped would hold up the exit of Ctrl-C for a minute."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def work() -> None:
        try:
            result = function(*args)
        except BaseException as exc:  # handed to the awaiting task
            loop.call_soon_threadsafe(_settle, future, None, exc)
        else:
            loop.call_soon_threadsafe(_settle, future, result, None)

    threading.Thread(target=work, name=f"runbooks-{function.__name__}", daemon=True).start()
    return await future


def _settle(future: asyncio.Future, result, error: BaseException | None) -> None:
    if future.done():  # the awaiting task was cancelled meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _flush_prefect_logs() -> None:
    with contextlib.suppress(Exception):
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=5)


class MainJob:
    def __init__(
        self,
        settings: Settings,
        options: MainJobOptions,
        say: Callable[[str], None],
        on_ready: Callable[[Endpoints], None] | None = None,
    ):
        self.settings, self.options, self.say = settings, options, say
        self.on_ready = on_ready
        self.server: PrefectServer | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- lifecycle ----------------------------------------------------------------------

    def run(self) -> None:
        """Blocks until stopped (Ctrl-C or SIGTERM)."""
        self._check_ports()
        _anchor_paths()
        self.settings = load_settings()  # again, with the anchored paths
        api_url = self._start_prefect()
        try:
            os.environ["PREFECT_API_URL"] = api_url  # run processes the runner starts inherit it
            from prefect.settings import PREFECT_API_URL, temporary_settings

            with temporary_settings(updates={PREFECT_API_URL: api_url}):
                asyncio.run(self._serve(api_url))
        finally:
            _flush_prefect_logs()  # the runner's last lines, while the server still listens
            if self.server is not None:
                self.say("stopping the Prefect server")
                self.server.stop()

    # ---- start-up pieces ----------------------------------------------------------------

    def _check_ports(self) -> None:
        from .ports import PortTaken

        checks = []
        if self.options.external_api_url is None:
            checks.append((self.options.prefect_port, "Prefect server", "--prefect-port"))
        if self.options.receiver:
            checks.append((self.options.receiver_port, "alert receiver", "--receiver-port"))
        try:
            for port, what, flag in checks:
                ensure_port_free(self.options.host, port, what, flag)
        except PortTaken as exc:
            raise MainJobError(str(exc)) from None

    def _start_prefect(self) -> str:
        if self.options.external_api_url:
            api_url = self.options.external_api_url.rstrip("/")
            self.say(f"using the Prefect server at {api_url} (PREFECT_API_URL)")
            if not is_healthy(api_url, timeout=5):
                raise MainJobError(f"the Prefect server at {api_url} does not answer /health")
            return api_url
        self.server = PrefectServer(
            self.options.host, self.options.prefect_port, self.settings.data_dir / "prefect"
        )
        self.say(
            f"starting the Prefect server on {self.server.url} "
            f"(database {self.server.database_path})"
        )
        self.server.start()
        took = self.server.wait_ready(
            progress=lambda s: self.say(f"  waiting for the Prefect server ({s:.0f} s)")
        )
        self.say(f"  the Prefect server is ready ({took:.1f} s)")
        return self.server.api_url

    def _prepare_mirror(self):
        from db import migrate
        from db.engine import make_engine
        from db.sync import sync_catalog
        from runbook_catalog import load_catalog

        catalog = load_catalog(self.settings.catalog_dir, strict=True)
        engine = make_engine(self.settings.resolved_database_url)
        migrate.upgrade(engine)
        report = sync_catalog(engine, catalog)
        self.say(
            f"mirror synced: {len(catalog.runbooks)} runbooks ({len(report.created)} new, "
            f"{len(report.updated)} updated, {len(report.unchanged)} unchanged)"
        )
        return catalog, engine

    # ---- the served part ----------------------------------------------------------------

    async def _serve(self, api_url: str) -> None:
        from prefect.runner import Runner

        from flows.deployments import deployment_specs, mirror_pinned_notes, runner_deployments

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        catalog, engine = await asyncio.to_thread(self._prepare_mirror)

        self.say("building the runbook flows")
        from flows.runbooks import FLOWS

        pinned = await asyncio.to_thread(mirror_pinned_notes, engine)
        specs = deployment_specs(catalog, pinned)
        runner = Runner(
            name="runbooks-up",
            query_seconds=self.settings.runner_poll_seconds,
            pause_on_shutdown=True,
            limit=None,
        )
        endpoints = Endpoints(
            ui_url=api_url.removesuffix("/api"),
            api_url=api_url,
            receiver_url=None,
            mirror_url=self.settings.resolved_database_url,
            server_log=str(self.server.log_path) if self.server else None,
        )
        # Built in a thread: inside an event loop Prefect's `to_deployment` returns a coroutine.
        deployments = await asyncio.to_thread(runner_deployments, specs, FLOWS)
        for deployment in deployments:
            await runner.aadd_deployment(deployment)
            endpoints.deployments.append(f"{deployment.flow_name}/{deployment.name}")
        for spec in specs:
            endpoints.schedules += [
                f"{spec.slug}: {s.cron} ({s.timezone})" for s in spec.schedules if s.active
            ]
        self.say(
            f"serving {len(endpoints.deployments)} deployments "
            f"({len(endpoints.schedules)} schedules, runner polls every "
            f"{self.settings.runner_poll_seconds:g} s)"
        )

        receiver = None
        if self.options.receiver:
            receiver = ReceiverProcess(self.options.host, self.options.receiver_port)
            self.say(f"starting the alert receiver on {receiver.url}")
            await asyncio.to_thread(receiver.start)
            endpoints.receiver_url = receiver.url
        # Run processes inherit this process's priority: below the Prefect server and the
        # receiver, which must answer promptly while runs (and their imports) take the CPU.
        os.nice(RUN_NICENESS)

        try:
            async with asyncio.TaskGroup() as group:
                runner_task = group.create_task(runner.start())
                reconciler_task = group.create_task(self._reconcile_forever(engine))
                while not runner.started and not runner_task.done():
                    await asyncio.sleep(0.05)
                self._install_signal_handlers()
                if self.on_ready is not None:
                    self.on_ready(endpoints)
                await self._stop.wait()

                if receiver is not None:
                    self.say("stopping: the alert receiver (its warm runs are cancelled)")
                    await asyncio.to_thread(receiver.stop)
                reconciler_task.cancel()
                self.say("stopping: the runner (runs in flight are cancelled, schedules paused)")
                with contextlib.suppress(RuntimeError):
                    await runner.astop()
        finally:
            if receiver is not None:
                await asyncio.to_thread(receiver.stop)
        engine.dispose()

    def _install_signal_handlers(self) -> None:
        # Installed after the runner started: Runner.start() sets its own SIGTERM handler.
        assert self._loop is not None and self._stop is not None
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, NotImplementedError):  # not the main thread
                self._loop.add_signal_handler(signum, self._stop.set)

    async def _reconcile_forever(self, engine) -> None:
        """Runs that died without a hook (SIGKILL, a lost host) are closed here, not only when
        someone remembers `runbooks reconcile`."""
        from flows.reconcile import reconcile

        interval = self.settings.reconcile_interval_seconds
        while True:
            started = time.monotonic()
            try:
                results = await in_daemon_thread(reconcile, engine)
            except Exception as exc:  # a bad moment of the database or the API: next round
                logger.warning("reconciler: %s", exc)
            else:
                for r in results:
                    if r.action.startswith("closed"):
                        self.say(f"reconciler: {r.execution_id} {r.runbook} {r.action}")
            await asyncio.sleep(max(1.0, interval - (time.monotonic() - started)))

"""Hands new runs straight to a run process that is already imported.

Prefect's runner finds a new run at its next poll and then starts a process that imports
Prefect and the flows: 2 to 3 s before the first command. For alert-triggered runs the main job
does better: it keeps `size` processes of services/warm_run.py imported and waiting, and the
receiver hands each new run to one of them at once. When none is ready the run is simply left
to the runner. Runs started here are watched for cancellation (the runner only watches its
own), and cancelled when the main job stops, as the runner does with its runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
import uuid

logger = logging.getLogger("runbooks.warm_start")


class WarmStarter:
    def __init__(self, size: int = 1):
        self.size = size
        self._lock = threading.Lock()
        self._ready: list[subprocess.Popen] = []
        self._warming: list[subprocess.Popen] = []
        self._running: dict[uuid.UUID, subprocess.Popen] = {}
        self._stopped = False

    # ---- the pool -------------------------------------------------------------------

    def start(self) -> None:
        for _ in range(self.size):
            self._spawn()

    def _spawn(self) -> None:
        if self._stopped:
            return
        process = subprocess.Popen(
            [sys.executable, "-m", "services.warm_run"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            # Own session: Ctrl-C in the terminal goes to the main job, which cancels runs
            # in order instead of every process dying at once.
            start_new_session=True,
            # Below the receiver that hands it runs, like every run process of the main job.
            preexec_fn=_lower_priority,
        )
        with self._lock:
            self._warming.append(process)
        threading.Thread(target=self._await_ready, args=(process,), daemon=True).start()

    def _await_ready(self, process: subprocess.Popen) -> None:
        line = process.stdout.readline() if process.stdout else ""
        with self._lock:
            if process in self._warming:
                self._warming.remove(process)
            if line.strip() == "ready" and not self._stopped:
                self._ready.append(process)
                return
        if not self._stopped:
            logger.warning("a warm run process failed to start (exit %s)", process.poll())
        _close(process)

    @property
    def ready_count(self) -> int:
        with self._lock:
            return len(self._ready)

    # ---- runs -------------------------------------------------------------------------

    def hand_off(self, flow_run_id: uuid.UUID) -> bool:
        """Give the run to a waiting process; False (the runner will take it) if none is."""
        with self._lock:
            if self._stopped or not self._ready:
                return False
            process = self._ready.pop(0)
            self._running[flow_run_id] = process
        try:
            process.stdin.write(f"{flow_run_id}\n")
            process.stdin.flush()
        except (BrokenPipeError, OSError):
            with self._lock:
                self._running.pop(flow_run_id, None)
            self._spawn()
            return False
        threading.Thread(target=self._reap, args=(flow_run_id, process), daemon=True).start()
        self._spawn()
        return True

    def _reap(self, flow_run_id: uuid.UUID, process: subprocess.Popen) -> None:
        process.wait()
        with self._lock:
            self._running.pop(flow_run_id, None)

    def running(self) -> list[uuid.UUID]:
        with self._lock:
            return list(self._running)

    def cancel(self, flow_run_id: uuid.UUID) -> bool:
        with self._lock:
            process = self._running.get(flow_run_id)
        if process is None or process.poll() is not None:
            return False
        with contextlib.suppress(BrokenPipeError, OSError):
            process.stdin.write("cancel\n")
            process.stdin.flush()
            return True
        return False

    async def watch_cancellations(self, interval: float = 2.0) -> None:
        """Cancel the runs started here that Prefect marks Cancelling (a person in the UI, a
        `resolved` alert): the runner does this only for processes it started itself."""
        import asyncio

        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        async with get_client() as client:
            while True:
                await asyncio.sleep(interval)
                ids = self.running()
                if not ids:
                    continue
                try:
                    runs = await client.read_flow_runs(
                        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids))
                    )
                except Exception as exc:  # the API is away for a moment: next round
                    logger.warning("cannot read run states: %s", exc)
                    continue
                for run in runs:
                    if run.state is not None and run.state.type.value == "CANCELLING":
                        self.cancel(run.id)

    def stop(self, timeout: float = 10.0) -> None:
        """Idle processes exit; runs in flight are cancelled (recorded as cancelled)."""
        with self._lock:
            self._stopped = True
            idle = self._ready + self._warming
            self._ready, self._warming = [], []
            running = dict(self._running)
        for process in idle:
            _close(process)
        for flow_run_id in running:
            self.cancel(flow_run_id)
        for process in running.values():
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()


RUN_NICENESS = 10


def _lower_priority() -> None:
    os.nice(RUN_NICENESS)


def _close(process: subprocess.Popen) -> None:
    with contextlib.suppress(OSError):
        if process.stdin:
            process.stdin.close()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)

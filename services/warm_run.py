"""A run process started before its run exists: `python -m services.warm_run`.

Importing Prefect and building the catalog's flows costs 1.5 to 2 s here, which is most of the
time between an alert and its first command when a run process starts cold. The main job keeps
one of these imported and waiting (services/warm_start.py). It prints `ready`, reads one flow
run id from stdin, claims that run the way Prefect's runner does (Scheduled -> Pending; the
server refuses a second claim, so the runner and this process never both start it), and runs
it. A line `cancel` on stdin afterwards cancels the run.
"""

from __future__ import annotations

import _thread
import os
import sys
import threading
import time
import uuid


def _claim(client, flow_run_id: uuid.UUID) -> bool:
    from prefect.exceptions import Abort
    from prefect.states import Pending
    from prefect.utilities.engine import propose_state_sync

    try:
        state = propose_state_sync(client, Pending(), flow_run_id=flow_run_id)
    except Abort:  # the runner (or an earlier claim) has it
        return False
    return state.is_pending()


def _cancel_when_told(flow_run_id: uuid.UUID) -> None:
    """Waits for `cancel` on stdin. The mirror row is closed as cancelled and Prefect is told
    first: both are terminal then, and neither changes again whatever the unwinding run
    writes (Prefect refuses to leave a terminal state; the mirror never rewrites a closed
    row). Then the run is interrupted, which kills the running command's process group on the
    way out, and the process ends."""
    line = sys.stdin.readline()
    if line.strip() != "cancel":
        return  # stdin closed: the main job went away; the run goes on
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    from db.models import ExecutionStatus
    from flows.hooks import close_for_flow_run
    from flows.notifications import wait_for_sends

    try:
        close_for_flow_run(flow_run_id, ExecutionStatus.CANCELLED, "cancelled in Prefect")
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(flow_run_id, Cancelled(), force=True)
    finally:
        _thread.interrupt_main()
        time.sleep(1.5)  # let the step's command be killed while the stack unwinds
        wait_for_sends()  # the "cancelled" notification, which os._exit would drop
        os._exit(0)


def main() -> int:
    from prefect.client.orchestration import get_client
    from prefect.engine import handle_engine_signals
    from prefect.flow_engine import run_flow

    from flows.heap import freeze_startup_heap
    from flows.runbooks import FLOWS

    freeze_startup_heap(collect_first=True)  # while idle, not during the run
    print("ready", flush=True)
    line = sys.stdin.readline()
    if not line.strip():
        return 0  # not needed after all (the main job is stopping)
    os.dup2(2, 1)  # from here on, stdout is the run's log like stderr; the protocol is done
    flow_run_id = uuid.UUID(line.strip())
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
        flow = FLOWS.get(client.read_flow(flow_run.flow_id).name)
        if flow is None or not _claim(client, flow_run_id):
            return 0
        flow_run = client.read_flow_run(flow_run_id)
    threading.Thread(target=_cancel_when_told, args=(flow_run_id,), daemon=True).start()
    with handle_engine_signals(flow_run_id):
        run_flow(flow, flow_run=flow_run)
    return 0


if __name__ == "__main__":
    sys.exit(main())

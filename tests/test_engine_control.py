"""Approvals, the lease, secrets and crashes, through real flows on a real Prefect server."""

from __future__ import annotations

import contextlib
import contextvars
import os
import signal
import subprocess
import threading
import time
import uuid

import pytest

from db.engine import make_engine
from runbook_catalog import load_catalog

from .conftest import RUNBOOKS_BIN, mirror_rows
from .engine_catalog import gated, secretive, waiting, write_engine_catalog

pytestmark = pytest.mark.usefixtures("prefect_server")


def flow_for(tmp_path, data):
    from flows.engine import build_flow

    catalog = load_catalog(write_engine_catalog(tmp_path / "catalog", data), strict=True)
    return build_flow(catalog.runbooks[data["slug"]])


def in_thread(fn, *args, **kwargs):
    """Run fn in a thread that sees this context (Prefect's settings live in contextvars)."""
    box: dict = {}
    ctx = contextvars.copy_context()
    thread = threading.Thread(
        target=lambda: box.setdefault("value", ctx.run(fn, *args, **kwargs)), daemon=True
    )
    thread.start()
    return thread, box


def wait_until(predicate, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def paused_flow_run(mirror_url):
    from prefect.client.orchestration import get_client

    executions, _ = mirror_rows(mirror_url)
    if not executions:
        return None
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(executions[0].flow_run_id)
    return run.id if run.state and run.state.is_paused() else None


@pytest.mark.parametrize(
    ("answer", "status", "log"),
    [
        (
            {"approve": True, "approver": "alice", "reason": "checked the plan"},
            "succeeded",
            ["run 1", "run 2", "run 3"],
        ),
        (
            {"approve": False, "approver": "bob", "reason": "not during peak"},
            "rolled_back",
            ["run 1", "undo 1"],
        ),
    ],
    ids=["approved", "rejected"],
)
def test_approval_in_the_ui(tmp_path, mirror_env, answer, status, log):
    from prefect.flow_runs import resume_flow_run

    work = tmp_path / "work"
    work.mkdir()
    thread, box = in_thread(
        flow_for(tmp_path, gated()), parameters={"dir": str(work)}, return_state=True
    )
    flow_run_id = wait_until(lambda: paused_flow_run(mirror_env), what="the pause")
    executions, steps = mirror_rows(mirror_env)
    assert executions[0].status == "awaiting_approval"
    assert [s.status for s in steps] == ["succeeded", "pending"]
    resume_flow_run(flow_run_id, run_input=answer)
    thread.join(timeout=60)
    executions, steps = mirror_rows(mirror_env)
    assert executions[0].status == status
    assert (steps[1].approved_by, steps[1].approval_reason) == (
        answer["approver"],
        answer["reason"],
    )
    assert (work / "log").read_text().splitlines() == log
    if not answer["approve"]:
        assert executions[0].error == "step s2: approval rejected by bob: not during peak"
        assert box["value"].is_failed()


def test_approval_times_out(tmp_path, mirror_env):
    work = tmp_path / "work"
    work.mkdir()
    state = flow_for(tmp_path, gated(approval_timeout="3s"))(
        parameters={"dir": str(work)}, return_state=True
    )
    assert state.is_failed()
    executions, steps = mirror_rows(mirror_env)
    assert executions[0].status == "rolled_back"
    assert executions[0].error == "step s2: approval timed out: no decision within 3s"
    assert (steps[1].status, steps[1].approved_by) == ("failed", None)
    assert (work / "log").read_text().splitlines() == ["run 1", "undo 1"]


def test_cli_pre_approval_is_recorded(tmp_path, mirror_env):
    from flows.execution import LOCAL_RUN_OPTIONS, LocalRunOptions

    work = tmp_path / "work"
    work.mkdir()
    token = LOCAL_RUN_OPTIONS.set(LocalRunOptions(pre_approved_by="carol (runbooks run --approve)"))
    try:
        state = flow_for(tmp_path, gated())(parameters={"dir": str(work)}, return_state=True)
    finally:
        LOCAL_RUN_OPTIONS.reset(token)
    assert state.is_completed()
    _, steps = mirror_rows(mirror_env)
    assert steps[1].approved_by == "carol (runbooks run --approve)"


def test_second_concurrent_run_is_refused(tmp_path, mirror_env):
    work = tmp_path / "work"
    work.mkdir()
    flow = flow_for(tmp_path, waiting())
    thread, box = in_thread(flow, parameters={"dir": str(work)}, return_state=True)
    wait_until(lambda: (work / "log").exists(), what="the first run to start")
    first = mirror_rows(mirror_env)[0][0]
    second = flow(parameters={"dir": str(work)}, return_state=True)
    (work / "go").touch()
    thread.join(timeout=60)
    assert second.is_failed()
    message = second.message
    assert f"waiting is already running on local: execution {first.id}" in message
    executions, _ = mirror_rows(mirror_env)
    assert [e.status for e in executions] == ["succeeded"]  # the refused run left no row
    assert (work / "log").read_text().splitlines() == ["started"]  # and ran nothing
    assert box["value"].is_completed()


def test_secrets_reach_no_sink(tmp_path, mirror_env, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    secret = f"s3cr3t-{uuid.uuid4().hex}"
    monkeypatch.setenv("TEST_API_TOKEN", secret)
    work = tmp_path / "work"
    work.mkdir()
    state = flow_for(tmp_path, secretive())(
        parameters={"dir": str(work), "token": "env:TEST_API_TOKEN"}, return_state=True
    )
    assert state.is_failed()
    executions, steps = mirror_rows(mirror_env)
    assert executions[0].status == "rolled_back"
    assert not (work / "used").exists()
    texts = [str(executions[0].parameters), executions[0].error or ""]
    for step in steps:
        texts += [
            step.command or "",
            step.output_tail or "",
            step.error or "",
            step.rollback_output_tail or "",
            step.verify_result or "",
        ]
    assert "token is ********" in steps[0].output_tail  # the step did see and print it
    assert "bad token ********" in steps[1].output_tail
    assert "undo with ********" in steps[0].rollback_output_tail
    flow_run_id = executions[0].flow_run_id
    # Logs reach the API in batches from a background worker: wait for them.
    with get_client(sync_client=True) as client:

        def all_logs():  # complete once the run's last line ("secretive: rolled_back") is in
            found = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
            )
            return found if any("secretive: rolled_back" in log.message for log in found) else None

        logs = wait_until(all_logs, what="the run's logs")
        artifacts = client.read_artifacts()
        run = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )[0]
    texts += [log.message for log in logs]
    texts += [str(a.data) + str(a.description) for a in artifacts]
    texts += [str(run.parameters), run.state.message or ""]
    assert logs and artifacts
    assert not [t for t in texts if secret in t]


def test_sigkill_is_reconciled_to_crashed(tmp_path, mirror_env, prefect_server):
    from prefect.client.orchestration import get_client

    from flows.reconcile import reconcile

    work = tmp_path / "work"
    work.mkdir()
    (work / "go").touch()
    catalog = write_engine_catalog(tmp_path / "catalog", waiting())
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("RUNBOOKS_", "PREFECT_API"))
    } | {
        "PREFECT_API_URL": prefect_server,
        "RUNBOOKS_CATALOG": str(catalog),
        "RUNBOOKS_DATABASE_URL": mirror_env,
        "RUNBOOKS_DATA_DIR": str(tmp_path / "data"),
        "RUNBOOKS_LEASE_TTL_SECONDS": "3",
    }
    process = subprocess.Popen(
        [str(RUNBOOKS_BIN), "run", "waiting", "-p", f"dir={work}", "-p", "sleep=true"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until(lambda: (work / "sleeper.pid").exists(), timeout=90, what="the sleeping step")
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if (work / "sleeper.pid").exists():  # the step runs in its own process group
            pid = int((work / "sleeper.pid").read_text())
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    executions, steps = mirror_rows(mirror_env)
    assert executions[0].status == "running"
    assert [r.action for r in reconcile(make_engine(mirror_env))] == ["still running"]
    time.sleep(3.5)  # the lease expires
    results = reconcile(make_engine(mirror_env))
    assert [r.action for r in results] == ["closed as crashed"]
    executions, steps = mirror_rows(mirror_env)
    assert executions[0].status == "crashed"
    assert [(s.step_id, s.status) for s in steps] == [
        ("wait", "succeeded"),
        ("sleep", "outcome_unknown"),
    ]
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(executions[0].flow_run_id).state.is_crashed()
    assert reconcile(make_engine(mirror_env)) == []  # nothing left to do

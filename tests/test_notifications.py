"""Notifications through apprise, from real flows on a real Prefect server to a real HTTP
endpoint on loopback (apprise's `json://` service), and what they must never carry."""

from __future__ import annotations

import contextvars
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import types
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from config import PROJECT_ROOT
from db.engine import make_engine
from db.mirror import MirrorWriter
from db.sync import ensure_runbook
from runbook_catalog import load_catalog
from tasks.redaction import MASK

from .conftest import mirror_rows
from .engine_catalog import gated, ordered, secretive, write_engine_catalog

pytestmark = pytest.mark.usefixtures("prefect_server")


class Inbox:
    """A real HTTP endpoint on a free loopback port that keeps every JSON body POSTed to it."""

    def __init__(self):
        self.messages: list[dict] = []
        self.raw: list[bytes] = []
        self._arrived = threading.Condition()
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with inbox._arrived:
                    inbox.raw.append(body)
                    inbox.messages.append(json.loads(body))
                    inbox._arrived.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):  # keep the test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/notify"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 30) -> list[dict]:
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.messages) >= count, timeout):
                raise AssertionError(f"{len(self.messages)} notification(s), expected {count}")
            return list(self.messages)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def inbox(monkeypatch, mirror_env):
    inbox = Inbox()
    monkeypatch.setenv("RUNBOOKS_NOTIFY_URLS", inbox.url)
    yield inbox
    inbox.close()


def flow_for(tmp_path, data):
    from flows.engine import build_flow

    catalog = load_catalog(write_engine_catalog(tmp_path / "catalog", data), strict=True)
    return build_flow(catalog.runbooks[data["slug"]])


def run(tmp_path, data, **parameters):
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return flow_for(tmp_path, data)(parameters={"dir": str(work), **parameters}, return_state=True)


def free_port() -> int:
    """A loopback port nobody listens on (connections to it are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_rolled_back_run_sends_one_notification(tmp_path, inbox, mirror_env, prefect_server):
    state = run(tmp_path, ordered(), fail_at=3)
    assert state.is_failed()
    [message] = inbox.wait_for(1)
    executions, _ = mirror_rows(mirror_env)
    execution = executions[0]
    assert execution.status == "rolled_back"
    assert message["title"] == "runbook ordered: rolled_back (step s3 failed)"
    assert message["type"] == "failure"
    body = message["message"]
    assert 'Failed step: 3 s3 "Step 3": ' in body
    assert "boom-3" in body  # the failing command's output
    assert "Rollbacks, newest first: s2 succeeded, s1 succeeded" in body
    assert f"Execution: {execution.id}" in body
    assert "Trigger: api" in body
    ui = prefect_server.removesuffix("/api")
    assert f"Flow run: {ui}/runs/flow-run/{execution.flow_run_id}" in body
    time.sleep(1)  # a second notification (say, from a hook) would have arrived by now
    assert len(inbox.messages) == 1


def test_rollback_failed_is_notified(tmp_path, inbox):
    state = run(tmp_path, ordered(), fail_at=3, broken_rollback=2)
    assert state.is_failed()
    [message] = inbox.wait_for(1)
    assert message["title"] == "runbook ordered: rollback_failed (step s3 failed)"
    assert "undoing it failed too" in message["message"]
    assert "Rollbacks, newest first: s2 failed, s1 succeeded" in message["message"]


def test_a_successful_run_sends_nothing(tmp_path, inbox):
    assert run(tmp_path, ordered()).is_completed()
    # Then a failing run: its notification arriving alone shows the success sent none.
    assert run(tmp_path, ordered(), fail_at=1).is_failed()
    [message] = inbox.wait_for(1)
    assert message["title"] == "runbook ordered: failed (step s1 failed)"
    assert "no completed step needed undoing" in message["message"]
    time.sleep(1)
    assert len(inbox.messages) == 1


def test_an_approval_pause_is_notified_and_then_the_rejection(tmp_path, inbox, mirror_env):
    from prefect.flow_runs import resume_flow_run

    work = tmp_path / "work"
    work.mkdir()
    box: dict = {}
    context = contextvars.copy_context()  # Prefect's settings live in contextvars
    thread = threading.Thread(
        target=lambda: box.setdefault(
            "state",
            context.run(
                flow_for(tmp_path, gated()), parameters={"dir": str(work)}, return_state=True
            ),
        ),
        daemon=True,
    )
    thread.start()
    [message] = inbox.wait_for(1, timeout=60)
    executions, _ = mirror_rows(mirror_env)
    execution = executions[0]
    assert execution.status == "awaiting_approval"
    assert message["title"] == "runbook gated: approval needed for step s2"
    assert message["type"] == "warning"
    body = message["message"]
    assert 'waits for approval of step 2 of 3: s2 "Step 2"' in body
    assert 'echo "run 2" >> "$RB_DIR/log"' in body  # the rendered command it will run
    assert "open the flow run below in the Prefect UI, press Resume" in body
    assert f"/runs/flow-run/{execution.flow_run_id}" in body
    assert "With no decision within 1h the step fails" in body

    def paused():
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            state = client.read_flow_run(execution.flow_run_id).state
        return state is not None and state.is_paused()

    deadline = time.monotonic() + 60
    while not paused():
        assert time.monotonic() < deadline, "the run never paused"
        time.sleep(0.2)
    resume_flow_run(
        execution.flow_run_id, run_input={"approve": False, "approver": "bob", "reason": "peak"}
    )
    thread.join(timeout=60)
    assert box["state"].is_failed()
    _, rejected = inbox.wait_for(2)
    assert rejected["title"] == "runbook gated: rolled_back (step s2 failed)"
    assert "approval rejected by bob: peak" in rejected["message"]


def test_a_secret_in_the_failing_output_is_masked(tmp_path, inbox, monkeypatch):
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    monkeypatch.setenv("TEST_API_TOKEN", secret)
    assert run(tmp_path, secretive(), token="env:TEST_API_TOKEN").is_failed()
    [message] = inbox.wait_for(1)
    assert "leak-and-fail" in message["title"]
    assert f"bad token {MASK}" in message["message"]  # the output is there, masked
    assert secret.encode() not in inbox.raw[0]


def test_an_unreachable_url_is_logged_and_changes_nothing(
    tmp_path, inbox, mirror_env, monkeypatch, caplog
):
    closed = f"json://127.0.0.1:{free_port()}/notify"
    monkeypatch.setenv("RUNBOOKS_NOTIFY_URLS", f"{closed}, {inbox.url}")
    caplog.set_level(logging.INFO, logger="runbooks.notifications")
    state = run(tmp_path, ordered(), fail_at=2)
    assert state.is_failed()
    executions, _ = mirror_rows(mirror_env)
    assert executions[0].status == "rolled_back"  # the true ending
    [message] = inbox.wait_for(1)  # the reachable service still got it
    assert message["title"] == "runbook ordered: rolled_back (step s2 failed)"
    deadline = time.monotonic() + 10
    while not any("not delivered" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, "no warning about the unreachable service"
        time.sleep(0.1)
    [warning] = [r.getMessage() for r in caplog.records if "not delivered" in r.getMessage()]
    assert (
        warning == "notification not delivered (partial): 1 of 2 service(s) failed (schemes: json)"
    )
    assert "127.0.0.1" not in warning  # no URL, not even its host, in our own log line


def test_a_silent_endpoint_does_not_delay_the_run(tmp_path, mirror_env, monkeypatch):
    """An endpoint that accepts and never answers: the send waits, the run does not."""
    from flows.execution import LOCAL_RUN_OPTIONS, LocalRunOptions

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    port = silent.getsockname()[1]
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(silent.accept()[0]), daemon=True).start()
    monkeypatch.setenv("RUNBOOKS_NOTIFY_URLS", f"json://127.0.0.1:{port}/?rto=60")
    times: dict[str, float] = {}
    token = LOCAL_RUN_OPTIONS.set(
        LocalRunOptions(on_event=lambda event, **_: times.setdefault(event, time.monotonic()))
    )
    try:
        state = run(tmp_path, ordered(), fail_at=2)
    finally:
        LOCAL_RUN_OPTIONS.reset(token)
    try:
        assert state.is_failed()
        assert mirror_rows(mirror_env)[0][0].status == "rolled_back"
        # A send inside the run would hold it for the whole deadline (15 s).
        assert times["execution_finished"] - times["execution_started"] < 3
        deadline = time.monotonic() + 30
        while not accepted:  # and the notification really was on its way
            assert time.monotonic() < deadline, "the notification never connected"
            time.sleep(0.1)
    finally:
        for connection in accepted:
            connection.close()
        silent.close()


def test_a_cancellation_closed_by_the_hook_is_notified(tmp_path, inbox, mirror_env):
    from prefect.states import Cancelled

    from flows import hooks

    catalog = load_catalog(write_engine_catalog(tmp_path / "catalog", ordered()), strict=True)
    engine = make_engine(mirror_env)
    ensure_runbook(engine, catalog.runbooks["ordered"])
    writer, execution_id, flow_run_id = MirrorWriter(engine), uuid.uuid4(), uuid.uuid4()
    writer.start_execution(
        execution_id=execution_id,
        flow_run_id=flow_run_id,
        runbook_slug="ordered",
        runbook_version="1.0",
        definition_hash="h",
        definition=catalog.runbooks["ordered"].definition,
        trigger="ui",
        triggered_by="alice",
        parameters={},
        target="local",
    )
    writer.start_step(execution_id, 1, "s1", "Step 1", "true")
    hooks.on_cancellation(
        None, types.SimpleNamespace(id=flow_run_id), Cancelled(message="by alice")
    )
    [message] = inbox.wait_for(1)
    assert message["title"] == "runbook ordered: cancelled"
    assert message["type"] == "warning"
    body = message["message"]
    assert body.startswith("Ordered steps (ordered 1.0) was cancelled.")
    assert "Reason: cancelled: by alice" in body
    assert "Outcome unknown (never re-run automatically): s1" in body
    assert "Trigger: ui, by alice" in body


def test_without_urls_apprise_is_never_imported(tmp_path, mirror_env, prefect_server):
    """A failing run in a fresh process with no RUNBOOKS_NOTIFY_URLS: apprise stays unloaded."""
    catalog = write_engine_catalog(tmp_path / "catalog", ordered())
    work = tmp_path / "work"
    work.mkdir()
    script = f"""
import sys
from runbook_catalog import load_catalog
from flows.engine import build_flow
flow = build_flow(load_catalog({str(catalog)!r}, strict=True).runbooks["ordered"])
state = flow(parameters={{"dir": {str(work)!r}, "fail_at": 2}}, return_state=True)
print(state.type.value, "apprise" in sys.modules)
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNBOOKS_", "PREFECT_"))}
    env |= {
        "PREFECT_API_URL": prefect_server,
        "RUNBOOKS_DATABASE_URL": mirror_env,
        "RUNBOOKS_DATA_DIR": str(tmp_path / "data"),
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.stdout.split()[-2:] == ["FAILED", "False"], done.stderr[-2000:]
    assert mirror_rows(mirror_env)[0][0].status == "rolled_back"

"""The alert receiver end to end: real HTTP against uvicorn, the mirror on SQLite (and
PostgreSQL where storage is the point), flow runs created on the session's real Prefect
server. Nothing serves the deployments, so every run the receiver creates stays Scheduled and
can be counted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from config import PROJECT_ROOT
from db.engine import make_engine, session_scope
from db.models import AlertEvent

from .alert_helpers import (
    HMAC_SECRET,
    Forwarder,
    alertmanager_payload,
    am_alert,
    generic_payload,
    grafana_payload,
    pagerduty_payload,
    read_run,
    receivers,
)


@pytest.fixture
def start_receiver(tmp_path, prefect_server):
    """start_receiver(database_url=None, *, api_url=None, **settings) -> a running Receiver
    whose runbook is deployed on the session's Prefect server."""
    with receivers(tmp_path, prefect_server) as start:
        yield start


pytestmark = pytest.mark.usefixtures("prefect_server")


def actions(response) -> list[str]:
    return [a["action"] for a in response.json()["alerts"]]


def test_alertmanager_alerts_start_one_run_each_and_a_replay_starts_none(
    start_receiver, database_url
):
    receiver = start_receiver(database_url)
    payload = alertmanager_payload(
        am_alert(service="webapp", host="app1.example.com"),
        am_alert(service="webapp", host="app2.example.com"),
        am_alert("SomethingElse", service="webapp", host="app3.example.com"),
    )

    first = receiver.alertmanager(payload)

    assert first.status_code == 200, first.text
    assert actions(first) == ["triggered", "triggered", "ignored"]
    assert first.json()["alerts"][2]["reason"] == "no route matches"
    assert receiver.runs() == 2
    rows = receiver.rows()
    assert [r.action for r in rows] == ["triggered", "triggered", "ignored"]
    one = rows[0]
    alert = payload["alerts"][0]
    assert (one.source, one.alert_name, one.status) == ("alertmanager", "ServiceDown", "firing")
    assert one.dedup_key == f"{alert['fingerprint']}:{alert['startsAt']}"
    assert one.group_key == alert["fingerprint"]
    assert one.labels == alert["labels"] and one.annotations == alert["annotations"]
    assert one.route == "service-down"
    assert str(one.flow_run_id) == first.json()["alerts"][0]["flow_run_id"]

    run = read_run(one.flow_run_id)
    assert run.state.is_scheduled()
    assert run.parameters == {
        "parameters": {
            "service": "webapp",
            "host": "app1.example.com",
            "depth": 3,
            # a secret parameter is a reference and reaches the run as one, not as a mask
            "hook": "block:probe-hook",
        },
        "trigger": "alert",
        "triggered_by": "alertmanager:ServiceDown",
        "alert_event_id": one.id,
    }
    assert {"alert", "alertmanager"} <= set(run.tags)
    assert [r.id for r in receiver.enqueued] == [rows[0].flow_run_id, rows[1].flow_run_id]

    replay = receiver.alertmanager(payload)

    assert actions(replay) == ["deduplicated", "deduplicated", "ignored"]
    assert "already started run" in replay.json()["alerts"][0]["reason"]
    assert replay.json()["alerts"][0]["flow_run_id"] == str(one.flow_run_id)
    assert receiver.runs() == 2
    assert len(receiver.rows()) == 6  # every delivery has its row


def test_grafana_payload_is_told_apart_and_routed(start_receiver):
    receiver = start_receiver()

    response = receiver.alertmanager(grafana_payload(am_alert(service="api", host="app9.internal")))

    assert actions(response) == ["triggered"], response.text
    (row,) = receiver.rows()
    assert row.source == "grafana"
    assert read_run(row.flow_run_id).parameters["triggered_by"] == "grafana:ServiceDown"


def test_pagerduty_incident_triggers_once_and_other_events_are_stored_only(start_receiver):
    receiver = start_receiver()
    triggered = pagerduty_payload("incident.triggered")

    first = receiver.pagerduty(triggered, delivery_id="01DEL1")
    redelivered = receiver.pagerduty(triggered, delivery_id="01DEL1")
    acknowledged = receiver.pagerduty(pagerduty_payload("incident.acknowledged"))
    resolved = receiver.pagerduty(pagerduty_payload("incident.resolved"))

    assert actions(first) == ["triggered"], first.text
    assert actions(redelivered) == ["deduplicated"]
    assert actions(acknowledged) == ["ignored"]
    assert (
        "only incident.triggered and incident.resolved act"
        in (acknowledged.json()["alerts"][0]["reason"])
    )
    assert actions(resolved) == ["ignored"]
    assert "is Scheduled" in resolved.json()["alerts"][0]["reason"]
    assert receiver.runs() == 1
    row = receiver.rows()[0]
    assert (row.source, row.alert_name, row.group_key) == (
        "pagerduty",
        "Checkout latency high",
        "PT4KHLK",
    )
    assert row.dedup_key == "PT4KHLK:incident.triggered"
    assert row.labels == {
        "service": "Checkout API",
        "service_id": "PIJ90N7",
        "urgency": "high",
        "priority": "P1",
        "incident_key": "baf7cf21b1da41b4b0221008339ff357",
        "incident_status": "triggered",
    }
    assert row.annotations["delivery_id"] == "01DEL1"
    assert read_run(row.flow_run_id).parameters["parameters"]["depth"] == 5


def test_generic_alert_with_annotation_and_default(start_receiver):
    receiver = start_receiver()

    plain = receiver.generic(generic_payload(key="orders-1"))
    deeper = generic_payload(key="orders-2", queue="payments")
    deeper["annotations"]["depth"] = "7"
    annotated = receiver.generic(deeper)
    resolved = receiver.generic(generic_payload(key="orders-1", status="resolved"))

    assert actions(plain) == ["triggered"], plain.text
    assert actions(annotated) == ["triggered"]
    assert actions(resolved) == ["ignored"]
    rows = receiver.rows()
    assert [r.dedup_key for r in rows] == [
        "orders-1:firing",
        "orders-2:firing",
        "orders-1:resolved",
    ]
    assert read_run(rows[0].flow_run_id).parameters["parameters"]["depth"] == 2
    assert read_run(rows[1].flow_run_id).parameters["parameters"]["service"] == "payments"
    assert read_run(rows[1].flow_run_id).parameters["parameters"]["depth"] == 7
    assert receiver.runs() == 2


def test_cooldown_holds_a_flapping_alert_until_it_expires(start_receiver):
    receiver = start_receiver()
    labels = {"service": "webapp", "host": "app1.example.com", "fingerprint": "f00d"}

    first = receiver.alertmanager(alertmanager_payload(am_alert(**labels)))
    again = receiver.alertmanager(
        alertmanager_payload(am_alert(starts_at="2026-12-04T10:05:00Z", **labels))
    )

    assert actions(first) == ["triggered"], first.text
    assert actions(again) == ["deduplicated"]
    reason = again.json()["alerts"][0]["reason"]
    assert reason.startswith("cooldown: route service-down started run ")
    assert "no new run before " in reason
    # 11 minutes later (the route's cooldown is 10m) the alert may start the runbook again
    engine = make_engine(receiver.database_url)
    with session_scope(engine) as session:
        for row in session.scalars(select(AlertEvent)):
            row.received_at -= timedelta(minutes=11)
    engine.dispose()
    later = receiver.alertmanager(
        alertmanager_payload(am_alert(starts_at="2026-12-04T10:20:00Z", **labels))
    )
    assert actions(later) == ["triggered"]
    assert receiver.runs() == 2


def test_circuit_breaker_opens_after_max_runs_in_window(start_receiver):
    receiver = start_receiver()

    answers = [
        receiver.alertmanager(alertmanager_payload(am_alert("DiskFull", host=f"db{i}.internal")))
        for i in range(3)
    ]

    assert [actions(a) for a in answers] == [["triggered"], ["triggered"], ["rejected"]]
    reason = answers[2].json()["alerts"][0]["reason"]
    assert reason.startswith(
        "circuit open: route disk-full started 2 runs in the last 1h (max_runs 2); it closes at "
    )
    assert receiver.runs() == 2


HOSTILE = ["; rm -rf /", "$(reboot)", "-rf", "webapp\n", "../../etc", "wébapp"]


def test_hostile_labels_are_rejected_like_hostile_form_values(start_receiver):
    receiver = start_receiver()

    for value in HOSTILE:
        response = receiver.alertmanager(
            alertmanager_payload(am_alert(service=value, host="app1.example.com"))
        )
        (outcome,) = response.json()["alerts"]
        assert response.status_code == 200
        assert outcome["action"] == "rejected", value
        assert outcome["flow_run_id"] is None
        assert outcome["reason"] == (
            "route service-down: parameter service: must be a slug: 1-63 characters of a-z, "
            f"0-9 and '-', not starting with '-' (got {value!r}) (from label service)"
        )
    hostile_host = receiver.alertmanager(
        alertmanager_payload(am_alert(service="webapp", host="$(reboot)"))
    )
    assert actions(hostile_host) == ["rejected"]
    assert "parameter host: must be a host name" in hostile_host.json()["alerts"][0]["reason"]
    assert receiver.runs() == 0
    assert {r.action for r in receiver.rows()} == {"rejected"}
    assert len(receiver.rows()) == len(HOSTILE) + 1


def test_resolved_cancels_a_run_waiting_for_approval_and_never_starts_one(start_receiver):
    from prefect.client.orchestration import get_client
    from prefect.states import Paused

    receiver = start_receiver()
    waiting = am_alert(service="webapp", host="app1.example.com")
    scheduled = am_alert(service="webapp", host="app2.example.com")
    receiver.alertmanager(alertmanager_payload(waiting, scheduled))
    waiting_run, scheduled_run = (r.flow_run_id for r in receiver.rows())
    with get_client(sync_client=True) as client:  # what an approval step looks like to Prefect
        client.set_flow_run_state(waiting_run, Paused(), force=True)

    resolved = receiver.alertmanager(
        alertmanager_payload(
            {**waiting, "status": "resolved"},
            {**scheduled, "status": "resolved"},
            am_alert(service="webapp", host="never-fired.example.com", status="resolved"),
        )
    )

    assert actions(resolved) == ["cancelled_run", "ignored", "ignored"], resolved.text
    cancelled, running, unknown = resolved.json()["alerts"]
    assert cancelled["flow_run_id"] == str(waiting_run)
    assert cancelled["reason"] == (
        f"resolved: cancelled run {waiting_run}, which was waiting for approval"
    )
    assert read_run(waiting_run).state.is_cancelling()
    assert running["reason"] == (
        f"resolved: no run of this alert waits for approval (run {scheduled_run} is Scheduled)"
    )
    assert read_run(scheduled_run).state.is_scheduled()
    assert unknown["reason"] == "resolved: no run was started for this alert"
    assert receiver.runs() == 2
    assert receiver.rows()[2].route == "service-down"


@pytest.mark.parametrize("answer_within", [30.0, 0.0], ids=["answer-waits", "answer-at-once"])
def test_prefect_down_answers_503_and_the_retry_triggers(
    start_receiver, prefect_server, database_url, answer_within
):
    # Down is not slow: even an answer that never waits for Prefect says 503 when nothing
    # listens at the API address, so the sender retries.
    prefect = Forwarder(prefect_server)  # closed until started: Prefect is down
    receiver = start_receiver(database_url, api_url=prefect.url, answer_within=answer_within)
    payload = alertmanager_payload(am_alert(service="webapp", host="app1.example.com"))
    try:
        down = receiver.alertmanager(payload)
        health_down = httpx.get(f"{receiver.url}/healthz", timeout=10).json()
        prefect.start()
        retried = receiver.alertmanager(payload)
        health_back = httpx.get(f"{receiver.url}/healthz", timeout=10).json()
        deadline = time.monotonic() + 30  # an answer at once: the run is created after it
        while [r.action for r in receiver.rows()][-1] != "triggered":
            assert time.monotonic() < deadline, receiver.rows()
            time.sleep(0.1)
    finally:
        prefect.stop()

    assert down.status_code == 503, down.text
    assert down.headers["retry-after"] == "30"
    (failed,) = down.json()["alerts"]
    assert failed["action"] == "failed"
    assert failed["reason"].startswith("Prefect API unreachable (create the run): ConnectError")
    assert retried.status_code == 200, retried.text
    assert actions(retried) == (["triggered"] if answer_within else ["received"])
    rows = receiver.rows()
    assert [r.action for r in rows] == ["failed", "triggered"]
    assert rows[0].reason == failed["reason"]
    assert receiver.runs() == 1
    # /healthz says so, unauthenticated and in one small answer
    assert health_down == {"status": "degraded", "database": True, "prefect": False}
    assert health_back == {"status": "ok", "database": True, "prefect": True}


def _documented(marker: str) -> str:
    """The code block that follows `<!-- marker -->` in docs/alerts.md."""
    text = (PROJECT_ROOT / "docs" / "alerts.md").read_text()
    after = text.split(f"<!-- {marker} -->", 1)[1]
    return after.split("```", 2)[1].split("\n", 1)[1]


def test_the_documented_signing_examples_work(start_receiver):
    receiver = start_receiver()
    env = {**os.environ, "RUNBOOKS_ALERT_HMAC_SECRET": HMAC_SECRET}
    documented_url = "http://127.0.0.1:8765"

    shell = subprocess.run(
        [
            "bash",
            "-euo",
            "pipefail",
            "-c",
            _documented("signing-shell").replace(documented_url, receiver.url),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    python = subprocess.run(
        [sys.executable, "-c", _documented("signing-python").replace(documented_url, receiver.url)],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )

    assert shell.returncode == 0, shell.stderr
    assert json.loads(shell.stdout)["alerts"][0]["action"] == "triggered", shell.stdout
    assert python.returncode == 0, python.stderr
    assert json.loads(python.stdout)["alerts"][0]["action"] == "deduplicated"  # the same key
    assert receiver.runs() == 1

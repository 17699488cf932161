"""`runbooks up`, the main job, as a person starts it: a real Prefect server on SQLite in the data
directory, every runbook served with its schedules, the receiver, Ctrl-C, and a restart."""

from __future__ import annotations

import json
import socket
import sqlite3
import time
import urllib.request
import uuid

import pytest

from .conftest import mirror_rows, run_cli
from .engine_catalog import HOSTILE_BY_TYPE, gated, ordered, typed, write_engine_catalog
from .up_process import free_port, running_up

HOSTILE_FORM_VALUES = [
    "$(touch /tmp/rb-canary)",
    "a; touch /tmp/rb-canary",
    "-oProxyCommand=touch /tmp/rb-canary",
    "acme\n",
    "../../../../etc/passwd",
    "ａｃｍｅ",
    "",
]
SCHEDULE = {"cron": "0 3 * * 1", "timezone": "Europe/Berlin", "parameters": {"dir": "/tmp"}}


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - http on loopback
        return json.loads(response.read())


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize(
    ("flag", "what"), [("--prefect-port", "Prefect server"), ("--receiver-port", "alert receiver")]
)
def test_a_taken_port_is_one_clear_line_and_nothing_starts(tmp_path, flag, what):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        other = "--receiver-port" if flag == "--prefect-port" else "--prefect-port"
        result = run_cli(
            "up", flag, str(port), other, str(free_port()),
            env={"RUNBOOKS_DATA_DIR": str(tmp_path / "data")},
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: {what} port 127.0.0.1:{port} is taken (Address already in use); "
        f"stop what listens there or choose another port with {flag}"
    )
    assert not (tmp_path / "data" / "prefect").exists()  # no server was started


def _deployments(api_url: str):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        return {f"{d.name}": d for d in client.read_deployments()}


def test_up_serves_the_catalog_runs_ui_runs_and_stops_and_restarts_cleanly(tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError
    from prefect.settings import PREFECT_API_URL, temporary_settings

    catalog = write_engine_catalog(
        tmp_path / "catalog", ordered(schedules=[SCHEDULE]), gated(), typed()
    )
    mirror = f"sqlite:///{tmp_path / 'mirror.db'}"
    env = {"RUNBOOKS_CATALOG": str(catalog), "RUNBOOKS_DATABASE_URL": mirror}
    work = tmp_path / "work"
    work.mkdir()

    with running_up(tmp_path, env) as up:
        # The UI asks the server where its API is: the address really served, not :4200.
        assert _get_json(f"{up.ui_url}/ui-settings")["api_url"] == up.api_url
        assert _get_json(f"{up.receiver_url}/healthz")
        out = up.output()
        assert up.ui_url in out and up.receiver_url in out
        assert "serving 3 deployments (1 schedules" in out

        deployments = _deployments(up.api_url)
        assert set(deployments) == {"ordered", "gated", "typed"}
        ordered_deployment = deployments["ordered"]
        assert not ordered_deployment.paused
        [schedule] = ordered_deployment.schedules
        assert schedule.schedule.cron == "0 3 * * 1"
        assert schedule.schedule.timezone == "Europe/Berlin"
        assert schedule.active

        with (
            temporary_settings({PREFECT_API_URL: up.api_url}),
            get_client(sync_client=True) as client,
        ):
            # What the UI form does: a bad value is refused before a run exists.

            def people_runs() -> list:  # not the scheduler's own runs, which come and go
                return [r for r in client.read_flow_runs() if not r.auto_scheduled]

            with pytest.raises(PrefectHTTPStatusError) as refused:
                client.create_flow_run_from_deployment(
                    ordered_deployment.id, parameters={"parameters": {"dir": "../etc"}}
                )
            assert refused.value.response.status_code == 409
            # Every parameter type's hostile values, as a person could type them in the form.
            typed_id = deployments["typed"].id
            for name in HOSTILE_BY_TYPE:
                for value in HOSTILE_FORM_VALUES:
                    with pytest.raises(PrefectHTTPStatusError) as refused:
                        client.create_flow_run_from_deployment(
                            typed_id, parameters={"parameters": {"dir": "/tmp", f"p_{name}": value}}
                        )
                    assert refused.value.response.status_code == 409, (name, value)
            for name, value in [("p_integer", 11), ("p_integer", 0), ("p_number", 1.5)]:
                with pytest.raises(PrefectHTTPStatusError) as refused:
                    client.create_flow_run_from_deployment(
                        typed_id, parameters={"parameters": {"dir": "/tmp", name: value}}
                    )
                assert refused.value.response.status_code == 409, (name, value)
            assert people_runs() == []

            flow_run = client.create_flow_run_from_deployment(
                ordered_deployment.id, parameters={"parameters": {"dir": str(work)}}
            )
            deadline = time.monotonic() + 120
            while True:
                state = client.read_flow_run(flow_run.id).state
                if state.is_final() or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert state.is_completed(), (state, up.output())
        [execution], steps = mirror_rows(mirror)
        assert execution.flow_run_id == flow_run.id
        assert execution.trigger == "ui"
        assert execution.status == "succeeded"
        assert [s.status for s in steps] == ["succeeded"] * 3
        assert (work / "log").read_text().split("\n")[:3] == ["run 1", "run 2", "run 3"]

        assert up.stop() == 0
        assert "stopped" in up.output()
        assert not _listening(up.prefect_port) and not _listening(up.receiver_port)

    # Stopped: schedules are paused, so nothing piles up while nobody serves them (read from
    # the server's own SQLite file in the data directory) ...
    prefect_db = sqlite3.connect(up.data_dir / "prefect" / "prefect.db")
    paused = dict(prefect_db.execute("select name, paused from deployment").fetchall())
    prefect_db.close()
    assert paused == {"ordered": 1, "gated": 1, "typed": 1}
    with running_up(tmp_path, env, prefect_port=up.prefect_port) as again:
        # ... and serving again brings them back (same server database in the data dir).
        deployments = _deployments(again.api_url)
        assert not deployments["ordered"].paused
        assert deployments["ordered"].schedules[0].active
        assert "mirror synced: 3 runbooks (0 new, 0 updated, 3 unchanged)" in again.output()
    assert again.process.returncode == 0
    uuid.UUID(str(execution.id))  # the first run's record survived the restart
    assert len(mirror_rows(mirror)[0]) == 1


def started_run(mirror: str, answer: dict) -> str:
    """The flow run an alert started. The receiver answers within 0.1 s: with the run's id
    when Prefect was quick ("triggered"), else before it ("received"); the row has it then."""

    from db.engine import make_engine, session_scope
    from db.models import AlertEvent

    assert answer["action"] in ("triggered", "received"), answer
    if answer["action"] == "triggered":
        return answer["flow_run_id"]
    engine = make_engine(mirror)
    deadline = time.monotonic() + 30
    try:
        while True:
            with session_scope(engine) as session:
                event = session.get(AlertEvent, answer["event_id"])
                if event.action == "triggered":
                    return str(event.flow_run_id)
            assert time.monotonic() < deadline, (event.action, event.reason)
            time.sleep(0.1)
    finally:
        engine.dispose()


def paged(work: str) -> dict:
    """An incident runbook whose first command records when it started."""
    data = ordered(slug="paged", title="Paged", type="incident_response", priority="high")
    data["rto"] = "15m"
    data["parameters"] = {
        "dir": data["parameters"]["dir"],
        "service": {"type": "slug", "description": "the service that alerted"},
    }
    data["steps"] = [
        {
            "id": "note",
            "title": "Note the alert",
            "run": {"script": 'date +%s.%N > "$RB_DIR/started-$RB_SERVICE"\n'},
            "verify": {"argv": ["test", "-s", "{{ dir }}/started-{{ service }}"]},
            "rollback": {"argv": ["rm", "-f", "{{ dir }}/started-{{ service }}"]},
        }
    ]
    return data


def paged_routes(work: str) -> dict:
    return {
        "routes": [
            {
                "name": "service-down",
                "description": "A service is down: note it.",
                "match": {"alertname": "ServiceDown"},
                "runbook": "paged",
                "parameters": {"service": {"label": "service"}, "dir": {"value": work}},
                "cooldown": "1m",
                "max_runs": 100,
                "window": "1h",
            }
        ]
    }


def test_an_alert_starts_its_runbook_in_a_warm_process_and_the_record_points_back(tmp_path):
    import httpx
    import yaml
    from sqlalchemy import select

    from db.engine import make_engine, session_scope
    from db.models import AlertEvent

    from .alert_helpers import TOKEN, alertmanager_payload, am_alert, bearer

    work = tmp_path / "work"
    work.mkdir()
    catalog = write_engine_catalog(tmp_path / "catalog", paged(str(work)))
    (catalog / "alert-routes.yaml").write_text(yaml.safe_dump(paged_routes(str(work))))
    mirror = f"sqlite:///{tmp_path / 'mirror.db'}"
    env = {
        "RUNBOOKS_CATALOG": str(catalog),
        "RUNBOOKS_DATABASE_URL": mirror,
        "RUNBOOKS_ALERT_TOKEN": TOKEN,
    }
    with running_up(tmp_path, env) as up:
        up.wait_for("runbooks are up", 5)
        body, headers = bearer(alertmanager_payload(am_alert(service="checkout")))
        response = httpx.post(
            f"{up.receiver_url}/alerts/alertmanager", content=body, headers=headers, timeout=10
        )
        assert response.status_code == 200, response.text
        [answer] = response.json()["alerts"]
        run_id = started_run(mirror, answer)
        up.wait_for(f"alert run {run_id}", 10)
        assert "started by a warm run process" in up.output()

        deadline = time.monotonic() + 60
        while not mirror_rows(mirror)[0] or mirror_rows(mirror)[0][0].status == "running":
            assert time.monotonic() < deadline, up.output()
            time.sleep(0.3)
    [execution], [step] = mirror_rows(mirror)
    assert execution.status == "succeeded"
    assert execution.trigger == "alert"
    assert execution.triggered_by == "alertmanager:ServiceDown"
    assert execution.alert_event_id == answer["event_id"]
    assert str(execution.flow_run_id) == run_id
    assert execution.parameters == {"dir": str(work), "service": "checkout"}
    assert step.status == "succeeded" and (work / "started-checkout").exists()
    engine = make_engine(mirror)
    with session_scope(engine) as session:
        event = session.scalars(select(AlertEvent)).one()
        assert (event.action, event.route, event.execution_id) == (
            "triggered",
            "service-down",
            execution.id,
        )
    engine.dispose()


def test_a_resolved_alert_cancels_its_run_waiting_for_approval(tmp_path):
    import httpx
    import yaml
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from .alert_helpers import TOKEN, alertmanager_payload, am_alert, bearer

    work = tmp_path / "work"
    work.mkdir()
    held = gated()
    held.update(type="incident_response", priority="high", rto="15m")
    catalog = write_engine_catalog(tmp_path / "catalog", held)
    routes = {
        "routes": [
            {
                "name": "needs-a-person",
                "description": "Starts the gated runbook.",
                "match": {"alertname": "ServiceDown"},
                "runbook": "gated",
                "parameters": {"dir": {"value": str(work)}},
                "cooldown": "1m",
                "max_runs": 5,
                "window": "1h",
            }
        ]
    }
    (catalog / "alert-routes.yaml").write_text(yaml.safe_dump(routes))
    mirror = f"sqlite:///{tmp_path / 'mirror.db'}"
    env = {
        "RUNBOOKS_CATALOG": str(catalog),
        "RUNBOOKS_DATABASE_URL": mirror,
        "RUNBOOKS_ALERT_TOKEN": TOKEN,
    }
    alert = am_alert(fingerprint="f00d", service="checkout")
    with (
        running_up(tmp_path, env) as up,
        temporary_settings({PREFECT_API_URL: up.api_url}),
        get_client(sync_client=True) as client,
    ):
        body, headers = bearer(alertmanager_payload(alert))
        fired = httpx.post(f"{up.receiver_url}/alerts/alertmanager", content=body, headers=headers)
        [answer] = fired.json()["alerts"]
        run_id = started_run(mirror, answer)

        deadline = time.monotonic() + 60
        while not client.read_flow_run(run_id).state.is_paused():
            assert time.monotonic() < deadline, up.output()
            time.sleep(0.3)
        assert (work / "s1").exists() and not (work / "s2").exists()

        resolved = dict(alert, status="resolved", endsAt="2026-12-04T10:30:00.000Z")
        body, headers = bearer(alertmanager_payload(resolved))
        answered = httpx.post(
            f"{up.receiver_url}/alerts/alertmanager", content=body, headers=headers
        )
        assert answered.json()["alerts"][0]["action"] == "cancelled_run", answered.text

        deadline = time.monotonic() + 60
        while not client.read_flow_run(run_id).state.is_final():
            assert time.monotonic() < deadline, up.output()
            time.sleep(0.3)
        assert client.read_flow_run(run_id).state.is_cancelled()
    [execution], _ = mirror_rows(mirror)
    assert execution.status == "cancelled"
    assert not (work / "s2").exists()  # the step waiting for approval never ran

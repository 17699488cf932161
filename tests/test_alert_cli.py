"""`runbooks receiver`: the real console script, as an operator starts it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import httpx
import pytest

from .alert_helpers import (
    TOKEN,
    alertmanager_payload,
    am_alert,
    bearer,
    free_port,
    register_deployment,
    write_alert_catalog,
)
from .conftest import RUNBOOKS_BIN, run_cli


def test_receiver_needs_a_prefect_server(tmp_path):
    result = run_cli(
        "receiver", env={"PREFECT_API_URL": "", "RUNBOOKS_DATA_DIR": str(tmp_path / "data")}
    )

    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: PREFECT_API_URL is not set: the receiver creates runs on a running Prefect "
        "server (`runbooks up` starts one)"
    )


@pytest.mark.usefixtures("prefect_server")  # PREFECT_API_URL is set in this process
def test_a_taken_port_is_one_clear_line(tmp_path, cli_in_process):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = cli_in_process(
            "receiver",
            "--port",
            str(port),
            env={"RUNBOOKS_DATABASE_URL": f"sqlite:///{tmp_path / 'mirror.db'}"},
        )

    assert code == 1
    assert err.strip() == (
        f"error: cannot listen on 127.0.0.1:{port}: the port is in use (another receiver? "
        "choose one with --port or RUNBOOKS_RECEIVER_PORT)"
    )


@pytest.mark.usefixtures("prefect_server")
def test_receiver_migrates_the_mirror_serves_alerts_and_stops_on_sigterm(tmp_path, prefect_server):
    slug = "probe-cli"
    catalog = write_alert_catalog(tmp_path / "catalog", slug)
    register_deployment(catalog, slug)
    port = free_port()
    mirror = tmp_path / "fresh" / "mirror.db"  # does not exist yet: the command creates it
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOKS_")}
    env.update(
        {
            "PREFECT_API_URL": prefect_server,
            "RUNBOOKS_DATABASE_URL": f"sqlite:///{mirror}",
            "RUNBOOKS_CATALOG": str(catalog),
            "RUNBOOKS_ALERT_TOKEN": TOKEN,
            # The answer waits for the run (this test reads its action); no warm process
            # takes the run either, nothing serves this deployment.
            "RUNBOOKS_ALERT_ANSWER_WITHIN_SECONDS": "30",
        }
    )
    process = subprocess.Popen(
        [str(RUNBOOKS_BIN), "receiver", "--port", str(port), "--warm-runs", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"{url}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "the receiver did not start"
                time.sleep(0.2)
        answer = httpx.post(
            f"{url}/alerts/alertmanager",
            content=bearer(alertmanager_payload(am_alert(service="web", host="app1.internal")))[0],
            headers=bearer({})[1],
        )
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)

    assert health.json() == {"status": "ok", "database": True, "prefect": True}
    assert answer.status_code == 200, answer.text
    assert answer.json()["alerts"][0]["action"] == "triggered"
    assert process.returncode == 0, err
    assert f"alert receiver on http://127.0.0.1:{port}: /alerts/alertmanager, " in out
    assert "/alerts/pagerduty (not configured: answers 401)" in out
    assert TOKEN not in out + err
    assert mirror.exists()

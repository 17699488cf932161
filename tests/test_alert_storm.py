"""A storm: 1000 deliveries of 20 alerts (each alert 50 times), all at once, start exactly one
run per alert, and every delivery leaves its row. Also the receiver's latency, measured."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections import Counter

import httpx
import pytest

from .alert_helpers import (
    alertmanager_payload,
    am_alert,
    bearer,
    receivers,
)


@pytest.fixture
def start_receiver(tmp_path, prefect_server):
    """start_receiver(database_url=None, *, api_url=None, **settings) -> a running Receiver
    whose runbook is deployed on the session's Prefect server."""
    with receivers(tmp_path, prefect_server) as start:
        yield start


pytestmark = pytest.mark.usefixtures("prefect_server")

ALERTS = 20
DELIVERIES_EACH = 50
CONCURRENCY = 50


async def _send_all(url: str, payloads: list[dict]) -> list[tuple[httpx.Response, float]]:
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    gate = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def send(payload: dict) -> tuple[httpx.Response, float]:
            body, headers = bearer(payload)
            async with gate:
                started = time.perf_counter()
                response = await client.post("/alerts/alertmanager", content=body, headers=headers)
                return response, time.perf_counter() - started

        return await asyncio.gather(*(send(p) for p in payloads))


def test_storm_of_repeated_deliveries_starts_exactly_one_run_per_alert(
    start_receiver, database_url
):
    receiver = start_receiver(database_url)
    alerts = [am_alert(service="webapp", host=f"app{i}.example.com") for i in range(ALERTS)]
    payloads = [alertmanager_payload(a) for a in alerts for _ in range(DELIVERIES_EACH)]
    random.Random(7).shuffle(payloads)

    started = time.perf_counter()
    results = asyncio.run(_send_all(receiver.url, payloads))
    took = time.perf_counter() - started

    odd = Counter(r.text for r, _ in results if r.status_code != 200)
    assert not odd, odd.most_common(3)
    actions = Counter(r.json()["alerts"][0]["action"] for r, _ in results)
    assert actions == {"triggered": ALERTS, "deduplicated": ALERTS * (DELIVERIES_EACH - 1)}
    assert receiver.runs() == ALERTS
    rows = receiver.rows()
    assert len(rows) == len(payloads)
    triggered = [r for r in rows if r.action == "triggered"]
    assert len({r.group_key for r in triggered}) == ALERTS
    assert len({r.flow_run_id for r in triggered}) == ALERTS
    # every duplicate points at the run its alert started
    run_of = {r.group_key: r.flow_run_id for r in triggered}
    assert all(r.flow_run_id == run_of[r.group_key] for r in rows)
    latencies = sorted(t for _, t in results)
    print(
        f"\nstorm ({database_url.split(':')[0]}): {len(payloads)} deliveries in {took:.2f}s "
        f"at concurrency {CONCURRENCY}; latency p50 {statistics.median(latencies) * 1e3:.0f} ms, "
        f"p95 {latencies[int(len(latencies) * 0.95)] * 1e3:.0f} ms, max {latencies[-1] * 1e3:.0f} ms"
    )


def test_answers_do_not_wait_for_a_slow_prefect_and_the_runs_still_start_once(
    start_receiver, sqlite_url
):
    """The main job's receiver answers within `alert_answer_within_seconds` (0 here: never
    waits) while Prefect creates the run: repeats meanwhile are deduplicated against the
    delivery that is starting it, and each alert still gets exactly one run."""
    receiver = start_receiver(sqlite_url, answer_within=0.0)
    alerts = [am_alert(service="webapp", host=f"app{i}.example.com") for i in range(ALERTS)]
    payloads = [alertmanager_payload(a) for a in alerts for _ in range(10)]
    random.Random(11).shuffle(payloads)

    results = asyncio.run(_send_all(receiver.url, payloads))
    assert {r.status_code for r, _ in results} == {200}
    actions = Counter(r.json()["alerts"][0]["action"] for r, _ in results)
    assert set(actions) <= {"received", "triggered", "deduplicated"}
    assert actions["received"] + actions["triggered"] == ALERTS, actions

    deadline = time.monotonic() + 60  # the creations go on after the answers
    while Counter(r.action for r in receiver.rows())["triggered"] < ALERTS:
        assert time.monotonic() < deadline, Counter(r.action for r in receiver.rows())
        time.sleep(0.2)
    rows = receiver.rows()
    assert Counter(r.action for r in rows) == {"triggered": ALERTS, "deduplicated": 9 * ALERTS}
    assert receiver.runs() == ALERTS
    assert len({r.flow_run_id for r in rows if r.action == "triggered"}) == ALERTS


def test_each_alert_is_answered_with_what_became_of_it(start_receiver):
    # The latencies are printed for information; bench/alert_latency.py measures them (a timed
    # assertion here would fail on a loaded machine, not on a slow receiver).
    receiver = start_receiver()
    timings: dict[str, list[float]] = {"triggered": [], "deduplicated": [], "ignored": []}
    with httpx.Client(base_url=receiver.url, timeout=30) as client:

        def post(payload: dict) -> str:
            body, headers = bearer(payload)
            started = time.perf_counter()
            response = client.post("/alerts/alertmanager", content=body, headers=headers)
            action = response.json()["alerts"][0]["action"]
            timings[action].append(time.perf_counter() - started)
            return action

        post(alertmanager_payload(am_alert(service="webapp", host="warm.example.com")))  # cold
        timings["triggered"].clear()
        for i in range(10):
            alert = am_alert(service="webapp", host=f"app{i}.example.com")
            assert post(alertmanager_payload(alert)) == "triggered"
            assert post(alertmanager_payload(alert)) == "deduplicated"
            assert post(alertmanager_payload(am_alert("Unrouted", host=f"x{i}"))) == "ignored"

    medians = {action: statistics.median(t) for action, t in timings.items()}
    print(
        "\nreceiver latency (median of 10, HTTP round trip): "
        + ", ".join(f"{a} {m * 1e3:.1f} ms" for a, m in medians.items())
    )
    assert {action: len(t) for action, t in timings.items()} == {
        "triggered": 10,
        "deduplicated": 10,
        "ignored": 10,
    }

"""Alerts, measured against a real `runbooks up` (Prefect server, runner, receiver, mirror).

1. Alert received -> first step's command started, over --alerts alerts (default 20), each a
   new alert (its own fingerprint), sent one at a time once the previous run finished. The
   runbook's first command writes its own start time (`date +%s.%N`); the latency is that
   minus the moment the POST was sent. Two arms in the same run, so they share the machine's
   mood: `warm` (the main job as shipped: the run is handed to a run process that is already
   imported) and `runner` (RUNBOOKS_WARM_RUNS=0: Prefect's runner finds the run at its next
   poll, every second, and starts a fresh process). Goal: p95 <= 2 s.
2. Receiver latency under load: --load alerts (default 1000) over --seconds (default 60), i.e.
   1000 alerts/min, spread over 20 fingerprints, sent on a fixed schedule whatever the answers
   (an open-loop load: a slow answer does not slow the sender down). Per request latency
   p50/p95/p99, then the mirror is asked whether every alert was stored and how many runs were
   started (exactly one per fingerprint expected). Goals: p99 <= 200 ms, nothing lost.

    .venv/bin/python bench/alert_latency.py [--alerts 20] [--load 1000 --seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import yaml  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from db.engine import make_engine, session_scope  # noqa: E402
from db.models import AlertEvent  # noqa: E402
from tests.alert_helpers import TOKEN, alertmanager_payload, am_alert, bearer  # noqa: E402
from tests.engine_catalog import write_engine_catalog  # noqa: E402
from tests.test_main_job import paged, paged_routes  # noqa: E402
from tests.up_process import running_up  # noqa: E402

PAUSE_BETWEEN_ALERTS = 4.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def describe(values: list[float], unit: str = "s", scale: float = 1.0) -> str:
    return (
        f"p50 {percentile(values, 50) * scale:.3f} {unit}, p95 {percentile(values, 95) * scale:.3f}"
        f" {unit}, max {max(values) * scale:.3f} {unit} (n={len(values)})"
    )


def write_catalog(tmp: Path) -> tuple[Path, Path]:
    work = tmp / "work"
    work.mkdir()
    catalog = write_engine_catalog(tmp / "catalog", paged(str(work)))
    # A cooldown of 1 s: the benchmark's alerts are new alerts, not repeats.
    routes = paged_routes(str(work))
    routes["routes"][0]["cooldown"] = "1s"
    (catalog / "alert-routes.yaml").write_text(yaml.safe_dump(routes))
    return catalog, work


def first_command_latencies(tmp: Path, alerts: int, warm_runs: int) -> tuple[list[float], int]:
    catalog, work = write_catalog(tmp)
    mirror = f"sqlite:///{tmp / 'mirror.db'}"
    env = {
        "RUNBOOKS_CATALOG": str(catalog),
        "RUNBOOKS_DATABASE_URL": mirror,
        "RUNBOOKS_ALERT_TOKEN": TOKEN,
        "RUNBOOKS_WARM_RUNS": str(warm_runs),
    }
    latencies = []
    with running_up(tmp, env) as up, httpx.Client(timeout=10) as client:
        for n in range(alerts):
            service = f"svc-{n}"
            body, headers = bearer(alertmanager_payload(am_alert(service=service)))
            sent = time.time()
            answer = client.post(
                f"{up.receiver_url}/alerts/alertmanager", content=body, headers=headers
            )
            answer.raise_for_status()
            # "received": answered before Prefect created the run, which still starts.
            assert answer.json()["alerts"][0]["action"] in ("triggered", "received"), answer.text
            started_file = work / f"started-{service}"
            deadline = time.monotonic() + 60
            while not started_file.exists() or not started_file.read_text().strip():
                if time.monotonic() > deadline:
                    raise SystemExit(f"alert {n}: no first command within 60 s\n{up.output()}")
                time.sleep(0.02)
            latencies.append(float(started_file.read_text()) - sent)
            wait_until_finished(mirror, n + 1)
            # Alerts minutes apart, as in life: the next one finds a warm process again (one
            # is imported 2 s after the last hand-off). The same pause in both arms.
            time.sleep(PAUSE_BETWEEN_ALERTS)
        warm = up.output().count("started by a warm run process")
    return latencies, warm


def wait_until_finished(mirror: str, count: int) -> None:
    from db.models import RunbookExecution

    engine = make_engine(mirror)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            with session_scope(engine) as session:
                done = session.scalar(
                    select(func.count())
                    .select_from(RunbookExecution)
                    .where(RunbookExecution.status != "running")
                )
            if done >= count:
                return
            time.sleep(0.1)
    finally:
        engine.dispose()


async def open_loop_load(url: str, total: int, seconds: float) -> list[float | None]:
    """Sends `total` alerts evenly over `seconds`; returns each latency (None: not 2xx)."""
    interval = seconds / total
    results: list[float | None] = [None] * total
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=200)) as client:

        async def one(n: int) -> None:
            body, headers = bearer(
                alertmanager_payload(am_alert(service=f"load-{n % 20}", fingerprint=f"fp{n % 20}"))
            )
            started = time.perf_counter()
            response = await client.post(url, content=body, headers=headers)
            if response.status_code == 200:
                results[n] = time.perf_counter() - started

        begin = time.perf_counter()
        tasks = []
        for n in range(total):
            delay = begin + n * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
    return results


def receiver_under_load(tmp: Path, total: int, seconds: float) -> None:
    catalog, _ = write_catalog(tmp)
    routes = yaml.safe_load((catalog / "alert-routes.yaml").read_text())
    routes["routes"][0]["cooldown"] = "1h"
    (catalog / "alert-routes.yaml").write_text(yaml.safe_dump(routes))
    mirror = f"sqlite:///{tmp / 'mirror.db'}"
    env = {
        "RUNBOOKS_CATALOG": str(catalog),
        "RUNBOOKS_DATABASE_URL": mirror,
        "RUNBOOKS_ALERT_TOKEN": TOKEN,
    }
    with running_up(tmp, env) as up:
        results = asyncio.run(
            open_loop_load(f"{up.receiver_url}/alerts/alertmanager", total, seconds)
        )
    answered = [r for r in results if r is not None]
    engine = make_engine(mirror)
    with session_scope(engine) as session:
        stored = session.scalar(select(func.count()).select_from(AlertEvent))
        triggered = session.scalar(
            select(func.count()).select_from(AlertEvent).where(AlertEvent.action == "triggered")
        )
    engine.dispose()
    print(
        f"receiver under {total / seconds * 60:.0f} alerts/min ({total} alerts, 20 fingerprints):"
    )
    print(
        f"  latency: {describe(answered, 'ms', 1000)}, p99 {percentile(answered, 99) * 1000:.1f} ms"
    )
    print(f"  answered 200: {len(answered)}/{total}; stored: {stored}; runs started: {triggered}")
    print("  goal: p99 <= 200 ms, nothing lost, 20 runs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alerts", type=int, default=20)
    parser.add_argument("--load", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--skip-load", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rb-bench-alerts-") as tmp:
        root = Path(tmp)
        arms = {}
        for name, warm in (("warm", 1), ("runner", 0)):
            (root / name).mkdir()
            arms[name] = first_command_latencies(root / name, args.alerts, warm)
        print(f"alert received -> first command started, {args.alerts} alerts one at a time:")
        for name, (latencies, warm_count) in arms.items():
            print(f"  {name:7s} {describe(latencies)}; {warm_count} started by a warm process")
        ratio = percentile(arms["warm"][0], 95) / percentile(arms["runner"][0], 95)
        print(f"  p95 warm/runner: {ratio:.2f}x; goal: p95 <= 2 s")
        if not args.skip_load:
            (root / "load").mkdir()
            receiver_under_load(root / "load", args.load, args.seconds)


if __name__ == "__main__":
    main()

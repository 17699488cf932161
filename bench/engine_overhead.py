"""Engine overhead against bare Prefect and against plain commands, measured in one run.

Arms, all against the same running Prefect server (a temporary one, SQLite), heartbeats on:
  plain   the step commands run directly: `true` then `true` (command + verification)
  bare    a sync Prefect flow whose steps are two tasks each, running the same commands
  engine  our runbook flow: per step a run task and a verify task, executor (output
          captured), verdicts, the log line and the mirror (SQLite): each step's row is
          committed before its command starts, its result with the next step's row
  mutating  the same steps marked as changing state, each with a rollback: its row also
          carries the compensation stack (rollback pending)
Every run starts once the server has gone quiet after the previous one (a 40-step flow
leaves it seconds of events and logs to work off), so no arm inherits another's backlog.
Wall time per flow includes a sync flow's exit, which joins the heartbeat thread and costs 1 s
or 3 s here at random (PREFECT-NOTES.md), so the arms are compared on their flow *bodies*:
bare times its step loop inside the flow; the engine's body is the run's own duration in the
mirror (execution row opened to closed). For N = 10 and N = 40 (median of --repeat runs) it
prints body times, the per-step marginal cost (slope between the two N), the ratio engine/bare,
and the engine's orchestration for 10 steps (body minus the plain commands' time). The ratio's
spread is a bootstrap over the repeats (resampled with replacement, 2000 rounds): its 5th to
95th percentile says how far this run's noise could move the figure. Wall medians are printed
for information.
With sshd installed it also runs 10 SSH steps and reports handshakes per run.

    .venv/bin/python bench/engine_overhead.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")

from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

STEP_COUNTS = (10, 40)  # a wide spread keeps the per-step slope steady on a noisy machine


def noop_runbook(steps: int, target: str = "local", mutating: bool = False) -> dict:
    data = {
        "slug": f"noop-{steps}" + ("-mutating" if mutating else ""),
        "title": f"{steps} no-op steps",
        "type": "maintenance",
        "priority": "low",
        "version": "1.0",
        "changelog": [{"version": "1.0", "date": "2026-12-04", "changes": ["bench"]}],
        "summary": "Benchmark.",
        "expected_duration": "1m",
        "steps": [
            {
                "id": f"s{i}",
                "title": f"Step {i}",
                "target": target,
                "run": {"argv": ["true"]},
                "verify": {"argv": ["true"]},
                **({"rollback": {"argv": ["true"]}} if mutating else {"changes_state": False}),
            }
            for i in range(1, steps + 1)
        ],
    }
    if target != "local":
        data["targets"] = {target: {"kind": "ssh", "description": "bench host"}}
    return data


def plain(steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        subprocess.run(["true"], check=True)
        subprocess.run(["true"], check=True)
    return time.perf_counter() - start


@task(cache_policy=NO_CACHE, persist_result=False)
def bare_run() -> int:
    return subprocess.run(["true"], check=True).returncode


@task(cache_policy=NO_CACHE, persist_result=False)
def bare_verify() -> int:
    return subprocess.run(["true"], check=True).returncode


@flow(persist_result=False)
def bare_flow(steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        bare_run()
        bare_verify()
    return time.perf_counter() - start


def _children_cpu_seconds() -> float:
    """CPU time used so far by this process's children (the test harness's Prefect server)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def wait_for_quiet_server(limit: float = 20.0) -> None:
    """Wait until the server has worked off the previous run's events and logs (it goes on for
    seconds after a 40-step flow returns), so each run starts from the same quiet server and
    not from the backlog of whichever arm ran before it."""
    deadline = time.monotonic() + limit
    before = _children_cpu_seconds()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = _children_cpu_seconds()
        if now - before < 0.02:  # under 8% of a core
            return
        before = now


def median(values: list[float]) -> float:
    return statistics.median(values)


def ratio_spread(
    samples: dict[str, dict[int, list[float]]],
    arm: str,
    step_counts: tuple[int, int],
    rounds: int = 2000,
) -> tuple[float, float]:
    """5th and 95th percentile of the per-step ratio arm/bare when each arm's repeats are
    resampled with replacement: the figure's spread from this run's own noise."""
    rng = random.Random(1)  # noqa: S311 - resampling, not secrets
    low, high = step_counts

    def slope(name: str) -> float:
        at_low = median(rng.choices(samples[name][low], k=len(samples[name][low])))
        at_high = median(rng.choices(samples[name][high], k=len(samples[name][high])))
        return (at_high - at_low) / (high - low)

    ratios = sorted(slope(arm) / slope("bare") for _ in range(rounds))
    return ratios[rounds // 20], ratios[rounds - rounds // 20 - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    from prefect.testing.utilities import prefect_test_harness

    with tempfile.TemporaryDirectory() as scratch, prefect_test_harness(server_startup_timeout=60):
        scratch_dir = Path(scratch)
        os.environ["RUNBOOKS_DATABASE_URL"] = f"sqlite:///{scratch_dir / 'mirror.db'}"
        os.environ["RUNBOOKS_DATA_DIR"] = str(scratch_dir / "data")
        from sqlalchemy import select

        from db.engine import make_engine, session_scope
        from db.models import RunbookExecution
        from flows.engine import build_flow
        from runbook_catalog import load_catalog
        from tests.catalog_factory import write_catalog

        catalog = load_catalog(
            write_catalog(
                scratch_dir / "catalog",
                [noop_runbook(n, mutating=m) for n in STEP_COUNTS for m in (False, True)],
            ),
            strict=True,
        )
        flows = {n: build_flow(catalog.runbooks[f"noop-{n}"]) for n in STEP_COUNTS}
        mutating_flows = {
            n: build_flow(catalog.runbooks[f"noop-{n}-mutating"]) for n in STEP_COUNTS
        }
        mirror = make_engine(os.environ["RUNBOOKS_DATABASE_URL"])

        def last_duration() -> float:
            with session_scope(mirror) as session:
                return session.scalars(
                    select(RunbookExecution.duration_seconds).order_by(
                        RunbookExecution.started_at.desc()
                    )
                ).first()

        # warm up: imports, first connections, server caches
        bare_flow(2)
        flows[10](parameters={}, return_state=True)

        def bare_arm(n: int) -> tuple[float, float]:
            start = time.perf_counter()
            body = bare_flow(n)
            return body, time.perf_counter() - start

        def engine_arm(built: dict) -> Callable[[int], tuple[float, float]]:
            def run(n: int) -> tuple[float, float]:
                start = time.perf_counter()
                state = built[n](parameters={}, return_state=True)
                wall = time.perf_counter() - start
                assert state.is_completed(), state.message
                return last_duration(), wall

            return run

        arms = {
            "bare": bare_arm,
            "engine": engine_arm(flows),
            "mutating": engine_arm(mutating_flows),
        }
        wait_for_quiet_server()
        bodies = {"plain": {n: median([plain(n) for _ in range(args.repeat)]) for n in STEP_COUNTS}}
        bodies |= {name: {} for name in arms}
        walls: dict[str, dict[int, float]] = {name: {} for name in arms}
        samples_by_arm: dict[str, dict[int, list[float]]] = {name: {} for name in arms}
        for n in STEP_COUNTS:
            samples: dict[str, list[tuple[float, float]]] = {name: [] for name in arms}
            order = list(arms)
            for repeat in range(args.repeat):
                # Interleaved and rotated, each from a quiet server: whatever drifts on the
                # machine during the benchmark falls on all arms alike.
                for name in order[repeat % 3 :] + order[: repeat % 3]:
                    wait_for_quiet_server()
                    samples[name].append(arms[name](n))
            for name, runs in samples.items():
                samples_by_arm[name][n] = [body for body, _ in runs]
                bodies[name][n] = median([body for body, _ in runs])
                walls[name][n] = median([wall for _, wall in runs])

        low, high = STEP_COUNTS
        print(f"engine overhead benchmark: flow bodies, median of {args.repeat}, seconds")
        print(f"{'arm':8} {'N=' + str(low):>8} {'N=' + str(high):>8} {'per step':>10}")
        slopes = {}
        for arm, by_n in bodies.items():
            slopes[arm] = (by_n[high] - by_n[low]) / (high - low)
            print(f"{arm:8} {by_n[low]:8.3f} {by_n[high]:8.3f} {slopes[arm] * 1000:8.1f}ms")
        print(
            f"per-step cost, engine step / bare Prefect task pair: "
            f"{slopes['engine'] / slopes['bare']:.2f}x read-only, "
            f"{slopes['mutating'] / slopes['bare']:.2f}x mutating (goal <= 1.5x)"
        )
        for arm in ("engine", "mutating"):
            low_ratio, high_ratio = ratio_spread(samples_by_arm, arm, STEP_COUNTS)
            print(
                f"  {arm}: 90% of bootstrap resamples between "
                f"{low_ratio:.2f}x and {high_ratio:.2f}x"
            )
        orchestration = bodies["engine"][low] - bodies["plain"][low]
        print(
            f"10-step run orchestration: {orchestration:.3f}s (goal < 0.5 s; engine body "
            f"{bodies['engine'][low]:.3f}s minus commands {bodies['plain'][low]:.3f}s)"
        )
        print(
            "wall medians incl. flow start and exit: "
            + ", ".join(f"{arm} N={n}: {walls[arm][n]:.2f}s" for arm in walls for n in STEP_COUNTS)
        )
        _ssh_handshakes(scratch_dir)


def _ssh_handshakes(scratch_dir: Path) -> None:
    if not Path("/usr/sbin/sshd").exists():
        print("ssh handshakes per run: skipped (no /usr/sbin/sshd)")
        return
    import yaml

    from runbook_catalog import load_catalog
    from tests.catalog_factory import write_catalog
    from tests.sshd import start_sshd

    with start_sshd(scratch_dir / "sshd") as sshd:
        inventory = scratch_dir / "inventory.yaml"
        inventory.write_text(yaml.safe_dump({"targets": {"host": sshd.inventory_entry()}}))
        os.environ["RUNBOOKS_INVENTORY"] = str(inventory)
        from flows.engine import build_flow

        data = noop_runbook(10, target="host")
        data["slug"] = "noop-ssh"
        catalog = load_catalog(write_catalog(scratch_dir / "ssh-catalog", [data]), strict=True)
        before = sshd.log().count("Accepted publickey")
        start = time.perf_counter()
        state = build_flow(catalog.runbooks["noop-ssh"])(parameters={}, return_state=True)
        took = time.perf_counter() - start
        handshakes = sshd.log().count("Accepted publickey") - before
        print(
            f"ssh: 10 steps (20 commands + workdir) in {took:.2f}s, "
            f"{handshakes} handshake(s) per run, state {state.type.value}"
        )


if __name__ == "__main__":
    main()

"""The multi-machine path end to end: a generated prefect.yaml, `prefect deploy --all` onto a
process work pool, a real `prefect worker start` subprocess that runs the deployment from
somewhere else than the project (the pull step finds it through RUNBOOKS_PROJECT_DIR), and the
mirror that the worker's runs write."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import yaml

from config import PROJECT_ROOT

from .catalog_factory import write_catalog
from .conftest import mirror_rows, run_cli
from .engine_catalog import ordered

PREFECT_BIN = Path(sys.executable).with_name("prefect")
POOL = "runbooks"
WORD_JOINER = "\u2060"


def worker_catalog(root: Path, scheduled_dir: Path) -> Path:
    runbook = ordered(
        schedules=[
            {
                "cron": "0 3 * * *",
                "timezone": "Europe/Berlin",
                "parameters": {"dir": str(scheduled_dir)},
            }
        ]
    )
    # A placeholder in a command, to see it reach the deployment's description intact.
    runbook["steps"][0]["verify"] = {"argv": ["test", "-e", "{{ dir }}/s1"]}
    note = {
        "slug": "ordered-tip",
        "title": "Read the log first",
        "type": "tip",
        "pinned": True,
        "runbooks": ["ordered"],
        "body": "Every step appends to the log in the directory; read it before a rerun.",
    }
    return write_catalog(root, [runbook], [note])


def prefect(*args: str, env: dict[str, str], cwd: Path = PROJECT_ROOT, timeout: float = 120):
    result = subprocess.run(
        [str(PREFECT_BIN), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"prefect {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the worker's own process group (it and the runs it started), then SIGKILL."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


async def wait_for(flow_run_ids, timeout: float = 120.0):
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    async with get_client() as client:
        while True:
            runs = [await client.read_flow_run(run_id) for run_id in flow_run_ids]
            if all(run.state and run.state.is_final() for run in runs):
                return runs
            if time.monotonic() > deadline:
                states = [(str(run.id), run.state and run.state.name) for run in runs]
                raise AssertionError(f"runs not finished after {timeout}s: {states}")
            await asyncio.sleep(0.5)


async def read_deployment(name: str):
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return await client.read_deployment_by_name(name)


async def delete_deployment_and_pool(name: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    async with get_client() as client:
        with contextlib.suppress(ObjectNotFound):
            deployment = await client.read_deployment_by_name(name)
            await client.delete_deployment(deployment.id)
        with contextlib.suppress(ObjectNotFound):
            await client.delete_work_pool(POOL)


def test_prefect_deploy_and_a_process_worker_run_the_runbook(tmp_path, prefect_server):
    timings: dict[str, float] = {}
    ui_dir, scheduled_dir = tmp_path / "ui-run", tmp_path / "scheduled-run"
    ui_dir.mkdir()
    scheduled_dir.mkdir()
    catalog = worker_catalog(tmp_path / "catalog", scheduled_dir)
    mirror_url = f"sqlite:///{tmp_path / 'mirror.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNBOOKS_", "PREFECT_"))}
    env |= {
        "PREFECT_API_URL": prefect_server,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # prefect.yaml's `schedules: []` then clears, as the catalog says (docs/deployments.md).
        "PREFECT_DEPLOYMENTS_CLEAR_SCHEDULES_ON_EMPTY": "true",
        "RUNBOOKS_CATALOG": str(catalog),
        # The deployer's own clone is elsewhere: what a worker runs must not depend on it.
        "RUNBOOKS_PROJECT_DIR": str(tmp_path / "not-the-workers-clone"),
    }
    prefect_yaml = tmp_path / "prefect.yaml"

    started = time.monotonic()
    result = run_cli("deployments", "write", "--file", str(prefect_yaml), env=env)
    assert result.returncode == 0, result.stderr
    prefect("work-pool", "create", POOL, "--type", "process", "--overwrite", env=env)
    prefect("--no-prompt", "deploy", "--all", "--prefect-file", str(prefect_yaml), env=env)
    timings["write + pool + deploy"] = time.monotonic() - started

    worker_env = env | {
        "RUNBOOKS_PROJECT_DIR": str(PROJECT_ROOT),
        "RUNBOOKS_DATABASE_URL": mirror_url,
        "RUNBOOKS_DATA_DIR": str(tmp_path / "data"),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }
    worker_log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [str(PREFECT_BIN), "worker", "start", "--pool", POOL, "--type", "process"],
        cwd=tmp_path,  # not the project: the pull step must find it
        env=worker_env,
        stdout=worker_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        started = time.monotonic()
        output = prefect(
            "deployment",
            "run",
            "ordered/ordered",
            "--params",
            json.dumps({"parameters": {"dir": str(ui_dir)}}),
            env=env,
        )
        ui_run_id = re.search(r"UUID: ([0-9a-f-]{36})", output).group(1)
        (ui_run,) = asyncio.run(wait_for([ui_run_id]))
        timings["worker start + run from the CLI"] = time.monotonic() - started

        # What the server schedules from the catalog's schedule: a backfill of the last two
        # days gives one due run with the schedule's parameters.
        started = time.monotonic()
        deployment = asyncio.run(read_deployment("ordered/ordered"))
        response = httpx.post(
            f"{prefect_server}/deployments/{deployment.id}/schedule",
            json={
                "start_time": (datetime.now(UTC) - timedelta(days=2)).isoformat(),
                "end_time": datetime.now(UTC).isoformat(),
                "max_runs": 1,
            },
        )
        response.raise_for_status()
        scheduled_run_ids = asyncio.run(_scheduled_run_ids(deployment.id))
        assert len(scheduled_run_ids) == 1
        (scheduled_run,) = asyncio.run(wait_for(scheduled_run_ids))
        timings["scheduled run"] = time.monotonic() - started
    finally:
        started = time.monotonic()
        stop(worker)
        worker_log.close()
        asyncio.run(delete_deployment_and_pool("ordered/ordered"))
        timings["stop worker + clean up"] = time.monotonic() - started
    log = (tmp_path / "worker.log").read_text()
    print(f"timings: {timings}")

    runs = [ui_run, scheduled_run]
    assert [run.state.type.value for run in runs] == ["COMPLETED", "COMPLETED"], log[-4000:]
    assert not ui_run.auto_scheduled and scheduled_run.auto_scheduled
    assert scheduled_run.parameters == {"parameters": {"dir": str(scheduled_dir)}}

    executions, steps = mirror_rows(mirror_url)
    by_run = {str(e.flow_run_id): e for e in executions}
    assert set(by_run) == {str(ui_run.id), str(scheduled_run.id)}
    ui_execution, scheduled_execution = by_run[str(ui_run.id)], by_run[str(scheduled_run.id)]
    # A deployment run without an explicit trigger is recorded as started from the UI; one the
    # scheduler created, as a scheduled run (flows/engine.py, _infer_trigger).
    assert (ui_execution.trigger, ui_execution.status) == ("ui", "succeeded")
    assert (scheduled_execution.trigger, scheduled_execution.status) == ("schedule", "succeeded")
    assert ui_execution.parameters["dir"] == str(ui_dir)
    assert scheduled_execution.parameters["dir"] == str(scheduled_dir)
    assert len(steps) == 6 and {s.status for s in steps} == {"succeeded"}
    for work in (ui_dir, scheduled_dir):
        assert (work / "log").read_text().splitlines() == ["run 1", "run 2", "run 3"]

    # The deployment as `prefect deploy` registered it from the generated file.
    generated = yaml.safe_load(prefect_yaml.read_text())["deployments"][0]
    assert deployment.description == generated["description"]
    assert "test -e '{" + WORD_JOINER + "{ dir }}/s1'" in deployment.description
    assert "Read the log first" in deployment.description
    assert deployment.entrypoint == "flows/runbooks.py:ordered"
    assert deployment.work_pool_name == POOL
    assert deployment.tags == ["type:maintenance", "priority:medium"]
    assert deployment.version == "1.0"
    assert deployment.parameters == {
        "parameters": {"fail_at": 0, "fail_how": "exit", "broken_rollback": 0}
    }
    assert deployment.global_concurrency_limit.limit == 1
    assert deployment.concurrency_options.collision_strategy.value == "ENQUEUE"
    (schedule,) = deployment.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone, schedule.active) == (
        "0 3 * * *",
        "Europe/Berlin",
        True,
    )
    assert schedule.parameters == {"parameters": {"dir": str(scheduled_dir)}}
    # Parameter descriptions come through the flow's signature into the UI form's schema.
    fields = deployment.parameter_openapi_schema["definitions"]["OrderedParameters"]
    assert fields["properties"]["dir"]["description"] == "where to write"
    # Resolved on the worker when a run starts, never from the deployer's environment.
    assert deployment.pull_steps[1] == {
        "prefect.deployments.steps.set_working_directory": {"directory": "{{ project-dir.stdout }}"}
    }


async def _scheduled_run_ids(deployment_id) -> list[str]:
    """The backfilled run: auto-scheduled and due (not runs the server's scheduler may add for
    the coming days)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
    )

    async with get_client() as client:
        runs = await client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            flow_run_filter=FlowRunFilter(
                expected_start_time=FlowRunFilterExpectedStartTime(before_=datetime.now(UTC))
            ),
        )
    return [str(run.id) for run in runs if run.auto_scheduled]

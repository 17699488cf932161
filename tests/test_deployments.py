"""Deployments from the catalog: the specs, the served `RunnerDeployment`s against the test
Prefect server, the maintenance schedules and their parameters, and prefect.yaml kept current."""

from __future__ import annotations

import asyncio
import itertools
import os
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import yaml

from db.engine import session_scope
from db.notes import add_note, set_pinned
from db.sync import sync_catalog
from flows.deployments import (
    catalog_pinned_notes,
    deployment_specs,
    mirror_pinned_notes,
    runner_deployments,
)
from flows.engine import build_flows
from flows.prefect_yaml import differences, render, render_catalog
from runbook_catalog import load_catalog

from .conftest import CATALOG, run_cli

MAINTENANCE = {
    # slug: days between two runs
    "routine-database-maintenance": 7,
    "ssl-certificate-renewal": 1,
    "dependency-updates": 7,
    "manual-database-backup": 1,
}


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(CATALOG, strict=True)


@pytest.fixture(scope="module")
def specs(catalog):
    return deployment_specs(catalog, catalog_pinned_notes(catalog))


@pytest.fixture(scope="module")
def flows(catalog):
    return build_flows(catalog)


def by_slug(specs):
    return {spec.slug: spec for spec in specs}


def test_one_spec_per_runbook_named_slug_slug(catalog, specs):
    assert [spec.slug for spec in specs] == sorted(catalog.runbooks)
    for spec in specs:
        attribute = spec.slug.replace("-", "_")
        assert spec.full_name == f"{spec.slug}/{spec.slug}"
        assert spec.entrypoint == f"flows/runbooks.py:{attribute}"
        assert spec.version == catalog.runbook(spec.slug).version
        assert (spec.concurrency_limit, spec.collision_strategy) == (1, "ENQUEUE")


def test_tags_say_type_and_priority_first(specs):
    spec = by_slug(specs)["database-outage"]
    assert spec.tags[:2] == ("type:incident_response", "priority:critical")
    assert set(spec.tags[2:]) == {"database", "patroni", "failover", "incident"}


def test_description_is_the_markdown_with_pinned_notes_only(catalog, specs):
    description = by_slug(specs)["manual-database-backup"].description
    assert description.startswith("# Manual Full Database Backup\n")
    assert "## Steps" in description and "## Notes" in description
    # pinned and linked
    assert "Always Verify Backups Before Major Changes" in description
    assert "Key Metrics to Monitor Daily" in description
    # linked but not pinned
    assert "Lesson Learned: Always Test Restores" not in description
    assert "Deployment Checklist" not in description
    # pinned but not linked
    assert "Never Share Database Credentials" not in description
    restore = by_slug(specs)["restore-tenant-data"].description
    assert "Always Verify Backups Before Major Changes" in restore


def test_parameter_defaults_sit_under_the_flow_parameter(specs):
    spec = by_slug(specs)["dependency-updates"]
    assert spec.parameters == {"parameters": {"canary_port": 8100, "app_port": 8000}}
    assert by_slug(specs)["restore-tenant-data"].parameters == {}


def test_the_maintenance_schedules(specs):
    from prefect.server.schemas.schedules import CronSchedule

    scheduled = {spec.slug: spec.schedules for spec in specs if spec.schedules}
    assert set(scheduled) == set(MAINTENANCE)
    start = datetime(2026, 12, 7, tzinfo=UTC)
    for slug, days in MAINTENANCE.items():
        (schedule,) = scheduled[slug]
        assert schedule.active and schedule.timezone, slug
        cron = CronSchedule(cron=schedule.cron, timezone=schedule.timezone)
        dates = asyncio.run(cron.get_dates(n=3, start=start))
        gaps = {b.timestamp() - a.timestamp() for a, b in itertools.pairwise(dates)}
        assert gaps == {timedelta(days=days).total_seconds()}, slug
    (weekly,) = scheduled["dependency-updates"]
    # A working day in working hours: the production install waits for a person's approval.
    assert weekly.cron == "0 9 * * 2" and weekly.timezone == "UTC"


def test_every_schedule_validates_against_its_runbook_parameters(specs, flows):
    """What Prefect hands a scheduled run (deployment defaults, then the schedule's parameters
    on top) passes the flow's own validation and becomes the runbook's parameter model."""
    for spec in specs:
        model = flows[spec.slug].fn.__annotations__["parameters"]
        for schedule in spec.schedules:
            assert set(schedule.flow_parameters) == {"parameters"}, spec.slug
            merged = {**spec.parameters, **schedule.flow_parameters}
            validated = flows[spec.slug].validate_parameters(merged)
            assert isinstance(validated["parameters"], model), spec.slug
            for name in schedule.flow_parameters["parameters"]:
                assert getattr(validated["parameters"], name) is not None, (spec.slug, name)


def test_runner_deployments_one_per_runbook(specs, flows):
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy

    deployments = runner_deployments(specs, flows)
    assert [d.full_name for d in deployments] == [f"{s.slug}/{s.slug}" for s in specs]
    for spec, deployment in zip(specs, deployments, strict=True):
        assert deployment.entrypoint == spec.entrypoint
        assert deployment.description == spec.description
        assert deployment.tags == list(spec.tags)
        assert deployment.version == spec.version
        assert deployment.parameters == spec.parameters
        assert deployment.concurrency_limit == 1
        assert deployment.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.ENQUEUE
        assert deployment.enforce_parameter_schema
        assert [
            (s.schedule.cron, s.schedule.timezone, s.parameters, s.active)
            for s in deployment.schedules
        ] == [(s.cron, s.timezone, s.flow_parameters, s.active) for s in spec.schedules]


def test_runner_deployments_refuse_a_flow_with_another_name(specs, flows):
    spec = by_slug(specs)["restore-tenant-data"]
    with pytest.raises(ValueError, match="is named 'database-outage'"):
        runner_deployments([spec], {"restore-tenant-data": flows["database-outage"]})


def test_served_deployments_on_the_server_schedule_valid_runs(specs, flows, prefect_server):
    """The scheduled deployments as the main job registers them; a run the server schedules
    from each schedule carries parameters the flow accepts."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    scheduled = [spec for spec in specs if spec.schedules]
    deployments = runner_deployments(scheduled, flows)
    ids = [deployment.apply() for deployment in deployments]

    async def scheduled_runs():
        now = datetime.now(UTC)
        found = {}
        async with get_client() as client, httpx.AsyncClient(base_url=prefect_server) as api:
            for spec, deployment_id in zip(scheduled, ids, strict=True):
                # A backfill of the last 8 days: at least one run of each schedule.
                response = await api.post(
                    f"/deployments/{deployment_id}/schedule",
                    json={
                        "start_time": (now - timedelta(days=8)).isoformat(),
                        "end_time": now.isoformat(),
                        "max_runs": 1,
                    },
                )
                response.raise_for_status()
                deployment = await client.read_deployment(deployment_id)
                runs = await client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
                )
                found[spec.slug] = (deployment, runs)
            for deployment_id in ids:
                await client.delete_deployment(deployment_id)
        return found

    for slug, (deployment, runs) in asyncio.run(scheduled_runs()).items():
        spec = by_slug(specs)[slug]
        assert deployment.concurrency_options.collision_strategy.value == "ENQUEUE", slug
        assert deployment.global_concurrency_limit.limit == 1, slug
        assert [s.schedule.cron for s in deployment.schedules] == [spec.schedules[0].cron]
        assert runs and all(run.auto_scheduled for run in runs), slug
        for run in runs:
            flows[slug].validate_parameters(run.parameters)
            # The schedule's `parameters` replace the deployment's defaults as a whole (Prefect
            # merges one level deep); the runbook's model fills in its own defaults.
            assert run.parameters == spec.schedules[0].flow_parameters


def test_mirror_pins_reach_the_description(catalog, migrated):
    sync_catalog(migrated, catalog)
    with session_scope(migrated) as session:
        set_pinned(session, "always-verify-backups", False)
        add_note(
            session,
            title="Check the replica before a backup",
            note_type="tip",
            body="Backups read from the leader; check the replica lag first so a failover "
            "during the backup does not surprise you.",
            tags=[],
            runbooks=["manual-database-backup"],
            author="ops",
            pinned=True,
        )
    pins = mirror_pinned_notes(migrated)
    description = by_slug(deployment_specs(catalog, pins))["manual-database-backup"].description
    assert "Check the replica before a backup" in description
    assert "Always Verify Backups Before Major Changes" not in description
    assert "Key Metrics to Monitor Daily" in description


# prefect.yaml


def test_prefect_yaml_is_deterministic_and_complete(catalog, specs):
    text = render_catalog(catalog)
    assert text == render(list(reversed(specs)))
    assert text.startswith("# generated by `runbooks deployments write`; do not edit\n")
    document = yaml.safe_load(text)
    assert [d["name"] for d in document["deployments"]] == sorted(catalog.runbooks)
    backup = next(d for d in document["deployments"] if d["name"] == "manual-database-backup")
    assert backup["entrypoint"] == "flows/runbooks.py:manual_database_backup"
    assert backup["work_pool"]["name"] == "runbooks"
    assert backup["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
    assert backup["schedules"] == [
        {
            "cron": "15 1 * * *",
            "timezone": "UTC",
            "parameters": {"parameters": {"database": "app"}},
            "active": True,
        }
    ]
    assert backup["tags"][:2] == ["type:backup_restore", "priority:high"]
    steps = [next(iter(step)) for step in document["pull"]]
    assert steps == [
        "prefect.deployments.steps.run_shell_script",
        "prefect.deployments.steps.set_working_directory",
    ]


def test_descriptions_survive_prefect_deploy_templating(catalog, specs):
    """`prefect deploy` empties `{{ name }}` placeholders it cannot fill; the runbooks' own
    placeholders in the descriptions must reach the UI as written."""
    from prefect.utilities.templating import apply_values

    document = yaml.safe_load(render_catalog(catalog))
    for deployment, spec in zip(document["deployments"], specs, strict=True):
        description = deployment["description"]
        assert apply_values(description, {}, remove_notset=True) == description
        assert description.replace("\u2060", "") == spec.description
    restore = by_slug(specs)["restore-tenant-data"].description
    assert "{{ backup_file }}" in restore


def test_committed_prefect_yaml_is_current():
    result = run_cli("deployments", "check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "prefect.yaml is up to date (13 deployments)"


def test_check_names_the_runbook_that_changed(catalog_copy, cli_in_process):
    env = {"RUNBOOKS_CATALOG": str(catalog_copy)}
    path = catalog_copy / "runbooks" / "routine-database-maintenance.yaml"
    data = yaml.safe_load(path.read_text())
    major, minor = data["version"].split(".")
    data["version"] = f"{major}.{int(minor) + 1}"  # a new version, whatever the current one
    data["changelog"].insert(
        0, {"version": data["version"], "date": "2026-12-05", "changes": ["x"]}
    )
    data["schedules"][0]["cron"] = "30 3 * * 0"
    path.write_text(yaml.safe_dump(data))

    code, out, err = cli_in_process("deployments", "check", env=env)
    assert code == 1 and out == ""
    assert err == (
        "error: prefect.yaml is out of date: routine-database-maintenance (description, "
        "schedules, version); run `runbooks deployments write`\n"
    )


def test_write_then_check_a_file(tmp_path, catalog_copy, cli_in_process):
    env = {"RUNBOOKS_CATALOG": str(catalog_copy)}
    target = tmp_path / "prefect.yaml"
    code, out, _ = cli_in_process("deployments", "check", "--file", str(target), env=env)
    assert code == 1
    code, out, _ = cli_in_process("deployments", "write", "--file", str(target), env=env)
    assert (code, out) == (0, f"wrote {target} (13 deployments)\n")
    code, out, _ = cli_in_process("deployments", "write", "--file", str(target), env=env)
    assert (code, out) == (0, "prefect.yaml is up to date (13 deployments)\n")
    data = yaml.safe_load((catalog_copy / "runbooks" / "restore-tenant-data.yaml").read_text())
    data["slug"] = "restore-tenant-files"
    (catalog_copy / "runbooks" / "restore-tenant-files.yaml").write_text(yaml.safe_dump(data))
    code, _, err = cli_in_process("deployments", "check", "--file", str(target), env=env)
    assert code == 1
    assert err == (
        "error: prefect.yaml is out of date: missing deployment(s) restore-tenant-files; "
        "run `runbooks deployments write`\n"
    )


def test_differences_name_layout_and_top_level_changes(catalog):
    text = render_catalog(catalog)
    assert differences(text, text) is None
    assert differences(text.replace("do not edit", "edit"), text) == "comments or layout differ"
    assert differences(text.replace("name: runbooks", "name: other", 1), text) == (
        "application-crash (work_pool)"
    )
    assert differences("deployments: [", text) == "it is not valid YAML"


PULL = """
import asyncio, json, os, sys
from prefect.deployments.steps.core import run_steps
from flows.prefect_yaml import PULL_STEPS

outcomes = []
for value in sys.argv[1:]:  # "-": not set at all
    os.environ.pop("RUNBOOKS_PROJECT_DIR", None)
    if value != "-":
        os.environ["RUNBOOKS_PROJECT_DIR"] = value
    try:
        asyncio.run(run_steps(PULL_STEPS, print_function=lambda *a, **k: None))
        outcomes.append(["entered", os.getcwd()])
    except Exception as exc:  # the step's error, caused by the script's
        outcomes.append(["refused", f"{exc}: {exc.__cause__}"])
print(json.dumps(outcomes))
"""


def test_pull_steps_enter_the_workers_clone(tmp_path, prefect_server):
    """The steps as a worker runs them: into RUNBOOKS_PROJECT_DIR, or a one-line reason when
    it is not set or empty."""
    import json
    import subprocess
    import sys

    clone = tmp_path / "clone"
    clone.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "RUNBOOKS_PROJECT_DIR"}
    env["PREFECT_API_URL"] = prefect_server  # Prefect resolves templates through its API
    result = subprocess.run(
        [sys.executable, "-c", PULL, str(clone), "-", ""],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    entered, *refused = json.loads(result.stdout.strip().splitlines()[-1])
    assert entered == ["entered", str(clone)]
    for outcome, reason in refused:
        assert outcome == "refused"
        assert "RUNBOOKS_PROJECT_DIR is not set on this worker" in reason

"""The `runbooks` console script as a person uses it: exit codes, one-line errors, output."""

from __future__ import annotations

import json
import sqlite3

import pytest

from .catalog_factory import runbook, write_catalog
from .conftest import run_cli

HOSTILE_TENANT_IDS = [
    "$(touch {canary})",
    "`touch {canary}`",
    "a; touch {canary}",
    "a && touch {canary}",
    "-oProxyCommand=touch {canary}",
    "acme\n",
    "../../etc/passwd",
    "ａｃｍｅ",
    "acme|touch {canary}",
    "postgresql://evil/db",
]


@pytest.fixture
def env(tmp_path):
    return {"RUNBOOKS_DATABASE_URL": f"sqlite:///{tmp_path / 'mirror.db'}"}


def test_validate_the_real_catalog(env):
    result = run_cli("validate", env=env)
    assert result.returncode == 0, result.stderr
    assert "13 runbooks and 8 notes are valid" in result.stdout


def test_validate_reports_every_problem_and_fails(tmp_path, env):
    root = write_catalog(
        tmp_path / "catalog",
        [runbook(expected_duration=None), runbook(slug="b", priority="critical")],
    )
    result = run_cli("validate", env=env | {"RUNBOOKS_CATALOG": str(root)})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "catalog/runbooks/b.yaml > b > rto: a critical runbook needs an RTO (recovery time "
        "objective) [RB006]",
        "catalog/runbooks/demo.yaml > demo > expected_duration: every runbook needs an expected "
        "duration [RB008]",
        f"error: 2 problem(s) in {root}; 0 runbook(s) and 0 note(s) are valid",
    ]
    as_json = json.loads(
        run_cli("validate", "--json", env=env | {"RUNBOOKS_CATALOG": str(root)}).stdout
    )
    assert [p["code"] for p in as_json["problems"]] == ["RB006", "RB008"]


def test_sync_twice_says_nothing_to_write(env, tmp_path):
    first = run_cli("sync", env=env)
    assert first.returncode == 0, first.stderr
    assert "synced: 13 runbooks, 8 catalog notes" in first.stdout
    second = run_cli("sync", env=env)
    assert second.returncode == 0
    assert "nothing to write: 13 runbooks and 8 notes already in sync" in second.stdout
    db = sqlite3.connect(tmp_path / "mirror.db")
    assert db.execute("select count(*) from runbook_versions").fetchone() == (13,)


def test_sync_refuses_changed_content_without_version(env, tmp_path):
    root = write_catalog(tmp_path / "catalog", [runbook()])
    assert run_cli("sync", env=env | {"RUNBOOKS_CATALOG": str(root)}).returncode == 0
    write_catalog(root, [runbook(title="Changed")])
    result = run_cli("sync", env=env | {"RUNBOOKS_CATALOG": str(root)})
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "refused: demo: content changed but the version is still 1.0; raise version and add a "
        "changelog entry",
        "error: sync refused for 1 item(s) (nothing written)",
    ]


def test_list_json_and_show_markdown(env):
    listed = json.loads(run_cli("list", "--json", env=env).stdout)
    assert len(listed) == 13
    assert {r["slug"] for r in listed if r["type"] == "disaster_recovery"} == {
        "full-database-recovery",
        "complete-system-recovery",
    }
    shown = run_cli("show", "restore-tenant-data", "--markdown", env=env)
    assert shown.returncode == 0
    text = shown.stdout
    assert text.startswith("# Restore Single Tenant Data\n")
    assert "pg_restore --list '{{ backup_file }}'" in text
    assert "*Rollback:*" in text and "*Verify:*" in text
    assert "## Notes" in text  # the catalog links notes to this runbook


def test_show_unknown_runbook_is_one_line(env):
    result = run_cli("show", "nope", env=env)
    assert result.returncode == 1
    assert result.stderr == "error: no runbook 'nope' (see `runbooks list`)\n"


def test_plan_renders_and_runs_nothing(env, tmp_path):
    result = run_cli(
        "plan", "restore-tenant-data", "-p", "tenant_id=acme-jewels", "--examples", env=env
    )
    assert result.returncode == 0, result.stderr
    assert "nothing is run" in result.stdout
    assert "pg_restore --list /var/backups/postgres/nightly/app-20261203.dump" in result.stdout
    assert "RB_TENANT_ID=acme-jewels" in result.stdout
    assert not (tmp_path / "mirror.db").exists()  # plan needs no database


@pytest.mark.parametrize("template", HOSTILE_TENANT_IDS)
def test_plan_refuses_hostile_values_and_nothing_runs(env, tmp_path, template):
    canary = tmp_path / "canary"
    value = template.format(canary=canary)
    result = run_cli(
        "plan", "restore-tenant-data", "--examples", "-p", f"tenant_id={value}", env=env
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: parameter tenant_id: must be a slug")
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""
    assert not canary.exists()


def test_plan_refuses_unknown_and_missing_parameters(env):
    unknown = run_cli("plan", "restore-tenant-data", "--examples", "-p", "tenant=acme", env=env)
    assert unknown.returncode == 1
    assert unknown.stderr == (
        "error: parameter tenant: restore-tenant-data has no such parameter "
        "(it takes: tenant_id, backup_file)\n"
    )
    missing = run_cli("plan", "restore-tenant-data", env=env)
    assert missing.stderr == "error: parameter tenant_id: is required\n"
    malformed = run_cli("plan", "restore-tenant-data", "-p", "tenant_id", env=env)
    assert malformed.stderr == "error: parameter 'tenant_id': write it as name=value\n"


def test_notes_commands(env):
    assert run_cli("sync", env=env).returncode == 0
    listed = json.loads(run_cli("notes", "--json", env=env).stdout)
    assert len(listed) == 8
    pinned = [n["pinned"] for n in listed]
    assert pinned == sorted(pinned, reverse=True)  # pinned first
    added = run_cli(
        "notes",
        "add",
        "--title",
        "Check replica lag before failover",
        "--type",
        "tip",
        "--body",
        "Look at pg_stat_replication.replay_lag on the leader before any failover.",
        "--runbook",
        "database-outage",
        "--tag",
        "patroni",
        env=env,
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "added note check-replica-lag-before-failover"
    for _ in range(3):
        assert (
            run_cli("notes", "helpful", "check-replica-lag-before-failover", env=env).returncode
            == 0
        )
    assert run_cli("notes", "pin", "check-replica-lag-before-failover", env=env).returncode == 0
    by_runbook = json.loads(
        run_cli("notes", "--runbook", "database-outage", "--json", env=env).stdout
    )
    mine = next(n for n in by_runbook if n["slug"] == "check-replica-lag-before-failover")
    assert (mine["helpful_count"], mine["pinned"], mine["source"]) == (3, True, "admin")
    tips = json.loads(run_cli("notes", "--type", "tip", "--json", env=env).stdout)
    assert {n["type"] for n in tips} == {"tip"} and len(tips) == 4
    tagged = json.loads(run_cli("notes", "--tag", "patroni", "--json", env=env).stdout)
    assert [n["slug"] for n in tagged] == ["check-replica-lag-before-failover"]
    shown = run_cli("show", "database-outage", "--markdown", env=env).stdout
    assert "Tip: Check replica lag before failover" in shown  # admins' notes appear beside it
    # the admin's note and counts survive another sync
    assert run_cli("sync", env=env).returncode == 0
    again = json.loads(
        run_cli("notes", "show", "check-replica-lag-before-failover", "--json", env=env).stdout
    )
    assert again["helpful_count"] == 3


def test_notes_errors_are_one_line(env):
    assert run_cli("sync", env=env).returncode == 0
    missing = run_cli("notes", "pin", "ghost", env=env)
    assert (missing.returncode, missing.stderr) == (1, "error: no admin note with slug 'ghost'\n")
    bad_runbook = run_cli(
        "notes",
        "add",
        "--title",
        "T",
        "--type",
        "tip",
        "--body",
        "x" * 50,
        "--runbook",
        "ghost",
        env=env,
    )
    assert bad_runbook.stderr == "error: runbook: unknown runbook(s) ghost (run `runbooks sync`?)\n"
    short = run_cli("notes", "add", "--title", "T", "--type", "tip", "--body", "short", env=env)
    assert short.returncode == 1
    assert short.stderr.startswith("error: body: String should have at least 40 characters")


def test_postgres_url_without_driver_works(postgres_url):
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    result = run_cli("sync", env={"RUNBOOKS_DATABASE_URL": plain})
    assert result.returncode == 0, result.stderr
    assert "synced: 13 runbooks" in result.stdout

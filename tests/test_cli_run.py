"""`runbooks run`, `history`, `stats` and `reconcile` as a person uses them, in subprocesses
against the test Prefect server; and every parameter type refusing hostile values through
`plan` and `run` before anything runs."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from db.engine import make_engine, session_scope
from db.models import RunbookExecution

from .conftest import run_cli
from .engine_catalog import HOSTILE_BY_TYPE, gated, ordered, typed, write_engine_catalog

HOSTILE = [
    "$(touch {canary})",
    "`touch {canary}`",
    "a; touch {canary}",
    "a && touch {canary}",
    "a | touch {canary}",
    "-oProxyCommand=touch {canary}",
    "1\n",
    "../../../../../{canary}",
    "ａｃｍｅ",
    "postgresql://evil/db",
    "",
]


@pytest.fixture
def env(tmp_path, prefect_server):
    catalog = write_engine_catalog(tmp_path / "catalog", ordered(), gated(), typed())
    return {
        "PREFECT_API_URL": prefect_server,
        "RUNBOOKS_CATALOG": str(catalog),
        "RUNBOOKS_DATABASE_URL": f"sqlite:///{tmp_path / 'mirror.db'}",
        "RUNBOOKS_DATA_DIR": str(tmp_path / "data"),
    }


def count_executions(env) -> int:
    engine = make_engine(env["RUNBOOKS_DATABASE_URL"])
    try:
        with session_scope(engine) as session:
            return session.scalar(select(func.count()).select_from(RunbookExecution)) or 0
    except Exception:  # no database yet: nothing ran
        return 0
    finally:
        engine.dispose()


def test_run_streams_progress_and_exits_zero(tmp_path, env):
    work = tmp_path / "w"
    work.mkdir()
    result = run_cli("run", "ordered", "-p", f"dir={work}", env=env)
    assert result.returncode == 0, result.stderr + result.stdout
    lines = result.stdout.splitlines()
    assert lines[0].startswith("execution ")
    assert "[1/3] s1: Step 1 …" in lines
    assert lines[-1].startswith("ordered: succeeded (execution ")
    execution_id = lines[0].split()[1]
    history = json.loads(run_cli("history", "--json", env=env).stdout)
    assert [(h["id"], h["trigger"], h["status"]) for h in history] == [
        (execution_id, "cli", "succeeded")
    ]
    detail = run_cli("history", "--execution", execution_id[:8], env=env)
    assert "3. s3: succeeded (exit 0, 1 attempt(s), rollback not_needed)" in detail.stdout


def test_failed_run_exits_one_and_counts_in_stats(tmp_path, env):
    work = tmp_path / "w"
    work.mkdir()
    ok = run_cli("run", "ordered", "-p", f"dir={work}", env=env)
    failed = run_cli("run", "ordered", "-p", f"dir={work}", "-p", "fail_at=2", env=env)
    assert ok.returncode == 0
    assert failed.returncode == 1
    assert "rolling back, newest first: s1" in failed.stdout
    assert failed.stderr.strip().splitlines()[-1] == "error: step s2: exit 3, expected 0"
    stats = json.loads(run_cli("stats", "ordered", "--json", env=env).stdout)[0]
    assert (stats["executions"], stats["succeeded"], stats["rolled_back"]) == (2, 1, 1)
    assert stats["success_rate"] == 0.5
    assert stats["p95_duration_seconds"] >= stats["mean_duration_seconds"] > 0
    assert stats["expected_duration_seconds"] == 60


def test_approval_steps_need_approve_flag(tmp_path, env):
    work = tmp_path / "w"
    work.mkdir()
    refused = run_cli("run", "gated", "-p", f"dir={work}", env=env)
    assert refused.returncode == 1
    assert refused.stderr == (
        "error: gated stops for approval at s2: review `runbooks plan gated` and rerun with "
        "--approve, or start it from the Prefect UI\n"
    )
    assert not (work / "log").exists()
    approved = run_cli("run", "gated", "-p", f"dir={work}", "--approve", "--json", env=env)
    assert json.loads(approved.stdout)["status"] == "succeeded", approved.stderr
    steps = json.loads(
        run_cli(
            "history", "--execution", json.loads(approved.stdout)["execution_id"], "--json", env=env
        ).stdout
    )["steps"]
    assert steps[1]["approved_by"].endswith("(runbooks run --approve)")


@pytest.mark.parametrize("kind", list(HOSTILE_BY_TYPE))
@pytest.mark.parametrize("command", ["plan", "run"])
def test_every_type_refuses_hostile_values_before_anything_runs(
    tmp_path, env, kind, command, cli_in_process
):
    work = tmp_path / "w"
    work.mkdir()
    canary = tmp_path / "canary"
    for template in HOSTILE:
        value = template.format(canary=canary)
        code, out, err = cli_in_process(
            command, "typed", "-p", f"dir={work}", "-p", f"p_{kind}={value}", env=env
        )
        assert code == 1, (kind, value, out)
        assert err.startswith(f"error: parameter p_{kind}: "), err
        assert len(err.strip().splitlines()) == 1
        assert out == ""
    assert not canary.exists()
    assert not (work / "ran").exists()
    assert count_executions(env) == 0


def test_hostile_value_refused_by_the_real_console_script(tmp_path, env):
    canary = tmp_path / "canary"
    result = run_cli(
        "run", "typed", "-p", f"dir={tmp_path}", "-p", f"p_slug=a;touch {canary}", env=env
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith("error: parameter p_slug: must be a slug")
    assert not canary.exists()

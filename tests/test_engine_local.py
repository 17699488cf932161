"""The engine through real Prefect flows (test harness server) with local steps: success,
command failure, verification failure, timeout, reverse-order rollback, failing rollback."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from db.engine import make_engine, session_scope
from db.models import RunbookExecution, StepExecution
from runbook_catalog import load_catalog

from .engine_catalog import ordered, write_engine_catalog

pytestmark = pytest.mark.usefixtures("prefect_server")


def run(tmp_path, mirror_env, **parameters):
    from flows.engine import build_flow

    catalog = load_catalog(write_engine_catalog(tmp_path / "catalog", ordered()), strict=True)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    state = build_flow(catalog.runbooks["ordered"])(
        parameters={"dir": str(work), **parameters}, trigger="api", return_state=True
    )
    engine = make_engine(mirror_env)
    with session_scope(engine) as session:
        execution = session.scalars(select(RunbookExecution)).one()
        steps = session.scalars(
            select(StepExecution)
            .where(StepExecution.execution_id == execution.id)
            .order_by(StepExecution.position)
        ).all()
    engine.dispose()
    log = (work / "log").read_text().splitlines() if (work / "log").exists() else []
    return state, execution, steps, log, work


def test_success_records_everything(tmp_path, mirror_env):
    state, execution, steps, log, work = run(tmp_path, mirror_env)
    assert state.is_completed()
    assert execution.status == "succeeded"
    assert (execution.runbook_version, execution.trigger) == ("1.0", "api")
    assert execution.definition_snapshot["slug"] == "ordered"
    assert len(execution.definition_hash) == 64
    assert execution.flow_run_id == state.state_details.flow_run_id
    assert execution.duration_seconds > 0 and execution.finished_at is not None
    assert [
        (s.step_id, s.status, s.exit_code, s.verify_passed, s.rollback_status) for s in steps
    ] == [
        ("s1", "succeeded", 0, True, "not_needed"),
        ("s2", "succeeded", 0, True, "not_needed"),
        ("s3", "succeeded", 0, True, "not_needed"),
    ]
    assert all(s.attempts == 1 for s in steps)
    assert "step 2 done" in steps[1].output_tail
    assert log == ["run 1", "run 2", "run 3"]
    assert {p.name for p in work.iterdir()} == {"log", "s1", "s2", "s3"}


def test_command_failure_rolls_back_newest_first(tmp_path, mirror_env):
    state, execution, steps, log, work = run(tmp_path, mirror_env, fail_at=3)
    assert state.is_failed()
    assert execution.status == "rolled_back"
    assert "step s3: exit 3, expected 0" in execution.error
    assert log == ["run 1", "run 2", "run 3", "undo 2", "undo 1"]
    assert [(s.status, s.rollback_status) for s in steps] == [
        ("succeeded", "succeeded"),
        ("succeeded", "succeeded"),
        ("failed", "not_needed"),
    ]
    assert steps[2].exit_code == 3 and "boom-3" in steps[2].output_tail
    assert {p.name for p in work.iterdir()} == {"log"}  # s1 and s2 were undone


def test_verification_failure_is_a_failed_step(tmp_path, mirror_env):
    state, execution, steps, log, _ = run(tmp_path, mirror_env, fail_at=2, fail_how="verify")
    assert state.is_failed()
    assert execution.status == "rolled_back"
    assert steps[1].status == "failed" and steps[1].verify_passed is False
    assert steps[1].exit_code == 0  # the command itself worked
    assert "verification failed" in execution.error
    assert steps[2].status == "skipped"
    assert log == ["run 1", "run 2", "undo 1"]


def test_first_step_failure_has_nothing_to_undo(tmp_path, mirror_env):
    state, execution, steps, log, _ = run(tmp_path, mirror_env, fail_at=1)
    assert state.is_failed()
    assert execution.status == "failed"
    assert [s.status for s in steps] == ["failed", "skipped", "skipped"]
    assert log == ["run 1"]


def test_timeout_kills_the_command_and_rolls_back(tmp_path, mirror_env):
    state, execution, steps, log, _ = run(tmp_path, mirror_env, fail_at=2, fail_how="timeout")
    assert state.is_failed()
    assert execution.status == "rolled_back"
    assert "timed out after 2s" in steps[1].error
    assert steps[1].exit_code is None
    assert log == ["run 1", "run 2", "undo 1"]
    assert execution.duration_seconds < 20  # killed at the deadline, not after sleep 60


def test_failing_rollback_still_attempts_the_rest(tmp_path, mirror_env):
    state, execution, steps, log, _ = run(tmp_path, mirror_env, fail_at=3, broken_rollback=2)
    assert state.is_failed()
    assert execution.status == "rollback_failed"
    assert log == ["run 1", "run 2", "run 3", "undo 2", "undo 1"]
    assert [s.rollback_status for s in steps[:2]] == ["succeeded", "failed"]
    assert "cannot-undo-2" in steps[1].rollback_output_tail


def test_hostile_parameter_never_reaches_a_flow_run(tmp_path, mirror_env):
    from flows.engine import build_flow

    catalog = load_catalog(write_engine_catalog(tmp_path / "catalog", ordered()), strict=True)
    canary = tmp_path / "canary"
    state = build_flow(catalog.runbooks["ordered"])(
        parameters={"dir": f"x; touch {canary}"}, return_state=True
    )
    assert state.is_failed()
    assert not canary.exists()
    engine = make_engine(mirror_env)
    with session_scope(engine) as session:
        assert session.scalars(select(RunbookExecution)).all() == []

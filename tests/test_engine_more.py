"""Retries, no caching, Secret blocks, artifacts and the cancellation hook, on a real server."""

from __future__ import annotations

import types
import uuid

import pytest

from db.engine import make_engine
from db.mirror import MirrorWriter
from db.sync import ensure_runbook
from runbook_catalog import load_catalog

from .conftest import mirror_rows
from .engine_catalog import ordered, secretive, write_engine_catalog

pytestmark = pytest.mark.usefixtures("prefect_server")


def build(tmp_path, data):
    from flows.engine import build_flow

    catalog = load_catalog(write_engine_catalog(tmp_path / "catalog", data), strict=True)
    return catalog, build_flow(catalog.runbooks[data["slug"]])


def test_retry_runs_the_command_again_as_its_own_task_run(tmp_path, mirror_env):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    data = ordered(slug="flaky")
    data["steps"] = [data["steps"][0]]
    data["steps"][0]["run"] = {
        "script": 'echo try >> "$RB_DIR/log"\n'
        'if [ ! -e "$RB_DIR/second" ]; then touch "$RB_DIR/second"; exit 1; fi\n'
        'touch "$RB_DIR/s1"\n'
    }
    data["steps"][0]["retries"] = 2
    data["steps"][0]["retry_delay"] = 1
    work = tmp_path / "w"
    work.mkdir()
    state = build(tmp_path, data)[1](parameters={"dir": str(work)}, return_state=True)
    assert state.is_completed()
    executions, steps = mirror_rows(mirror_env)
    assert (steps[0].status, steps[0].attempts) == ("succeeded", 2)
    assert (work / "log").read_text().splitlines() == ["try", "try"]
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[executions[0].flow_run_id]))
        )
    names = sorted(r.name.rsplit("-", 1)[0] for r in runs)
    assert names == ["s1: run", "s1: run (attempt 2)", "s1: verify"]


def test_side_effects_are_never_cached(tmp_path, mirror_env):
    work = tmp_path / "w"
    work.mkdir()
    flow = build(tmp_path, ordered())[1]
    for _ in range(2):
        (work / "s1").unlink(missing_ok=True)
        assert flow(parameters={"dir": str(work)}, return_state=True).is_completed()
    assert (work / "log").read_text().splitlines() == ["run 1", "run 2", "run 3"] * 2


def test_secret_from_a_prefect_secret_block_is_used_and_masked(tmp_path, mirror_env):
    from prefect.blocks.system import Secret

    secret = f"blk-{uuid.uuid4().hex}"
    Secret(value=secret).save("runbooks-test-token", overwrite=True)
    work = tmp_path / "w"
    work.mkdir()
    state = build(tmp_path, secretive())[1](
        parameters={"dir": str(work), "token": "block:runbooks-test-token"}, return_state=True
    )
    assert state.is_failed()  # its second step fails on purpose
    _, steps = mirror_rows(mirror_env)
    assert "token is ********" in steps[0].output_tail
    assert all(secret not in (s.output_tail or "") + (s.error or "") for s in steps)


def test_missing_secret_is_refused_before_anything_runs(tmp_path, mirror_env, monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    work = tmp_path / "w"
    work.mkdir()
    state = build(tmp_path, secretive())[1](
        parameters={"dir": str(work), "token": "env:NOT_SET_ANYWHERE"}, return_state=True
    )
    assert state.is_failed()
    assert "secret env:NOT_SET_ANYWHERE: the environment variable is not set" in state.message
    assert mirror_rows(mirror_env)[0] == []
    assert not (work / "used").exists()


def test_report_and_progress_artifacts(tmp_path, mirror_env):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    work = tmp_path / "w"
    work.mkdir()
    build(tmp_path, ordered())[1](parameters={"dir": str(work), "fail_at": 3}, return_state=True)
    executions, _ = mirror_rows(mirror_env)
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[executions[0].flow_run_id])
            )
        )
    by_key = {a.key: a for a in artifacts if a.key}  # Prefect adds unkeyed ones of its own
    assert set(by_key) == {"ordered-report", "ordered-progress"}
    report = by_key["ordered-report"].data
    assert report.startswith("# Ordered steps: rolled_back")
    assert "| 3 | `s3` Step 3 | failed |" in report
    assert "| 1 | `s1` Step 1 | succeeded |" in report and "| succeeded |" in report
    assert by_key["ordered-progress"].data == pytest.approx(66.7)


def test_cancellation_hook_closes_the_row(tmp_path, mirror_env):
    from prefect.states import Cancelled

    from flows import hooks

    catalog, _ = build(tmp_path, ordered())
    engine = make_engine(mirror_env)
    ensure_runbook(engine, catalog.runbooks["ordered"])
    writer, execution_id, flow_run_id = MirrorWriter(engine), uuid.uuid4(), uuid.uuid4()
    writer.start_execution(
        execution_id=execution_id,
        flow_run_id=flow_run_id,
        runbook_slug="ordered",
        runbook_version="1.0",
        definition_hash="h",
        definition={},
        trigger="ui",
        triggered_by=None,
        parameters={},
        target="local",
    )
    writer.start_step(execution_id, 1, "s1", "Step 1", "true")
    flow_run = types.SimpleNamespace(id=flow_run_id)  # the hook reads only the id
    hooks.on_cancellation(None, flow_run, Cancelled(message="stopped by alice"))
    hooks.on_crashed(None, flow_run, Cancelled())  # a second ending changes nothing
    executions, steps = mirror_rows(mirror_env)
    assert (executions[0].status, executions[0].error) == (
        "cancelled",
        "cancelled: stopped by alice",
    )
    assert steps[0].status == "outcome_unknown"


def test_a_published_step_output_is_an_artifact_with_secrets_masked(
    tmp_path, mirror_env, monkeypatch
):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    monkeypatch.setenv("PUBLISHED_TOKEN", "s3cr3t-published-value")
    runbook = secretive()
    runbook["steps"][0]["publish"] = "token-report"
    work = tmp_path / "w"
    work.mkdir()
    build(tmp_path, runbook)[1](
        parameters={"dir": str(work), "token": "env:PUBLISHED_TOKEN"}, return_state=True
    )
    executions, _ = mirror_rows(mirror_env)
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[executions[0].flow_run_id])
            )
        )
    by_key = {a.key: a.data for a in artifacts if a.key}
    published = by_key["secretive-token-report"]
    assert published.startswith("## Use the token")
    assert "token is ********" in published
    assert "s3cr3t-published-value" not in published


def test_a_failed_verification_keeps_what_the_check_said(tmp_path, mirror_env):
    runbook = ordered()
    runbook["steps"][0]["verify"] = {"script": 'echo "the disk is not mounted" >&2\nexit 1\n'}
    work = tmp_path / "w"
    work.mkdir()
    build(tmp_path, runbook)[1](parameters={"dir": str(work)}, return_state=True)
    _, [first, *_] = mirror_rows(mirror_env)
    assert first.status == "failed" and first.verify_passed is False
    assert "--- verify ---" in first.output_tail
    assert "the disk is not mounted" in first.output_tail

"""What one run of a runbook does, inside its Prefect flow (DESIGN.md, "Execution semantics").

1. Resolve targets and secrets from the inventory; take the lease for runbook + targets
   (refused, naming the running execution, if another run holds it). Nothing has run yet.
2. Write the execution row (version, definition hash and snapshot, trigger, redacted
   parameters), then for each step: write its row, ask for approval if it needs it, run the
   command (task, with retries), verify it (task). A step succeeds only when both pass.
3. On the first failure, roll back the completed steps newest first, each as its own task,
   every one attempted even if an earlier one failed. The compensation stack is the step rows
   themselves (`rollback_status = pending`), so it is in the database as it grows.
4. Close the row: succeeded, failed (nothing to undo), rolled_back or rollback_failed.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, SecretStr

from config import load_settings
from db import migrate
from db.engine import make_engine
from db.leases import LeaseKeeper
from db.mirror import MirrorWriter
from db.models import ExecutionStatus, RollbackStatus, StepStatus
from db.sync import ensure_runbook
from runbook_catalog.loader import Document
from runbook_catalog.models import Command, Runbook, Step, TargetKind
from tasks.errors import ExecutorError
from tasks.executors.result import Result
from tasks.inventory import Inventory, resolve_secret
from tasks.redaction import Redactor, redact_logs
from tasks.render import RenderedCommand, render_command
from tasks.steps import (
    StepCall,
    StepCommandFailed,
    roll_back_step,
    run_step_command,
    verify_step,
)
from tasks.targets import RunTargets
from tasks.verification import Verdict

from . import notifications, reporting
from .approval import approval_request_markdown, wait_for_approval


class RunbookFailed(Exception):
    """Raised at the end of a run that did not succeed, so its Prefect state is Failed."""


@dataclass(frozen=True)
class LocalRunOptions:
    """Set by a process that runs flows in-process (the CLI). Never a flow parameter, so a
    form in the UI cannot pre-approve steps."""

    pre_approved_by: str | None = None
    on_event: Callable[..., None] | None = None


LOCAL_RUN_OPTIONS: ContextVar[LocalRunOptions] = ContextVar(
    "runbooks_local_run_options",
    default=LocalRunOptions(),  # noqa: B039 - frozen, never mutated
)


@dataclass
class RunRequest:
    document: Document
    parameters: BaseModel
    trigger: str
    triggered_by: str | None = None
    alert_event_id: int | None = None
    flow_run_id: uuid.UUID | None = None


@dataclass
class Outcome:
    execution_id: uuid.UUID
    status: ExecutionStatus
    error: str | None = None


@dataclass
class _Completed:
    position: int
    step: Step
    row_id: int


class _StepRow:
    """A step's mirror row, written `running` before the step starts (a crash then leaves
    evidence). Its final values are committed together with the next write of the run (the
    next step's row, a rollback, or closing the execution): one commit per step, and still
    every row exists before its step's command starts."""

    def __init__(self, mirror: MirrorWriter, **identity: Any):
        self.mirror = mirror
        self.id = mirror.start_step(**identity)

    def update(self, **values: Any) -> None:
        self.mirror.update_step(self.id, **values)

    def finish(self, status: StepStatus, **values: Any) -> int:
        self.mirror.finish_step(self.id, status, defer=True, **values)
        return self.id


@dataclass
class _StepRecord:  # for the report artifact
    position: int
    step: Step
    status: str = StepStatus.PENDING.value
    duration_s: float | None = None
    verdict: str = ""
    rollback: str = ""


def open_mirror():
    engine = make_engine(load_settings().resolved_database_url)
    if not migrate.is_up_to_date(engine):
        migrate.upgrade(engine)
    return engine


def _emit(event: str, **info: Any) -> None:
    callback = LOCAL_RUN_OPTIONS.get().on_event
    if callback is not None:
        with contextlib.suppress(Exception):  # a display problem must not break a run
            callback(event, **info)


def _run_logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        from prefect import get_run_logger

        return get_run_logger()
    except Exception:  # outside a flow run context (unit use)
        return logging.getLogger("runbooks.run")


def _resolved_parameters(parameters: BaseModel, redactor: Redactor) -> BaseModel:
    """A copy whose secret parameters hold the secret itself instead of its reference."""
    updates = {}
    for name, value in parameters:
        if isinstance(value, SecretStr):
            secret = resolve_secret(value.get_secret_value())
            redactor.add(secret)
            updates[name] = SecretStr(secret)
    return parameters.model_copy(update=updates) if updates else parameters


def execute_runbook(request: RunRequest) -> Outcome:
    settings = load_settings()
    runbook: Runbook = request.document.model
    engine = open_mirror()
    redactor = Redactor()
    resolved = Inventory.load(settings.inventory).resolve(runbook)
    ensure_runbook(engine, request.document)  # the version that runs is in the mirror
    execution_id = uuid.uuid4()
    targets = RunTargets(
        resolved, redactor, str(execution_id), settings.data_dir / "runs" / str(execution_id)
    )
    secret_parameters = _resolved_parameters(request.parameters, redactor)
    mirror = MirrorWriter(engine, redactor)
    with (
        redact_logs(redactor),
        LeaseKeeper(
            engine, runbook.slug, targets.describe(), execution_id, settings.lease_ttl_seconds
        ),
    ):
        mirror.start_execution(
            execution_id=execution_id,
            flow_run_id=request.flow_run_id,
            runbook_slug=runbook.slug,
            runbook_version=runbook.version,
            definition_hash=request.document.definition_hash,
            definition=request.document.definition,
            trigger=request.trigger,
            triggered_by=request.triggered_by,
            parameters=request.parameters.model_dump(mode="json"),
            target=targets.describe(),
            alert_event_id=request.alert_event_id,
        )
        _emit("execution_started", execution_id=execution_id, runbook=runbook.slug)
        runner = _StepRunner(
            runbook, request.parameters, secret_parameters, targets, mirror, execution_id
        )
        try:
            outcome = runner.run()
        except BaseException as exc:  # an engine bug or an interrupt: leave evidence
            mirror.finish_execution(
                execution_id, ExecutionStatus.CRASHED, f"{type(exc).__name__}: {exc}"
            )
            raise
        finally:
            mirror.flush()  # normally empty: closing the execution committed it
            targets.close()
            reporting.publish_report(
                runbook, execution_id, runner.records, runner.status_text(), redactor
            )
            notifications.notify_run_finished(settings.notify_urls, engine, execution_id, redactor)
    _emit(
        "execution_finished", execution_id=execution_id, status=outcome.status, error=outcome.error
    )
    if outcome.status != ExecutionStatus.SUCCEEDED:  # so that the flow run ends Failed
        raise RunbookFailed(f"{runbook.slug} {outcome.status.value}: {outcome.error}")
    return outcome


class _StepRunner:
    def __init__(
        self,
        runbook: Runbook,
        shown_parameters: BaseModel,
        parameters: BaseModel,
        targets: RunTargets,
        mirror: MirrorWriter,
        execution_id: uuid.UUID,
    ):
        self.runbook, self.targets, self.mirror = runbook, targets, mirror
        self.shown_parameters, self.parameters = shown_parameters, parameters
        self.execution_id = execution_id
        self.started = datetime.now(UTC)
        self.logger = _run_logger()
        self.records = [_StepRecord(p, s) for p, s in enumerate(runbook.steps, start=1)]
        self.completed: list[_Completed] = []
        self.final: ExecutionStatus | None = None
        self.progress = reporting.Progress(runbook, len(runbook.steps))

    def status_text(self) -> str:
        return self.final.value if self.final else "unknown"

    # Rendering -------------------------------------------------------------------------
    def _builtins(self, target: str) -> dict[str, str]:
        return {
            "run_id": str(self.execution_id),
            "run_stamp": self.started.strftime("%Y%m%dT%H%M%SZ"),
            "workdir": self.targets.workdir(target),
        }

    def _render(self, command: Command, step: Step, *, shown: bool) -> RenderedCommand:
        parameters = self.shown_parameters if shown else self.parameters
        return render_command(
            command, step, parameters, self._builtins(step.target), mask_secrets=shown
        )

    def _where(self, command: Command, step: Step) -> str:
        if command.sql is not None and self.runbook.target_kind(step.target) != TargetKind.POSTGRES:
            return step.connection or step.target
        return step.target

    def _env(self, rendered: RenderedCommand, step: Step) -> dict[str, str]:
        if rendered.kind == "sql":
            return {}
        return self.targets.connection_env(step.connection) | rendered.env

    # The run ---------------------------------------------------------------------------
    def run(self) -> Outcome:
        failure: str | None = None
        for record in self.records:
            failure = self._run_step(record)
            if failure is not None:
                break
        if failure is None:
            self.final = ExecutionStatus.SUCCEEDED
        else:
            self._record_skipped(record.position)
            self.final = self._roll_back()
        self.mirror.finish_execution(self.execution_id, self.final, failure)
        self.progress.finish(self.final.value)
        self.logger.info("%s: %s", self.runbook.slug, self.final.value)
        return Outcome(self.execution_id, self.final, failure)

    def _run_step(self, record: _StepRecord) -> str | None:
        """Run one step; None when it succeeded, else the failure in one line."""
        step, position = record.step, record.position
        total = len(self.runbook.steps)
        shown = self._render(step.run, step, shown=True).display()
        where = self._where(step.run, step)
        row = _StepRow(
            self.mirror,
            execution_id=self.execution_id,
            position=position,
            step_id=step.id,
            title=step.title,
            command=shown,
            target=f"{where} ({self.targets.describe_target(where)})",
        )
        _emit("step_started", position=position, total=total, step=step.id, title=step.title)
        self.logger.debug("step %d/%d %s: %s", position, total, step.id, step.title)
        clock = datetime.now(UTC)

        def fail(
            message: str, result: Result | None = None, output: str | None = None, **values: Any
        ) -> str:
            record.status, record.verdict = StepStatus.FAILED.value, message
            record.duration_s = (datetime.now(UTC) - clock).total_seconds()
            if output is None and result is not None:
                output = result.output()
            row.finish(
                StepStatus.FAILED,
                error=message,
                exit_code=result.exit_code if result else None,
                output_tail=output,
                output_truncated=result.truncated if result else False,
                **values,
            )
            tail = "\n".join((output or "").strip().splitlines()[-20:])
            self.logger.error("step %s failed: %s%s", step.id, message, f"\n{tail}" if tail else "")
            _emit("step_finished", position=position, step=step.id, ok=False, detail=message)
            return f"step {step.id}: {message}"

        if step.requires_approval:
            refusal = self._approve(step, position, row, shown)
            if refusal is not None:
                return fail(refusal)

        run = self._render(step.run, step, shown=False)
        attempts = 1

        def count_retry(attempt: int) -> None:
            nonlocal attempts
            attempts = attempt
            row.update(attempts=attempt)

        try:
            call = StepCall(
                f"{step.id}: run", step, self.targets.executor(where), run, self._env(run, step)
            )
            result = run_step_command(call, count_retry)
        except StepCommandFailed as exc:
            return fail(exc.verdict.detail, exc.result, attempts=attempts)
        except ExecutorError as exc:
            return fail(str(exc), exc.result, attempts=attempts)

        verdict, verify_result = self._verify(step, result)
        record.duration_s = (datetime.now(UTC) - clock).total_seconds()
        output = result.output()
        if verify_result is not None:
            # Both outputs are kept: a failed check's own words say why it failed.
            output = f"{output}\n--- verify ---\n{verify_result.output()}"
        if not verdict.passed:
            return fail(
                f"verification failed: {verdict.detail}",
                result,
                output=output,
                verify_result=verdict.detail,
                verify_passed=False,
            )
        rollback_status = (
            RollbackStatus.PENDING
            if step.rollback is not None
            else RollbackStatus.IRREVERSIBLE
            if step.irreversible
            else RollbackStatus.NOT_NEEDED
        )
        row_id = row.finish(
            StepStatus.SUCCEEDED,
            attempts=attempts,
            exit_code=result.exit_code,
            output_tail=output,
            output_truncated=result.truncated,
            verify_result=verdict.detail,
            verify_passed=True,
            rollback_status=rollback_status,
        )
        record.status, record.verdict = StepStatus.SUCCEEDED.value, verdict.detail
        record.rollback = rollback_status.value
        self.completed.append(_Completed(position, step, row_id))
        if step.publish:
            reporting.publish_step_output(
                self.runbook, step, result.output(), self.targets.redactor
            )
        self.progress.step_done(position)
        self.logger.info("step %s succeeded (%s)", step.id, verdict.detail)
        _emit("step_finished", position=position, step=step.id, ok=True, detail=verdict.detail)
        return None

    def _verify(self, step: Step, result: Result) -> tuple[Verdict, Result | None]:
        verify = step.verify
        command = verify.command if verify else None
        name = f"{step.id}: verify"
        if command is None:
            return verify_step(StepCall(name, step, None, None, {}), result)
        rendered = self._render(command, step, shown=False)
        try:
            executor = self.targets.executor(self._where(command, step))
        except ExecutorError as exc:
            return Verdict(False, str(exc)), exc.result
        return verify_step(
            StepCall(name, step, executor, rendered, self._env(rendered, step)), result
        )

    def _approve(self, step: Step, position: int, row: _StepRow, shown: str) -> str | None:
        """None when approved, else why not (rejected, with who and why; or timed out)."""
        pre_approved = LOCAL_RUN_OPTIONS.get().pre_approved_by
        if pre_approved:
            row.update(
                approved_by=pre_approved,
                approval_reason="approved up front with `runbooks run --approve`",
            )
            return None
        rollback = (
            self._render(step.rollback, step, shown=True).display() if step.rollback else None
        )
        description = approval_request_markdown(self.runbook, step, position, shown, rollback)
        self.mirror.set_status(self.execution_id, ExecutionStatus.AWAITING_APPROVAL)
        row.update(status=StepStatus.PENDING)
        _emit("awaiting_approval", position=position, step=step.id)
        self.logger.warning("step %s waits for approval in the Prefect UI", step.id)
        notifications.notify_approval_needed(
            load_settings().notify_urls,
            self.mirror.engine,
            self.execution_id,
            step,
            position,
            shown,
            self.targets.redactor,
        )
        decision = wait_for_approval(step, description)
        self.mirror.set_status(self.execution_id, ExecutionStatus.RUNNING)
        row.update(
            status=StepStatus.RUNNING,
            approved_by=decision.approver,
            approval_reason=decision.reason or None,
        )
        if decision.approved:
            self.logger.info("step %s approved by %s", step.id, decision.approver)
            return None
        if decision.approver is None:
            return f"approval timed out: {decision.reason}"
        reason = f": {decision.reason}" if decision.reason else ""
        return f"approval rejected by {decision.approver}{reason}"

    def _record_skipped(self, failed_position: int) -> None:
        for record in self.records[failed_position:]:
            record.status = StepStatus.SKIPPED.value
            row = self.mirror.start_step(
                self.execution_id, record.position, record.step.id, record.step.title, ""
            )
            self.mirror.finish_step(row, StepStatus.SKIPPED)

    def _roll_back(self) -> ExecutionStatus:
        """Undo completed steps newest first; every rollback is attempted."""
        undo = [c for c in reversed(self.completed) if c.step.rollback is not None]
        if not undo:
            return ExecutionStatus.FAILED
        self.mirror.set_status(self.execution_id, ExecutionStatus.ROLLING_BACK)
        _emit("rollback_started", steps=[c.step.id for c in undo])
        failed = 0
        for completed in undo:
            step, record = completed.step, self.records[completed.position - 1]
            self.mirror.update_step(completed.row_id, rollback_status=RollbackStatus.RUNNING)
            command = self._render(step.rollback, step, shown=False)
            try:
                executor = self.targets.executor(self._where(step.rollback, step))
                result = roll_back_step(
                    StepCall(
                        f"{step.id}: rollback", step, executor, command, self._env(command, step)
                    )
                )
                ok, output = result.exit_code == 0, result.output()
                detail = f"exit {result.exit_code}"
            except ExecutorError as exc:
                ok, output, detail = False, exc.result.output() if exc.result else "", str(exc)
            status = RollbackStatus.SUCCEEDED if ok else RollbackStatus.FAILED
            failed += not ok
            self.mirror.update_step(
                completed.row_id, rollback_status=status, rollback_output_tail=output
            )
            record.rollback = status.value
            log = self.logger.info if ok else self.logger.error
            log("rollback of %s %s (%s)", step.id, status.value, detail)
            _emit("rollback_finished", step=step.id, ok=ok, detail=detail)
        return ExecutionStatus.ROLLBACK_FAILED if failed else ExecutionStatus.ROLLED_BACK

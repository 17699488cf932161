"""The Prefect tasks of a step: run its command, verify it, roll it back.

Each is a task of its own, so the Prefect UI shows every attempt, verification and undo, named
after the step (`s1: run`, `s1: run (attempt 2)`, `s1: verify`, `s1: rollback`). They never
touch Prefect's cache (side effects must run every time) and persist no results (outputs may
hold data that belongs in our redacted mirror only). The command's deadline is the executor's
(subprocess / SSH channel / statement timeout), not Prefect's thread timeout.

Retries are a loop in `run_step_command`, one task run per attempt: the attempt count is ours
to record, and a Task is not rebuilt per step with `with_options` (which costs milliseconds).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prefect import task
from prefect.cache_policies import NO_CACHE

from runbook_catalog.models import Step

from .errors import ExecutorError
from .executors.base import Executor
from .executors.result import Result
from .render import RenderedCommand
from .verification import Verdict, judge_exit, judge_verification


class StepCommandFailed(Exception):
    """The command ran but did not exit as declared."""

    def __init__(self, verdict: Verdict, result: Result):
        self.verdict, self.result = verdict, result
        super().__init__(verdict.detail)


class StepCall:
    """Everything one task call needs, as one plain object.

    Prefect walks task arguments that are collections, dataclasses or pydantic models to find
    upstream futures; a step definition is a deep tree, and walking it costs more than running
    `true`. A plain object is passed through untouched. `name` feeds the task run name.
    """

    def __init__(
        self,
        name: str,
        step: Step,
        executor: Executor | None,
        command: RenderedCommand | None,
        env: dict[str, str],
    ):
        self.name, self.step, self.executor = name, step, executor
        self.command, self.env = command, env

    def run(self) -> Result:
        assert self.executor is not None and self.command is not None
        timeout = self.command.timeout or self.step.timeout
        return self.executor.run(self.command, env=self.env, timeout=timeout)


@task(cache_policy=NO_CACHE, persist_result=False, task_run_name="{call.name}")
def run_command(call: StepCall) -> Result:
    result = call.run()
    verdict = judge_exit(call.step, result)
    if not verdict.passed:
        raise StepCommandFailed(verdict, result)
    return result


def run_step_command(call: StepCall, on_retry: Callable[[int], None]) -> Result:
    """Run the step's command; on failure retry up to `step.retries` times, each attempt its
    own task run. Raises the last StepCommandFailed or ExecutorError."""
    step, base = call.step, call.name
    for attempt in range(1, step.retries + 2):
        if attempt > 1:
            on_retry(attempt)
            time.sleep(step.retry_delay)
            call.name = f"{base} (attempt {attempt})"
        try:
            return run_command(call)
        except (StepCommandFailed, ExecutorError):
            if attempt > step.retries:
                raise
    raise AssertionError("unreachable")


@task(cache_policy=NO_CACHE, persist_result=False, task_run_name="{call.name}")
def verify_step(call: StepCall, step_result: Result) -> tuple[Verdict, Result | None]:
    """Run the verification (polling when it declares attempts) and judge it; with no command
    of its own, judge the step's result."""
    verify = call.step.verify
    assert verify is not None  # lint rule RB003
    if call.command is None:
        return judge_verification(verify, step_result), None
    verdict, result = Verdict(False, "not run"), None
    for attempt in range(1, verify.attempts + 1):
        try:
            result = call.run()
            verdict = judge_verification(verify, result)
        except ExecutorError as exc:
            result, verdict = exc.result, Verdict(False, str(exc))
        if verdict.passed:
            break
        if attempt < verify.attempts:
            time.sleep(verify.interval)
    if verify.attempts > 1 and not verdict.passed:
        verdict = Verdict(False, f"{verdict.detail} (after {verify.attempts} attempts)")
    return verdict, result


@task(cache_policy=NO_CACHE, persist_result=False, task_run_name="{call.name}")
def roll_back_step(call: StepCall) -> Result:
    """Run the step's rollback once; a failure is recorded, never retried automatically."""
    return call.run()

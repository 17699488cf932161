"""The Prefect tasks of a step: run its command, verify it, roll it back.

Each is a task of its own, so the Prefect UI shows every attempt, retry and undo. They never
touch Prefect's cache (side effects must run every time) and persist no results (outputs may
hold data that belongs in our redacted mirror only). The command's deadline is the executor's
(subprocess / SSH channel / statement timeout), not Prefect's thread timeout.
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
    """The command ran but did not exit as declared (raised so that Prefect retries)."""

    def __init__(self, verdict: Verdict, result: Result):
        self.verdict, self.result = verdict, result
        super().__init__(verdict.detail)


@task(cache_policy=NO_CACHE, persist_result=False)
def run_command(
    step: Step,
    executor: Executor,
    command: RenderedCommand,
    env: dict[str, str],
    on_attempt: Callable[[], None],
) -> Result:
    """Run the step's command once; raise so that Prefect's retries apply."""
    on_attempt()
    result = executor.run(command, env=env, timeout=command.timeout or step.timeout)
    verdict = judge_exit(step, result)
    if not verdict.passed:
        raise StepCommandFailed(verdict, result)
    return result


@task(cache_policy=NO_CACHE, persist_result=False)
def verify_step(
    step: Step,
    executor: Executor | None,
    command: RenderedCommand | None,
    env: dict[str, str],
    step_result: Result,
) -> tuple[Verdict, Result | None]:
    """Run the verification (polling when it declares attempts) and judge it."""
    verify = step.verify
    assert verify is not None  # lint rule RB003
    if command is None or executor is None:
        return judge_verification(verify, step_result), None
    verdict, result = Verdict(False, "not run"), None
    for attempt in range(1, verify.attempts + 1):
        try:
            result = executor.run(command, env=env, timeout=command.timeout or step.timeout)
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


@task(cache_policy=NO_CACHE, persist_result=False)
def roll_back_step(
    step: Step, executor: Executor, command: RenderedCommand, env: dict[str, str]
) -> Result:
    """Run the step's rollback once; a failure is recorded, never retried automatically."""
    return executor.run(command, env=env, timeout=command.timeout or step.timeout)

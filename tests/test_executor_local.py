"""The local executor with real processes: output kept per stream and bounded, the deadline
kills everything the command started, and the command's end is seen however its pipes behave.

Each behaviour runs twice: with the exit seen through a pidfd (Linux 5.3 and later), and as on
a system without one, where the output loop polls for the exit.
"""

from __future__ import annotations

import os
import time

import pytest

from lab.processes import process_alive
from tasks.errors import CommandTimedOut, TargetUnreachable
from tasks.executors.local import OUTPUT_GRACE_SECONDS, LocalExecutor
from tasks.executors.result import TRUNCATION_MARK
from tasks.render import RenderedCommand


@pytest.fixture(params=["pidfd", "polling"])
def executor(request, monkeypatch, tmp_path) -> LocalExecutor:
    if request.param == "polling":

        def no_pidfd(pid: int) -> int:
            raise OSError(38, "Function not implemented")

        monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    return LocalExecutor(cwd=str(tmp_path))


def script(text: str) -> RenderedCommand:
    return RenderedCommand("script", script=text)


def test_streams_are_kept_apart_with_the_exit_code(executor):
    result = executor.run(script("echo out; echo err >&2; exit 3"), env={}, timeout=10)
    assert (result.exit_code, result.stdout_tail, result.stderr_tail) == (3, "out\n", "err\n")
    assert not result.timed_out and not result.truncated


def test_parameters_arrive_in_the_environment_and_runner_secrets_do_not(executor, monkeypatch):
    monkeypatch.setenv("RUNBOOKS_DATABASE_URL", "postgresql://runner-only")
    executor = LocalExecutor(cwd=executor.cwd)  # reads the environment as a new run would
    result = executor.run(
        script('echo "$RB_NAME|${RUNBOOKS_DATABASE_URL:-unset}"'),
        env={"RB_NAME": "a b; $(x)"},
        timeout=10,
    )
    assert result.stdout_tail == "a b; $(x)|unset\n"


def test_output_is_bounded_to_its_tail(executor):
    result = executor.run(script("seq 1 100000; echo last"), env={}, timeout=10, output_limit=1000)
    assert result.truncated
    assert result.stdout_tail.startswith(TRUNCATION_MARK)
    assert result.stdout_tail.endswith("99999\n100000\nlast\n")
    assert len(result.stdout_tail) <= 1000 + len(TRUNCATION_MARK)


def test_deadline_kills_the_whole_process_group(executor, tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    started = time.monotonic()
    with pytest.raises(CommandTimedOut) as raised:
        executor.run(
            script(f"sleep 60 & echo $! > {pid_file}; echo started; wait"), env={}, timeout=1
        )
    assert time.monotonic() - started < 10
    assert raised.value.result.stdout_tail == "started\n"
    assert raised.value.result.timed_out
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while process_alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_alive(grandchild)


def test_a_background_child_holding_the_pipes_does_not_hold_the_step(executor, tmp_path):
    # The command exits at once; its child keeps stdout open for 30 s.
    pid_file = tmp_path / "child.pid"
    started = time.monotonic()
    result = executor.run(
        script(f"echo before; (sleep 30; echo late) & echo $! > {pid_file}; exit 0"),
        env={},
        timeout=20,
    )
    took = time.monotonic() - started
    assert (result.exit_code, result.stdout_tail) == (0, "before\n")
    assert OUTPUT_GRACE_SECONDS <= took < 10
    os.killpg(os.getpgid(int(pid_file.read_text())), 9)


def test_a_command_that_closes_its_pipes_is_still_under_its_deadline(executor):
    # Closing stdout and stderr is not the end of the command: it keeps running until killed.
    with pytest.raises(CommandTimedOut):
        executor.run(script("echo bye; exec >&- 2>&-; sleep 60"), env={}, timeout=1)


def test_a_command_that_outlives_its_output_reports_its_own_exit(executor):
    result = executor.run(script("echo bye; exec >&- 2>&-; sleep 0.3; exit 4"), env={}, timeout=10)
    assert (result.exit_code, result.stdout_tail) == (4, "bye\n")


def test_a_missing_program_is_an_unreachable_target(executor):
    with pytest.raises(TargetUnreachable, match="cannot start no-such-program-here: No such file"):
        executor.run(RenderedCommand("argv", argv=("no-such-program-here",)), env={}, timeout=5)


def test_no_descriptor_outlives_a_command(executor):
    executor.run(script("true"), env={}, timeout=5)  # /dev/null for stdin stays open, once
    before = sorted(os.listdir("/proc/self/fd"))
    executor.run(script("echo out; echo err >&2"), env={}, timeout=5)
    with pytest.raises(CommandTimedOut):
        executor.run(script("echo bye; exec >&- 2>&-; sleep 60"), env={}, timeout=0.5)
    with pytest.raises(CommandTimedOut):
        executor.run(script("sleep 60"), env={}, timeout=0.5)
    assert sorted(os.listdir("/proc/self/fd")) == before

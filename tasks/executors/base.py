"""The executor interface, and the shared machinery of the streaming ones (local, SSH).

Modelled on invoke's `Runner`: `StreamingExecutor.run` does the shared work once (start, pump
stdout and stderr concurrently into bounded tails, enforce the deadline, kill, build the
`Result`); subclasses supply only the low-level operations. The SQL executor implements `run`
directly, since a statement has no streams.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any

from ..errors import CommandTimedOut, OutputError
from ..render import RenderedCommand
from .result import DEFAULT_OUTPUT_LIMIT, OutputTail, Result

# After the deadline the command gets SIGTERM, then this long before SIGKILL.
KILL_GRACE_SECONDS = 5.0

Redact = Callable[[str], str]


def no_redaction(text: str) -> str:
    return text


class Executor(ABC):
    """Runs rendered commands on one target."""

    target: str

    @abstractmethod
    def run(
        self,
        command: RenderedCommand,
        *,
        env: dict[str, str],
        timeout: float,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
    ) -> Result:
        """Run to completion or to the deadline. A non-zero exit is a Result, not an error;
        a timeout raises CommandTimedOut carrying the partial Result."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; called once at the end of a run."""


class StreamingExecutor(Executor):
    """Shared run loop for executors whose command is a process with stdout and stderr."""

    def __init__(self, target: str, redact: Redact = no_redaction):
        self.target = target
        self.redact = redact

    # The low-level operations a subclass supplies -------------------------------------
    @abstractmethod
    def start(self, command: RenderedCommand, env: dict[str, str], timeout: float) -> Any:
        """Start the command; returns a handle passed to the other operations."""

    @abstractmethod
    def streams(self, handle: Any) -> tuple[IO[bytes], IO[bytes]]:
        """Readable binary stdout and stderr of the started command."""

    @abstractmethod
    def wait(self, handle: Any, timeout: float) -> int | None:
        """Exit status, or None if still running after `timeout` seconds."""

    @abstractmethod
    def kill(self, handle: Any) -> None:
        """Stop the command and everything it started (process group / remote process)."""

    @abstractmethod
    def describe(self, command: RenderedCommand, env: dict[str, str], timeout: float) -> str:
        """What ran, for people (before redaction)."""

    # The shared work ----------------------------------------------------------------
    def run(
        self,
        command: RenderedCommand,
        *,
        env: dict[str, str],
        timeout: float,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
    ) -> Result:
        started_at, clock = datetime.now(UTC), time.monotonic()
        shown = self.redact(self.describe(command, env, timeout))
        handle = self.start(command, env, timeout)
        stdout, stderr = OutputTail(output_limit), OutputTail(output_limit)
        failures: list[BaseException] = []
        try:
            exit_code = self.collect(handle, stdout, stderr, timeout, failures)
        except BaseException:
            # Interrupted (Ctrl-C, a cancelled run): the command must not outlive its step.
            self.kill(handle)
            raise
        timed_out = exit_code is None
        result = Result(
            command=shown,
            target=self.target,
            exit_code=exit_code,
            stdout_tail=self.redact(stdout.text()),
            stderr_tail=self.redact(stderr.text()),
            truncated=stdout.truncated or stderr.truncated,
            timed_out=timed_out,
            started_at=started_at,
            duration_s=time.monotonic() - clock,
        )
        if failures:
            raise OutputError(
                f"reading output failed: {failures[0]!r}", target=self.target, result=result
            )
        if timed_out:
            raise CommandTimedOut(
                f"timed out after {timeout:g}s: {shown}",
                target=self.target,
                timeout=timeout,
                result=result,
            )
        return result

    def collect(
        self,
        handle: Any,
        stdout: OutputTail,
        stderr: OutputTail,
        timeout: float,
        failures: list[BaseException],
    ) -> int | None:
        """Read both streams into the tails until the command ends or the deadline passes
        (then kill it and return None). This default pumps each stream in a thread; an
        executor whose streams are file descriptors may do it in one thread instead."""
        pumps = [
            threading.Thread(target=_pump, args=(s, t, failures), daemon=True)
            for s, t in zip(self.streams(handle), (stdout, stderr), strict=True)
        ]
        for pump in pumps:
            pump.start()
        exit_code = self.wait(handle, timeout)
        if exit_code is None:
            self.kill(handle)
        for pump in pumps:
            pump.join(timeout=KILL_GRACE_SECONDS)
        return exit_code


def _pump(stream: IO[bytes], tail: OutputTail, failures: list[BaseException]) -> None:
    try:
        while True:
            chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
            if not chunk:
                break
            tail.write(chunk)
    except (OSError, ValueError) as exc:  # stream closed under us by kill(): not a failure
        if not getattr(stream, "closed", False):
            failures.append(exc)

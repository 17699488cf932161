"""Run a command on this machine: argv without a shell, or a bash script with RB_* variables.

The command runs in its own session (process group), so the deadline kills everything it
started, not just its first process: SIGTERM to the group, then SIGKILL after a grace period.
"""

from __future__ import annotations

import functools
import os
import selectors
import shlex
import signal
import subprocess
import time
from typing import IO

from ..errors import TargetUnreachable
from ..render import RenderedCommand
from .base import KILL_GRACE_SECONDS, Redact, StreamingExecutor, no_redaction
from .result import OutputTail

# How often the output loop checks whether the command exited, where the system cannot tell it
# (no pidfd), and how long after the exit it still collects output from a background child
# holding the pipes.
POLL_SECONDS = 0.05
OUTPUT_GRACE_SECONDS = 0.5

# Variables of the runner that commands must not inherit (our own settings and tokens).
_PRIVATE_PREFIXES = ("RUNBOOKS_", "PREFECT_API_KEY")


@functools.cache
def _null_input() -> int:
    """/dev/null for the commands' stdin, opened once per process: subprocess.DEVNULL opens
    and closes it again for every command."""
    return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)


def _exit_notifier(pid: int) -> int | None:
    """A descriptor that becomes readable when the process exits (a pidfd, Linux 5.3 and
    later), or None where there is none: then the output loop polls for the exit."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def command_argv(command: RenderedCommand) -> list[str]:
    """A script runs as `bash -c SCRIPT`: its text is the author's (no parameter values, by
    lint rule RB011); values arrive in the environment."""
    if command.argv is not None:
        return list(command.argv)
    if command.script is not None:
        return ["bash", "-c", command.script, "runbook-step"]
    raise ValueError("a local command is argv or script; sql runs on a postgres target")


def inherited_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(_PRIVATE_PREFIXES)}


class LocalExecutor(StreamingExecutor):
    def __init__(
        self, target: str = "local", redact: Redact = no_redaction, cwd: str | None = None
    ):
        super().__init__(target, redact)
        self.cwd = cwd
        # Read once per run: rebuilding it from os.environ for every command costs more than
        # running a short command, and the runner's environment does not change mid-run.
        self.base_env = inherited_environment()

    def describe(self, command: RenderedCommand, env: dict[str, str], timeout: float) -> str:
        return command.display()

    def start(self, command: RenderedCommand, env: dict[str, str], timeout: float):
        argv = command_argv(command)
        try:
            return subprocess.Popen(
                argv,
                stdin=_null_input(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self.base_env | env,
                cwd=self.cwd,
                start_new_session=True,
            )
        except (FileNotFoundError, PermissionError) as exc:
            raise TargetUnreachable(
                f"cannot start {shlex.quote(argv[0])}: {exc.strerror}", target=self.target
            ) from exc

    def streams(self, handle: subprocess.Popen) -> tuple[IO[bytes], IO[bytes]]:
        return handle.stdout, handle.stderr

    def wait(self, handle: subprocess.Popen, timeout: float) -> int | None:
        try:
            return handle.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def collect(
        self,
        handle: subprocess.Popen,
        stdout: OutputTail,
        stderr: OutputTail,
        timeout: float,
        failures: list[BaseException],
    ) -> int | None:
        """Both pipes and the command's exit in this thread, with one selector: no pump
        threads to start and join per command, and no sleeping poll for the exit (Popen.wait
        with a timeout sleeps in steps from 0.5 ms, about 1 ms per short command)."""
        deadline = time.monotonic() + timeout
        tails = {handle.stdout.fileno(): stdout, handle.stderr.fileno(): stderr}
        exit_fd = _exit_notifier(handle.pid)
        exited_at: float | None = None
        try:
            with selectors.DefaultSelector() as selector:
                for fd in tails:
                    selector.register(fd, selectors.EVENT_READ)
                if exit_fd is not None:
                    selector.register(exit_fd, selectors.EVENT_READ)
                while tails or exited_at is None:
                    now = time.monotonic()
                    if now >= deadline:
                        self.kill(handle)
                        return None
                    if exited_at is None and exit_fd is None and handle.poll() is not None:
                        exited_at = now
                    if exited_at is not None and now - exited_at > OUTPUT_GRACE_SECONDS:
                        break  # a background child holds the pipes open; the command is done
                    wait = deadline - now
                    if exited_at is not None:
                        wait = min(wait, exited_at + OUTPUT_GRACE_SECONDS - now)
                    if exit_fd is None:
                        wait = min(wait, POLL_SECONDS)
                    for key, _ in selector.select(max(wait, 0.0)):
                        if key.fd == exit_fd:
                            exited_at = time.monotonic()
                            selector.unregister(exit_fd)
                        elif chunk := os.read(key.fd, 65536):
                            tails[key.fd].write(chunk)
                        else:
                            selector.unregister(key.fd)
                            del tails[key.fd]
        finally:
            if exit_fd is not None:
                os.close(exit_fd)
            for stream in (handle.stdout, handle.stderr):
                stream.close()
        return handle.wait()  # it has exited: this only reaps it

    def kill(self, handle: subprocess.Popen) -> None:
        for sig, grace in ((signal.SIGTERM, KILL_GRACE_SECONDS), (signal.SIGKILL, None)):
            try:
                os.killpg(handle.pid, sig)
            except ProcessLookupError:
                return
            try:
                handle.wait(timeout=grace)
                # The leader exited; children in the group may linger, so SIGKILL them too.
                if sig == signal.SIGTERM:
                    continue
                return
            except subprocess.TimeoutExpired:
                continue

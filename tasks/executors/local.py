"""Run a command on this machine: argv without a shell, or a bash script with RB_* variables.

The command runs in its own session (process group), so the deadline kills everything it
started, not just its first process: SIGTERM to the group, then SIGKILL after a grace period.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from typing import IO

from ..errors import TargetUnreachable
from ..render import RenderedCommand
from .base import KILL_GRACE_SECONDS, Redact, StreamingExecutor, no_redaction

# Variables of the runner that commands must not inherit (our own settings and tokens).
_PRIVATE_PREFIXES = ("RUNBOOKS_", "PREFECT_API_KEY")


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

    def describe(self, command: RenderedCommand, env: dict[str, str], timeout: float) -> str:
        return command.display()

    def start(self, command: RenderedCommand, env: dict[str, str], timeout: float):
        argv = command_argv(command)
        try:
            return subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=inherited_environment() | env,
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

"""Errors raised while running a step's command. The tree:

    ExecutorError            a command could not be run to completion as asked
    ├── CommandTimedOut      its deadline passed; the process (group) was killed on both ends
    ├── TargetUnreachable    the target could not be reached (connect refused, DNS, DB down)
    │   ├── HostKeyRejected  SSH host key unknown or changed: nothing was sent
    │   └── AuthenticationFailed
    └── OutputError          a bug while reading output (never looks like a failed command)

A command that ran and exited non-zero is not an error here: it is a `Result` whose
`exit_code` the step judges. Every error carries the target, and the partial `Result` when
the command had started, with secrets already redacted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the executors import these errors; avoid the import cycle at run time
    from .executors.result import Result


class ExecutorError(Exception):
    def __init__(self, message: str, *, target: str, result: Result | None = None):
        self.target = target
        self.result = result
        super().__init__(f"{target}: {message}")


class CommandTimedOut(ExecutorError):
    def __init__(self, message: str, *, target: str, timeout: float, result: Result | None = None):
        self.timeout = timeout
        super().__init__(message, target=target, result=result)


class TargetUnreachable(ExecutorError):
    pass


class HostKeyRejected(TargetUnreachable):
    pass


class AuthenticationFailed(TargetUnreachable):
    pass


class OutputError(ExecutorError):
    pass

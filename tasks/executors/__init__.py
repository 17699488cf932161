"""Executors: one way to run a rendered command on a target (local, SSH, SQL).

`Executor.run(command, env=..., timeout=...) -> Result`. See base.py for the interface and
errors.py one level up for the error tree.
"""

from .base import Executor, StreamingExecutor
from .local import LocalExecutor
from .result import OutputTail, Result

__all__ = ["Executor", "LocalExecutor", "OutputTail", "Result", "StreamingExecutor"]

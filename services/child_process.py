"""Stopping a child process of the main job: SIGTERM, a grace period, then SIGKILL to its
whole process group (each child is started in a session of its own)."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_child(process: subprocess.Popen | None, timeout: float, *, whole_group: bool) -> None:
    """`whole_group`: SIGTERM the child's process group too (a server and its workers); else
    only the child, which then stops what it started in its own order."""
    if process is None or process.poll() is not None:
        return
    try:
        if whole_group:
            os.killpg(process.pid, signal.SIGTERM)
        else:
            os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)
    except ProcessLookupError:
        pass

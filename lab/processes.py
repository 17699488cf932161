"""Long-lived lab processes: started detached (the `lab up` command returns), tracked by pid
files in the lab's run directory, stopped by pid (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from .layout import HOST, LabLayout


class LabError(Exception):
    """A lab service cannot start or stop; the message says why and what to do."""


def start_daemon(
    layout: LabLayout,
    name: str,
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start `argv` in its own session with output to logs/<name>.log; record its pid."""
    layout.run_dir.mkdir(parents=True, exist_ok=True)
    layout.log_dir.mkdir(parents=True, exist_ok=True)
    if running_pid(layout, name):
        return running_pid(layout, name)
    with (layout.log_dir / f"{name}.log").open("ab") as log:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
    pid_file(layout, name).write_text(f"{process.pid}\n")
    return process.pid


def pid_file(layout: LabLayout, name: str) -> Path:
    return layout.run_dir / f"{name}.pid"


def running_pid(layout: LabLayout, name: str) -> int | None:
    try:
        pid = int(pid_file(layout, name).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if process_alive(pid) else None


def process_alive(pid: int) -> bool:
    """Whether the process runs (a zombie, exited but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True


def stop_pid(pid: int, timeout: float = 15.0) -> None:
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not process_alive(pid):
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(pid, os.WNOHANG)
                return
            time.sleep(0.05)


def stop_daemon(layout: LabLayout, name: str, timeout: float = 15.0) -> bool:
    pid = running_pid(layout, name)
    if pid is not None:
        stop_pid(pid, timeout)
    pid_file(layout, name).unlink(missing_ok=True)
    return pid is not None


def port_open(port: int, host: str = HOST) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def wait_for_port(port: int, what: str, timeout: float = 30.0, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not port_open(port):
        if time.monotonic() > deadline:
            hint = f" (log: {log})" if log else ""
            raise LabError(f"{what} did not listen on {HOST}:{port} within {timeout:.0f} s{hint}")
        time.sleep(0.1)


def ensure_port_free(port: int, what: str) -> None:
    if port_open(port):
        raise LabError(
            f"{what}: port {HOST}:{port} is taken by another process "
            "(stop it, or move the lab's ports with RUNBOOKS_LAB_PORT_OFFSET)"
        )


def run(argv: Sequence[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    """A short command that must succeed; its output is in the error when it does not."""
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False, **kwargs)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise LabError(f"{what} failed (exit {result.returncode}): {' | '.join(detail)}")
    return result

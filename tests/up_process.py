"""`runbooks up` as a real child process, for tests, the browser test and the benchmarks.

Starts the console script with its own ports and data directory, waits for the ready banner,
and stops it with SIGINT (Ctrl-C) at the end, asserting that it exits cleanly.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from config import PROJECT_ROOT

from .conftest import RUNBOOKS_BIN


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class UpProcess:
    process: subprocess.Popen
    output_path: Path
    prefect_port: int
    receiver_port: int
    data_dir: Path
    env: dict[str, str]

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}"

    @property
    def api_url(self) -> str:
        return f"{self.ui_url}/api"

    @property
    def receiver_url(self) -> str:
        return f"http://127.0.0.1:{self.receiver_port}"

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.process.poll() is not None:
                raise AssertionError(f"`runbooks up` exited early:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} within {timeout} s:\n{self.output()}")
            time.sleep(0.2)

    def stop(self, timeout: float = 90) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
                raise AssertionError(f"`runbooks up` ignored Ctrl-C:\n{self.output()}") from None
        return self.process.returncode


@contextlib.contextmanager
def running_up(
    tmp_path: Path,
    env: dict[str, str] | None = None,
    *,
    ready_timeout: float = 120,
    prefect_port: int | None = None,
    receiver_port: int | None = None,
) -> Iterator[UpProcess]:
    data_dir = tmp_path / "data"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNBOOKS_", "PREFECT_"))}
    full_env.update(
        RUNBOOKS_DATA_DIR=str(data_dir),
        RUNBOOKS_PREFECT_PORT=str(prefect_port or free_port()),
        RUNBOOKS_RECEIVER_PORT=str(receiver_port or free_port()),
        COLUMNS="200",
    )
    full_env.update(env or {})
    output_path = tmp_path / f"up-{time.monotonic_ns()}.log"
    with output_path.open("wb") as out:
        process = subprocess.Popen(
            [str(RUNBOOKS_BIN), "up"],
            cwd=PROJECT_ROOT,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # our SIGINT reaches it alone, like Ctrl-C in its terminal
        )
    up = UpProcess(
        process,
        output_path,
        int(full_env["RUNBOOKS_PREFECT_PORT"]),
        int(full_env["RUNBOOKS_RECEIVER_PORT"]),
        data_dir,
        full_env,
    )
    try:
        up.wait_for("runbooks are up", ready_timeout)
        yield up
    finally:
        up.stop()

"""The main job's handle on its receiver: `runbooks receiver` as a child process (same
terminal, same environment), started and checked through its health endpoint, stopped with
SIGTERM (it cancels the runs its warm processes started, as the runner does with its own)."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .child_process import stop_child


class ReceiverFailed(Exception):
    pass


class ReceiverProcess:
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 120.0) -> None:
        command = [
            str(Path(sys.executable).with_name("runbooks")),
            "receiver", "--host", self.host, "--port", str(self.port),
        ]  # fmt: skip
        # Its own session: Ctrl-C reaches the main job, which stops the receiver in order.
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if self.process.poll() is not None:
                raise ReceiverFailed(
                    f"the alert receiver exited with status {self.process.returncode}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise ReceiverFailed(f"the alert receiver did not answer within {timeout:.0f} s")
            time.sleep(0.2)

    def _healthy(self) -> bool:
        try:
            # Our own http:// address, never a user-given scheme.
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:  # noqa: S310
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout: float = 30.0) -> None:
        # The receiver alone: it cancels the runs of its warm processes itself, in order.
        process, self.process = self.process, None
        stop_child(process, timeout, whole_group=False)

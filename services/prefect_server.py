"""The Prefect server of the main job: `prefect server start` as a child process, its database
an embedded SQLite file in the project's data directory, its log in a file beside it.

The UI asks `/ui-settings` for its API address; without PREFECT_SERVER_API_HOST/PORT (or
PREFECT_UI_API_URL) set to the address really served it points at port 4200 and shows
"Unable to connect" (PREFECT-NOTES.md, "The UI, served locally").
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .child_process import stop_child


class ServerFailed(Exception):
    pass


class PrefectServer:
    def __init__(self, host: str, port: int, home: Path):
        self.host, self.port, self.home = host, port, home
        self.log_path = home / "server.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    @property
    def database_path(self) -> Path:
        return self.home / "prefect.db"

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("PREFECT_API_URL", None)  # the server is not a client of another server
        env.update(
            PREFECT_HOME=str(self.home),
            PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{self.database_path}",
            PREFECT_SERVER_API_HOST=self.host,
            PREFECT_SERVER_API_PORT=str(self.port),
            PREFECT_UI_API_URL=self.api_url,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            # One SQLite file serves the UI, the runner, the runs and the receiver; on a busy
            # 2-core machine a write can wait its turn longer than Prefect's 10 s default, and
            # the UI then shows nothing at all for a refused (503) form submission.
            PREFECT_SERVER_DATABASE_TIMEOUT="30",
            PREFECT_SERVER_DATABASE_CONNECTION_TIMEOUT="15",
        )
        return env

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        prefect = Path(sys.executable).with_name("prefect")
        command = [str(prefect), "server", "start", "--host", self.host, "--port", str(self.port)]
        with self.log_path.open("ab") as log:
            # Own session: Ctrl-C in the terminal reaches us, and we stop the server in order
            # (after the runner has paused the schedules through it).
            self.process = subprocess.Popen(
                command,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(
        self, timeout: float = 120.0, progress: Callable[[float], None] | None = None
    ) -> float:
        """Wait until the API answers its health check; returns the seconds it took."""
        started = time.monotonic()
        next_report = started + 3
        while True:
            elapsed = time.monotonic() - started
            if self.process is not None and self.process.poll() is not None:
                raise ServerFailed(
                    f"the Prefect server exited with status {self.process.returncode}: "
                    f"{self.last_log_line()} (log: {self.log_path})"
                )
            if is_healthy(self.api_url):
                return elapsed
            if elapsed > timeout:
                raise ServerFailed(
                    f"the Prefect server did not answer within {timeout:.0f} s "
                    f"(log: {self.log_path})"
                )
            if progress is not None and time.monotonic() >= next_report:
                progress(elapsed)
                next_report += 3
            time.sleep(0.25)

    def last_log_line(self) -> str:
        try:
            lines = [x for x in self.log_path.read_text(errors="replace").splitlines() if x]
        except OSError:
            return "no log"
        return lines[-1].strip() if lines else "no output"

    def stop(self, timeout: float = 20.0) -> None:
        process, self.process = self.process, None
        stop_child(process, timeout, whole_group=True)


def is_healthy(api_url: str, timeout: float = 2.0) -> bool:
    try:
        # Our own http:// address, never a user-given scheme.
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as response:  # noqa: S310
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False

"""The lab for tests (pytest plugin module): every lab service started once per session in a
temporary lab directory, on the lab's ports moved by an offset (a developer's own
`runbooks lab up` keeps its ports), and stopped at the end even when tests fail.

`lab` yields a `LabRun`: the lab, its inventory, and `run(slug, *params)`, which runs a
catalog runbook through the real console script and real flows on the session's Prefect
server, with the lab's inventory. Without the lab's programs (and no way to install them) the
tests skip locally and fail in CI (CI set), like the PostgreSQL and sshd tests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lab.lab import Lab
from lab.layout import PORTS, LabLayout
from lab.processes import LabError

from .conftest import mirror_rows, run_cli

# Away from a lab a developer runs by hand; RUNBOOKS_TEST_LAB_PORT_OFFSET for two test sessions
# on one machine.
PORT_OFFSET = int(os.environ.get("RUNBOOKS_TEST_LAB_PORT_OFFSET", "100"))


@dataclass
class LabRun:
    lab: Lab
    tmp: Path
    prefect_api_url: str
    runs: int = field(default=0)

    @property
    def layout(self) -> LabLayout:
        return self.lab.layout

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "PREFECT_API_URL": self.prefect_api_url,
            "RUNBOOKS_INVENTORY": str(self.layout.inventory_path),
            "RUNBOOKS_DATA_DIR": str(self.tmp / "data"),
            "RUNBOOKS_DATABASE_URL": f"sqlite:///{self.tmp / 'mirror.db'}",
            "RUNBOOKS_LAB_DIR": str(self.layout.root),
            "RUNBOOKS_LAB_PORT_OFFSET": str(PORT_OFFSET),
            **extra,
        }

    def run(self, slug: str, *params: str, approve: bool = True, **env: str):
        """`runbooks run SLUG -p …` against the lab: (CompletedProcess, execution, steps)."""
        args = ["run", slug]
        for param in params:
            args += ["-p", param]
        if approve:
            args.append("--approve")
        # Runbooks may take minutes by design (application-crash waits 90 s for stability).
        result = run_cli(*args, env=self.env(**env), timeout=900)
        executions, steps = mirror_rows(self.env()["RUNBOOKS_DATABASE_URL"])
        execution = executions[-1] if len(executions) > self.runs else None
        self.runs = len(executions)
        mine = [s for s in steps if execution is not None and s.execution_id == execution.id]
        return result, execution, mine

    def service(self, name: str):
        return self.lab.service(name)


@pytest.fixture(scope="session")
def lab(tmp_path_factory, prefect_server) -> Iterator[LabRun]:
    # Not under pytest's tmp root: pytest makes that 0700 again whenever any pytest starts,
    # and the lab's PostgreSQL runs as the `postgres` user, which must reach its directory.
    root = Path(tempfile.mkdtemp(prefix="runbooks-test-lab-", dir="/var/tmp"))
    root.chmod(0o711)
    layout = LabLayout(root, PORT_OFFSET, {k: v + PORT_OFFSET for k, v in PORTS.items()})
    lab = Lab(layout)
    try:
        lab.up()
    except BaseException as exc:  # whatever stopped it, stop what did start
        with contextlib.suppress(Exception):
            lab.down()
        shutil.rmtree(root, ignore_errors=True)
        if not isinstance(exc, LabError):
            raise
        if os.environ.get("CI"):
            pytest.fail(f"the lab did not start: {exc}")
        pytest.skip(f"the lab did not start: {exc}")
    try:
        yield LabRun(lab, tmp_path_factory.mktemp("lab-runs"), prefect_server)
    finally:
        lab.down()
        leftover = subprocess.run(
            ["pgrep", "-f", str(root)], capture_output=True, text=True, check=False
        ).stdout.split()
        assert not leftover, f"lab processes still running after down: {leftover}"
        shutil.rmtree(root, ignore_errors=True)

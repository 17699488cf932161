"""What a run leaves in Prefect: a progress artifact updated per step, and a Markdown report
(step table: status, duration, verification, rollback) at the end.

Artifacts are for people; a failure to write one is logged and never fails the run (the
mirror is the record).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

from runbook_catalog.models import Runbook

logger = logging.getLogger("runbooks.reporting")
MIN_SECONDS_BETWEEN_UPDATES = 1.0


def artifact_key(slug: str, suffix: str) -> str:
    """Prefect artifact keys are lowercase letters, digits and dashes."""
    return f"{slug}-{suffix}"


def _in_flow_run() -> bool:
    from prefect.context import FlowRunContext

    return FlowRunContext.get() is not None


class Progress:
    """The run's progress artifact, updated after each step by a background sender.

    An artifact update is an API round trip (tens of milliseconds on a SQLite server), more
    than a no-op step costs; so steps only record the latest value and a daemon thread sends
    it, skipping values a newer one replaced. `finish` sends the last value and waits briefly.
    """

    def __init__(self, runbook: Runbook, total: int):
        self.total = total
        self.artifact_id: uuid.UUID | None = None
        self._latest: float | None = None
        self._sent: float | None = None
        self._wake = threading.Event()
        self._finished = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        if not _in_flow_run():
            return
        try:
            from prefect.artifacts import create_progress_artifact

            self.artifact_id = create_progress_artifact(
                progress=0.0,
                key=artifact_key(runbook.slug, "progress"),
                description=f"{runbook.title}: steps completed",
            )
        except Exception as exc:
            logger.warning("could not create the progress artifact: %s", exc)
            return
        self._thread = threading.Thread(target=self._send_loop, name="progress", daemon=True)
        self._thread.start()

    def _send_loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            self._send_latest()
            if not self._stop:
                # At most one update a second: the server shares the machine with the run.
                self._finished.wait(MIN_SECONDS_BETWEEN_UPDATES)
            if self._stop:
                # `finish` sets the last value before the stop flag, so once the flag is seen
                # the latest value is final; it may have arrived while the previous was sent.
                self._send_latest()
                return

    def _send_latest(self) -> None:
        from prefect.artifacts import update_progress_artifact

        value = self._latest
        if value is None or value == self._sent:
            return
        try:
            update_progress_artifact(artifact_id=self.artifact_id, progress=value)
            self._sent = value
        except Exception as exc:
            logger.warning("could not update the progress artifact: %s", exc)

    def _update(self, progress: float) -> None:
        if self._thread is not None:
            self._latest = progress
            self._wake.set()

    def step_done(self, position: int) -> None:
        self._update(round(100.0 * position / self.total, 1))

    def finish(self, status: str) -> None:
        if status == "succeeded":
            self._update(100.0)
        if self._thread is not None:
            self._stop = True
            self._finished.set()
            self._wake.set()
            self._thread.join(timeout=10)


def report_markdown(
    runbook: Runbook, execution_id: uuid.UUID, records: list[Any], status: str
) -> str:
    lines = [
        f"# {runbook.title}: {status}",
        "",
        f"Runbook `{runbook.slug}` version {runbook.version}; execution `{execution_id}`.",
        "",
        "| # | step | status | duration | verification | rollback |",
        "|---|---|---|---|---|---|",
    ]
    for record in records:
        duration = f"{record.duration_s:.1f}s" if record.duration_s is not None else ""
        verdict = str(record.verdict).replace("|", "\\|").replace("\n", " ")
        lines.append(
            f"| {record.position} | `{record.step.id}` {record.step.title} | {record.status} | "
            f"{duration} | {verdict} | {record.rollback} |"
        )
    return "\n".join(lines) + "\n"


def publish_report(
    runbook: Runbook,
    execution_id: uuid.UUID,
    records: list[Any],
    status: str,
    redact: Callable[[str], str],
) -> None:
    if not _in_flow_run():
        return
    try:
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(
            markdown=redact(report_markdown(runbook, execution_id, records, status)),
            key=artifact_key(runbook.slug, "report"),
            description=f"{runbook.title}: step table",
        )
    except Exception as exc:
        logger.warning("could not create the report artifact: %s", exc)


def publish_step_output(
    runbook: Runbook, step: Any, output: str, redact: Callable[[str], str]
) -> None:
    """A step's output as a Markdown artifact (`publish:` in the runbook): reports such as
    the maintenance runbook's bloat and missing-index report, readable in the Prefect UI."""
    if not _in_flow_run():
        return
    try:
        from prefect.artifacts import create_markdown_artifact

        fence = "````"  # longer than any fence the output may hold itself
        create_markdown_artifact(
            markdown=redact(f"## {step.title}\n\n{fence}text\n{output.rstrip()}\n{fence}\n"),
            key=artifact_key(runbook.slug, step.publish),
            description=f"{runbook.title}: {step.title}",
        )
    except Exception as exc:
        logger.warning("could not publish the output of step %s: %s", step.id, exc)

"""Notifications: tell people through apprise when a run needs them (docs/notifications.md).

Sent when a run pauses for approval and when it ends failed, rolled_back, rollback_failed,
crashed or cancelled; never for a success. `RUNBOOKS_NOTIFY_URLS` lists the apprise URLs;
without it nothing here runs and apprise is not even imported.

A notification must never break or delay a run. Its text is built from the mirror (what the
record says, redacted when written) and passed through the run's Redactor once more; a daemon
thread sends it with a deadline, and any failure is a logged warning. At process exit we wait,
bounded, for sends still in flight, so a CLI run that fails still tells someone. Apprise URLs
often embed tokens: logs name the number of services and their schemes, never a URL.
"""

from __future__ import annotations

import atexit
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, select

from db.engine import session_scope
from db.models import (
    ExecutionStatus,
    RollbackStatus,
    RunbookExecution,
    StepExecution,
    StepStatus,
)
from runbook_catalog.durations import format_duration
from runbook_catalog.models import Step

logger = logging.getLogger("runbooks.notifications")

Redact = Callable[[str], str]

NOTIFIED_ENDINGS = frozenset(
    {
        ExecutionStatus.FAILED,
        ExecutionStatus.ROLLED_BACK,
        ExecutionStatus.ROLLBACK_FAILED,
        ExecutionStatus.CRASHED,
        ExecutionStatus.CANCELLED,
    }
)
ENDING_SENTENCES = {
    ExecutionStatus.FAILED: "failed; no completed step needed undoing.",
    ExecutionStatus.ROLLED_BACK: "failed and was rolled back: the completed steps were undone.",
    ExecutionStatus.ROLLBACK_FAILED: "failed, and undoing it failed too: it needs a person.",
    ExecutionStatus.CRASHED: "crashed: the outcome of its last step is unknown.",
    ExecutionStatus.CANCELLED: "was cancelled.",
}
# One send covers every service; each also has apprise's own connect and read timeouts
# (4 s each, 15 s to connect for email, unless the URL says `?cto=…&rto=…`).
SEND_DEADLINE_SECONDS = 15.0
OUTPUT_LINES = 10  # of the failing step's output: enough to recognise the error
COMMAND_LINES = 20
LINE_CHARS = 300
INDENT = "    "


@dataclass(frozen=True)
class Notification:
    title: str
    body: str
    kind: str  # apprise's notify type: "info", "success", "warning" or "failure"


# Building -------------------------------------------------------------------------------------
def _clip(line: str) -> str:
    return line if len(line) <= LINE_CHARS else line[: LINE_CHARS - 1] + "…"


def _indented(text: str, last_lines: int | None = None, first_lines: int | None = None) -> str:
    lines = text.rstrip().splitlines()
    if last_lines is not None and len(lines) > last_lines:
        lines = ["[…]", *lines[-last_lines:]]
    if first_lines is not None and len(lines) > first_lines:
        lines = [*lines[:first_lines], "[…]"]
    return "\n".join(INDENT + _clip(line) for line in lines)


def _flow_run_url(flow_run_id: uuid.UUID | None) -> str | None:
    """The flow run's page in the Prefect UI; None when PREFECT_UI_URL is unknown (it is
    inferred from PREFECT_API_URL when not set)."""
    if flow_run_id is None:
        return None
    try:
        from prefect.utilities.urls import url_for

        return url_for("flow-run", obj_id=flow_run_id)
    except Exception:  # a missing link must not cost the notification
        return None


def _runbook_title(execution: RunbookExecution) -> str:
    title = (execution.definition_snapshot or {}).get("title")
    version = f" {execution.runbook_version}" if execution.runbook_version else ""
    return f"{title} ({execution.runbook_slug}{version})" if title else execution.runbook_slug


def _footer(execution: RunbookExecution) -> list[str]:
    by = f", by {execution.triggered_by}" if execution.triggered_by else ""
    url = _flow_run_url(execution.flow_run_id)
    if url:
        flow_run = url
    elif execution.flow_run_id:
        flow_run = f"{execution.flow_run_id} (set PREFECT_UI_URL for a link)"
    else:
        flow_run = "none (run outside Prefect)"
    return [
        f"Trigger: {execution.trigger}{by}",
        f"Execution: {execution.id} (runbooks history --execution {execution.id})",
        f"Flow run: {flow_run}",
    ]


def _step_name(step: StepExecution) -> str:
    return f'{step.position} {step.step_id} "{step.title}"'


def _undo_lines(steps: Sequence[StepExecution]) -> list[str]:
    """What happened to the completed steps: undone, failed to undo, or left in place."""
    newest_first = sorted(steps, key=lambda s: s.position, reverse=True)

    def having(*statuses: RollbackStatus) -> list[StepExecution]:
        return [s for s in newest_first if s.rollback_status in statuses]

    lines = []
    if rolled := having(RollbackStatus.SUCCEEDED, RollbackStatus.FAILED):
        undone = ", ".join(f"{s.step_id} {s.rollback_status}" for s in rolled)
        lines.append(f"Rollbacks, newest first: {undone}")
    if left := having(RollbackStatus.PENDING, RollbackStatus.RUNNING):  # a run that died
        lines.append(f"Completed, not undone: {', '.join(s.step_id for s in left)}")
    if kept := having(RollbackStatus.IRREVERSIBLE):
        lines.append(f"Irreversible, left as they are: {', '.join(s.step_id for s in kept)}")
    return lines


def run_finished_notification(
    execution: RunbookExecution, steps: Sequence[StepExecution]
) -> Notification | None:
    """What to say about an execution that ended; None when it needs nobody (a success)."""
    status = ExecutionStatus(execution.status)
    if status not in NOTIFIED_ENDINGS:
        return None
    failed = next((s for s in steps if s.status == StepStatus.FAILED), None)
    headline = f"runbook {execution.runbook_slug}: {status.value}"
    lines = [f"{_runbook_title(execution)} {ENDING_SENTENCES[status]}", ""]
    if failed is not None:
        headline += f" (step {failed.step_id} failed)"
        lines.append(f"Failed step: {_step_name(failed)}: {failed.error or 'no detail'}")
        if failed.output_tail and failed.output_tail.strip():
            lines += ["Its output (last lines):", _indented(failed.output_tail, OUTPUT_LINES)]
    elif execution.error:
        lines.append(f"Reason: {_clip(execution.error)}")
    if unknown := [s.step_id for s in steps if s.status == StepStatus.OUTCOME_UNKNOWN]:
        lines.append(f"Outcome unknown (never re-run automatically): {', '.join(unknown)}")
    lines += [*_undo_lines(steps), ""]
    if execution.duration_seconds is not None:
        lines.append(f"Duration: {execution.duration_seconds:.1f}s")
    lines += _footer(execution)
    kind = "warning" if status == ExecutionStatus.CANCELLED else "failure"
    return Notification(headline, "\n".join(lines), kind)


def approval_notification(
    execution: RunbookExecution, step: Step, position: int, total: int, command: str
) -> Notification:
    """What to say when a step waits for someone to approve it."""
    lines = [
        f"{_runbook_title(execution)} waits for approval of step {position} of {total}: "
        f'{step.id} "{step.title}".',
        "",
        "It will run:",
        _indented(command, first_lines=COMMAND_LINES),
    ]
    if step.irreversible:
        lines.append("This step cannot be undone.")
    lines += [
        "",
        "To decide, open the flow run below in the Prefect UI, press Resume, tick 'approve' "
        "(or leave it unticked to reject) and give your name and a reason.",
        f"With no decision within {format_duration(step.approval_timeout)} the step fails and "
        "the completed steps are rolled back.",
        "",
        *_footer(execution),
    ]
    headline = f"runbook {execution.runbook_slug}: approval needed for step {step.id}"
    return Notification(headline, "\n".join(lines), "warning")


# Entry points (called by the engine and its hooks) ----------------------------------------------
def notify_run_finished(
    urls: str | None, engine: Engine, execution_id: uuid.UUID, redact: Redact
) -> None:
    """Tell people an execution ended badly. Never raises; nothing at all without URLs."""
    if not urls or not urls.strip():
        return
    try:
        with session_scope(engine) as session:
            execution = session.get(RunbookExecution, execution_id)
            if execution is None:
                return
            steps = session.scalars(
                select(StepExecution)
                .where(StepExecution.execution_id == execution_id)
                .order_by(StepExecution.position)
            ).all()
            notification = run_finished_notification(execution, steps)
    except Exception as exc:
        logger.warning("could not build the notification of %s: %s", execution_id, redact(str(exc)))
        return
    if notification is not None:
        send(urls, notification, redact)


def notify_approval_needed(
    urls: str | None,
    engine: Engine,
    execution_id: uuid.UUID,
    step: Step,
    position: int,
    command: str,
    redact: Redact,
) -> None:
    """Tell people a step waits for approval. `command` is the rendered one, secrets masked."""
    if not urls or not urls.strip():
        return
    try:
        with session_scope(engine) as session:
            execution = session.get(RunbookExecution, execution_id)
            if execution is None:
                return
            total = len((execution.definition_snapshot or {}).get("steps") or []) or position
            notification = approval_notification(execution, step, position, total, command)
    except Exception as exc:
        logger.warning("could not build the approval notification: %s", redact(str(exc)))
        return
    send(urls, notification, redact)


# Sending ----------------------------------------------------------------------------------------
_in_flight: set[threading.Thread] = set()
_in_flight_lock = threading.Lock()
_exit_wait_registered = False


def send(urls: str, notification: Notification, redact: Redact) -> threading.Thread:
    """Redact, then deliver from a daemon thread; returns at once (the thread, for tests)."""
    global _exit_wait_registered
    safe = Notification(redact(notification.title), redact(notification.body), notification.kind)
    thread = threading.Thread(
        target=_deliver, args=(urls, safe), name="runbooks-notification", daemon=True
    )
    with _in_flight_lock:
        if not _exit_wait_registered:
            atexit.register(wait_for_sends)
            _exit_wait_registered = True
        _in_flight.add(thread)
    thread.start()
    return thread


def wait_for_sends(timeout: float = SEND_DEADLINE_SECONDS) -> None:
    """Wait, at most `timeout` in all, for the sends in flight. Runs at normal exit (daemon
    threads still run during atexit); a process ending with `os._exit` must call it first."""
    deadline = time.monotonic() + timeout
    with _in_flight_lock:
        pending = list(_in_flight)
    for thread in pending:
        thread.join(max(0.0, deadline - time.monotonic()))


def _scheme(url: str) -> str:
    match = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", url)
    return match.group(1).lower() if match else "?"


def _deliver(urls: str, notification: Notification) -> None:
    try:
        # Imported here: loading apprise and its plugins takes a few hundred milliseconds.
        import apprise
        from apprise.utils.parse import parse_urls

        configured = parse_urls(urls)
        schemes = ", ".join(sorted({_scheme(url) for url in configured})) or "none"
        sender = apprise.Apprise()
        sender.add(configured)
        if len(sender) < len(configured):
            logger.warning(
                "%d of %d notification URL(s) not understood by apprise (schemes: %s)",
                len(configured) - len(sender),
                len(configured),
                schemes,
            )
        if not len(sender):
            return
        result = sender.notify(
            body=notification.body,
            title=notification.title,
            notify_type=notification.kind,
            body_format="text",
            timeout=SEND_DEADLINE_SECONDS,
        )
        if result:
            logger.info("notification sent to %d service(s) (%s)", len(sender), schemes)
        else:  # apprise has logged each service's own error, credentials masked
            logger.warning(
                "notification not delivered (%s): %d of %d service(s) failed (schemes: %s)",
                result.status.name.lower(),
                result.failed_count,
                len(sender),
                schemes,
            )
    except Exception as exc:
        # Only the type: the message of an unexpected error may quote a URL and its token.
        logger.warning("notification not sent: %s", type(exc).__name__)
    finally:
        with _in_flight_lock:
            _in_flight.discard(threading.current_thread())

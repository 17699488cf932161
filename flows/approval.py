"""Approval steps: the run pauses in Prefect and a person approves or rejects in the UI.

The pause shows the rendered step (secrets masked) and asks for a decision, a name and a
reason, all recorded in the step's row. A CLI run approves up front with `--approve`
(recorded as such); a UI form never can, because pre-approval is not a flow parameter.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field

from runbook_catalog.durations import format_duration
from runbook_catalog.models import Runbook, Step


class ApprovalInput(RunInput):
    approve: bool = Field(
        default=False, description="Tick to let this step run; leave it unticked to reject."
    )
    approver: str = Field(min_length=1, max_length=100, description="Your name (recorded).")
    reason: str = Field(default="", max_length=1000, description="Why (recorded).")


@dataclass(frozen=True)
class ApprovalDecision:
    approved: bool
    approver: str | None
    reason: str


def approval_request_markdown(
    runbook: Runbook, step: Step, position: int, run: str, rollback: str | None
) -> str:
    lines = [
        f"### Approve step {position} of {len(runbook.steps)}: `{step.id}`",
        "",
        f"**{runbook.title}** (`{runbook.slug}` {runbook.version}): {step.title}",
        "",
        "It will run:",
        "",
        "```",
        run,
        "```",
    ]
    if step.irreversible:
        lines += ["", "**This step cannot be undone.**"]
    elif rollback:
        lines += ["", "If a later step fails, it is undone with:", "", "```", rollback, "```"]
    lines += [
        "",
        f"With no decision within {format_duration(step.approval_timeout)} the step fails "
        "and the completed steps are rolled back.",
    ]
    return "\n".join(lines)


def wait_for_approval(step: Step, description: str) -> ApprovalDecision:
    """Pause this flow run until someone decides, or the step's approval timeout passes."""
    try:
        answer = pause_flow_run(
            wait_for_input=ApprovalInput.with_initial_data(description=description),
            timeout=step.approval_timeout,
            poll_interval=2,
            key=f"approve-{step.id}",
        )
    except FlowPauseTimeout:
        return ApprovalDecision(
            False, None, f"no decision within {format_duration(step.approval_timeout)}"
        )
    return ApprovalDecision(answer.approve, answer.approver, answer.reason)

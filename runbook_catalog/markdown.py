"""A runbook as a readable Markdown document: `runbooks show --markdown`, and the description
the Prefect UI shows for the runbook's deployment."""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass

from .durations import format_duration
from .models import Command, Runbook, Step

NOTE_LABELS = {
    "best_practice": "Best practice",
    "tip": "Tip",
    "warning": "Warning",
    "lesson_learned": "Lesson learned",
}


@dataclass(frozen=True)
class NoteView:
    slug: str
    title: str
    note_type: str
    is_pinned: bool
    body: str


def _command_block(command: Command) -> str:
    if command.argv is not None:
        return f"```sh\n{shlex.join(command.argv)}\n```"
    if command.script is not None:
        return f"```bash\n{command.script.rstrip()}\n```"
    return f"```sql\n{(command.sql or '').strip()}\n```"


def _flags(step: Step) -> str:
    flags = []
    if not step.changes_state:
        flags.append("read-only")
    if step.irreversible:
        flags.append("**irreversible**")
    if step.requires_approval:
        flags.append("**needs approval**")
    flags.append(f"target `{step.target}`")
    if step.connection:
        flags.append(f"connection `{step.connection}`")
    flags.append(f"timeout {format_duration(step.timeout)}")
    if step.retries:
        flags.append(f"{step.retries} retries")
    return " · ".join(flags)


def _verification(step: Step) -> list[str]:
    verify = step.verify
    if verify is None:
        return []
    lines = ["", "*Verify:*"]
    if verify.command is not None:
        lines.append(_command_block(verify.command))
    expectations = []
    output = "output" if verify.command is not None else "the step's own output"
    if verify.command is not None and verify.sql is None:
        expectations.append(f"exit code {verify.exit_code}")
    if verify.output_matches:
        expectations.append(f"{output} matches `{verify.output_matches}`")
    if verify.output_not_matches:
        expectations.append(f"{output} does not match `{verify.output_not_matches}`")
    if verify.min_rows is not None:
        expectations.append(f"at least {verify.min_rows} row(s)")
    if verify.max_rows is not None:
        expectations.append(f"at most {verify.max_rows} row(s)")
    if verify.attempts > 1:
        expectations.append(f"polled up to {verify.attempts} times, every {verify.interval}s")
    lines.append("Expect " + ", ".join(expectations) + ".")
    return lines


def runbook_markdown(runbook: Runbook, notes: Iterable[NoteView] = ()) -> str:
    rb = runbook
    out = [
        f"# {rb.title}",
        "",
        f"`{rb.slug}` · version {rb.version} · {rb.type.value.replace('_', ' ')} · "
        f"priority **{rb.priority.value}**",
        "",
        "| expected duration | RTO | RPO | owner |",
        "|---|---|---|---|",
        f"| {format_duration(rb.expected_duration)} | {format_duration(rb.rto)} | "
        f"{format_duration(rb.rpo)} | {rb.owner or '-'} |",
        "",
        rb.summary.strip(),
    ]
    notes = list(notes)
    if notes:
        out += ["", "## Notes"]
        for note in notes:
            pin = "📌 " if note.is_pinned else ""
            label = NOTE_LABELS.get(note.note_type, note.note_type)
            out += ["", f"> **{pin}{label}: {note.title}**", ">"]
            out += [f"> {line}".rstrip() for line in note.body.strip().splitlines()]
    if rb.parameters:
        out += ["", "## Parameters", "", "| name | type | required | default | description |"]
        out.append("|---|---|---|---|---|")
        for name, spec in rb.parameters.items():
            default = getattr(spec, "default", None)
            out.append(
                f"| `{name}` | {spec.type} | {'yes' if spec.is_required() else 'no'} | "
                f"{'-' if default is None else f'`{default}`'} | {spec.description} |"
            )
    if rb.schedules:
        out += ["", "## Schedules", ""]
        for schedule in rb.schedules:
            state = "" if schedule.active else " (inactive)"
            out.append(f"- `{schedule.cron}` ({schedule.timezone}){state}")
    out += ["", "## Steps"]
    for position, step in enumerate(rb.steps, start=1):
        out += ["", f"### {position}. {step.title}", "", f"`{step.id}` · {_flags(step)}"]
        if step.description:
            out += ["", step.description.strip()]
        out += ["", _command_block(step.run)]
        out += _verification(step)
        if step.rollback is not None:
            out += ["", "*Rollback:*", _command_block(step.rollback)]
    out += ["", "## Changelog", ""]
    for entry in rb.changelog:
        out.append(f"- **{entry.version}** ({entry.date.isoformat()}): " + " ".join(entry.changes))
    return "\n".join(out) + "\n"

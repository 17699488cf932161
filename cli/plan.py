"""`runbooks plan`: every step rendered with the parameters; nothing runs."""

from __future__ import annotations

from typing import Annotated

import typer

from tasks.render import ParameterError, parse_assignments, plan_runbook, validate_parameters

from . import context
from .catalog import JsonOption
from .output import console, print_json

ParamOption = Annotated[
    list[str] | None,
    typer.Option("-p", "--param", help="A parameter as name=value; repeat for more."),
]


def plan(
    slug: Annotated[str, typer.Argument(help="The runbook's slug.")],
    param: ParamOption = None,
    examples: Annotated[
        bool, typer.Option("--examples", help="Fill parameters not given from their examples.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Show what a run would do, step by step, with the parameters filled in. Runs nothing."""
    runbook = context.runbook_document(slug).model
    try:
        parameters = validate_parameters(
            runbook, parse_assignments(param or []), use_examples=examples
        )
    except ParameterError as exc:
        raise context.CommandError(str(exc)) from None
    planned = plan_runbook(runbook, parameters)
    if as_json:
        print_json(
            {
                "runbook": slug,
                "version": runbook.version,
                "parameters": parameters.model_dump(mode="json"),
                "steps": [
                    {
                        "position": p.position,
                        "id": p.step.id,
                        "title": p.step.title,
                        "target": p.step.target,
                        "changes_state": p.step.changes_state,
                        "irreversible": p.step.irreversible,
                        "requires_approval": p.step.requires_approval,
                        "run": p.run.display(),
                        "env": p.run.env,
                        "verify": p.verify.display() if p.verify else None,
                        "rollback": p.rollback.display() if p.rollback else None,
                    }
                    for p in planned
                ],
            }
        )
        return
    console.print(
        f"[bold]Plan for {runbook.title}[/bold] ({slug} {runbook.version}); nothing is run."
    )
    shown = ", ".join(f"{k}={v}" for k, v in parameters.model_dump(mode="json").items())
    console.print(f"parameters: {shown or '-'}")
    for p in planned:
        step = p.step
        flags = [f"on {step.target}"]
        if not step.changes_state:
            flags.append("read-only")
        if step.irreversible:
            flags.append("IRREVERSIBLE")
        if step.requires_approval:
            flags.append("needs approval")
        console.print(f"\n[bold]{p.position}. {step.id}[/bold] — {step.title} ({', '.join(flags)})")
        console.print(_indent("run", p.run.display()), markup=False)
        if p.run.env:
            env = " ".join(f"{k}={v}" for k, v in p.run.env.items())
            console.print(f"     env: {env}", markup=False)
        if p.verify:
            console.print(_indent("verify", p.verify.display()), markup=False)
        if step.verify and step.verify.output_matches and not p.verify:
            console.print(f"  verify: output matches /{step.verify.output_matches}/", markup=False)
        if p.rollback:
            console.print(_indent("rollback", p.rollback.display()), markup=False)


def _indent(label: str, text: str) -> str:
    lines = text.splitlines() or [""]
    pad = " " * (len(label) + 4)
    return f"  {label}: {lines[0]}" + "".join(f"\n{pad}{line}" for line in lines[1:])

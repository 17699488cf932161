"""What the loader and the lint rules report: one `Problem` per fault, with its location.

A problem's text reads `file > runbook > step id > field: message [CODE]`, so an author can
find the line without reading code. Codes are stable; tests and docs refer to them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    file: str
    runbook: str | None
    step: str | None
    field: str | None
    message: str
    code: str

    def __str__(self) -> str:
        where = [self.file]
        if self.runbook:
            where.append(self.runbook)
        if self.step:
            where.append(f"step {self.step}")
        location = " > ".join(where)
        field = f" > {self.field}" if self.field else ""
        return f"{location}{field}: {self.message} [{self.code}]"


def sort_problems(problems: list[Problem]) -> list[Problem]:
    """By file, then runbook, step, field: the order an author fixes them in."""
    return sorted(
        problems,
        key=lambda p: (p.file, p.runbook or "", p.step or "", p.field or "", p.code, p.message),
    )


class CatalogError(Exception):
    """The catalog has problems; nothing from it may be used."""

    def __init__(self, problems: list[Problem]):
        self.problems = sort_problems(problems)
        super().__init__(
            f"{len(self.problems)} problem(s) in the catalog; first: {self.problems[0]}"
            if self.problems
            else "catalog error"
        )

"""Judging a step: did its command exit as declared, and does its verification pass?"""

from __future__ import annotations

import re
from dataclasses import dataclass

from runbook_catalog.models import Step, Verification

from .executors.result import Result


@dataclass(frozen=True)
class Verdict:
    passed: bool
    detail: str  # one line for people: what was checked and what was seen


def judge_exit(step: Step, result: Result) -> Verdict:
    if result.exit_code in step.expect_exit:
        return Verdict(True, f"exit {result.exit_code}")
    expected = " or ".join(str(code) for code in step.expect_exit)
    return Verdict(False, f"exit {result.exit_code}, expected {expected}")


def judge_verification(verify: Verification, result: Result) -> Verdict:
    """Check a verification's expectations against the result of its command (or, with no
    command of its own, against the step's result)."""
    checks: list[str] = []
    if verify.command is not None and verify.sql is None:
        if result.exit_code != verify.exit_code:
            return Verdict(False, f"exit {result.exit_code}, expected {verify.exit_code}")
        checks.append(f"exit {result.exit_code}")
    if verify.sql is not None and result.exit_code != 0:
        return Verdict(False, f"query failed: {_last_line(result.stderr_tail)}")
    if verify.output_matches and not re.search(verify.output_matches, result.stdout_tail, re.M):
        return Verdict(False, f"output does not match /{verify.output_matches}/")
    if verify.output_matches:
        checks.append(f"output matches /{verify.output_matches}/")
    if verify.output_not_matches and re.search(verify.output_not_matches, result.stdout_tail, re.M):
        return Verdict(False, f"output matches /{verify.output_not_matches}/, which it must not")
    if verify.output_not_matches:
        checks.append(f"output does not match /{verify.output_not_matches}/")
    rows = result.row_count
    if verify.min_rows is not None:
        if rows is None or rows < verify.min_rows:
            return Verdict(False, f"{rows} row(s), expected at least {verify.min_rows}")
        checks.append(f"{rows} row(s) >= {verify.min_rows}")
    if verify.max_rows is not None:
        if rows is None or rows > verify.max_rows:
            return Verdict(False, f"{rows} row(s), expected at most {verify.max_rows}")
        checks.append(f"{rows} row(s) <= {verify.max_rows}")
    return Verdict(True, ", ".join(checks) or "passed")


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"

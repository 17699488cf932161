"""Printing: rich tables for people, JSON for machines, errors on stderr."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console

console = Console(highlight=False, soft_wrap=True)
errors = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    # Plain print: rich would wrap or colour it, and machines read this.
    print(json.dumps(data, indent=2, default=str, ensure_ascii=False))

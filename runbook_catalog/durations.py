"""Durations as authors write them: `90s`, `30m`, `1h`, `1h30m`, `2d`, or a number of seconds."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

_PART = re.compile(r"(\d+)([smhd])", re.ASCII)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: object) -> int:
    """Seconds in `value`; raises ValueError with the accepted forms."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text like 30m, 1h, 1h30m")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            seconds = int(text)
        else:
            pos, seconds = 0, 0
            for match in _PART.finditer(text):
                if match.start() != pos:
                    break
                seconds += int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
                pos = match.end()
            if pos != len(text) or not text:
                raise ValueError(f"'{value}' is not a duration (write 90s, 30m, 1h, 1h30m or 2d)")
    else:
        raise ValueError("a duration is a number of seconds or text like 30m, 1h, 1h30m")
    if seconds <= 0:
        raise ValueError("a duration must be longer than zero")
    return seconds


def format_duration(seconds: int | None) -> str:
    """`3600` -> `1h`, `5400` -> `1h 30m`, `None` -> `-`."""
    if seconds is None:
        return "-"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return " ".join(parts) or "0s"


Duration = Annotated[int, BeforeValidator(parse_duration)]

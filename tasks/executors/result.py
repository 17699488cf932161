"""What running one command produced: one frozen record for every executor."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime

DEFAULT_OUTPUT_LIMIT = 64 * 1024  # bytes kept per stream (the tail)
TRUNCATION_MARK = "[… earlier output truncated …]\n"


@dataclass(frozen=True)
class Result:
    command: str  # what ran, as shown to people (secrets masked)
    target: str
    exit_code: int | None  # None: killed at the deadline, or no exit status (SSH channel lost)
    stdout_tail: str
    stderr_tail: str
    truncated: bool
    timed_out: bool
    started_at: datetime
    duration_s: float
    row_count: int | None = None  # SQL only
    rows: tuple[tuple, ...] = field(default=(), repr=False)  # SQL only, at most a few hundred

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def output(self) -> str:
        """stdout then stderr, each tail marked when truncated: what the mirror keeps."""
        if self.stderr_tail and self.stdout_tail:
            return f"{self.stdout_tail.rstrip()}\n--- stderr ---\n{self.stderr_tail}"
        return self.stdout_tail or self.stderr_tail


class OutputTail:
    """Keeps the last `limit` bytes written to it; thread-safe; says if it dropped any."""

    def __init__(self, limit: int = DEFAULT_OUTPUT_LIMIT):
        self.limit = limit
        self._chunks = bytearray()
        self.truncated = False
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            self._chunks += data
            if len(self._chunks) > self.limit:
                del self._chunks[: len(self._chunks) - self.limit]
                self.truncated = True

    def text(self) -> str:
        with self._lock:
            body = bytes(self._chunks).decode("utf-8", errors="replace")
        return (TRUNCATION_MARK + body) if self.truncated else body

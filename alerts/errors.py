"""The one way a request is refused: an HTTP status and a one-line reason for the sender."""

from __future__ import annotations


class Refused(Exception):
    """Answered as `{"error": reason}` with `status`. The reason never echoes the body or a
    secret: senders' bodies may carry anything, and the answer may be logged by the sender."""

    def __init__(self, status: int, reason: str, *, headers: dict[str, str] | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}

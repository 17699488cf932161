"""Safety rule 4: secret values are replaced by literal match before text reaches any sink
(logs, artifacts, the mirror, exceptions, notifications).

A `Redactor` is filled with every secret a run resolves (inventory passwords, secret
parameters) and applied to every piece of text that leaves the run. `RedactingFilter` applies
it to log records, including Prefect's own loggers, for the records our code does not write.
"""

from __future__ import annotations

import logging
import threading

MASK = "********"
MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words; refuse them at resolution


class Redactor:
    def __init__(self, secrets: list[str] | None = None):
        self._secrets: list[str] = []
        self._lock = threading.Lock()
        for secret in secrets or []:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        if not secret:
            return
        with self._lock:
            if secret not in self._secrets:
                # Longest first, so a secret containing another is masked whole.
                self._secrets = sorted([*self._secrets, secret], key=len, reverse=True)

    def __call__(self, text: str) -> str:
        if not text:
            return text
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def __bool__(self) -> bool:
        return bool(self._secrets)


class RedactingFilter(logging.Filter):
    def __init__(self, redactor: Redactor):
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        if self.redactor:
            message = record.getMessage()
            redacted = self.redactor(message)
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


class redact_logs:
    """Context manager: attach a RedactingFilter to the root, prefect and our loggers' handlers."""

    LOGGERS = ("", "prefect", "prefect.flow_runs", "prefect.task_runs", "runbooks")

    def __init__(self, redactor: Redactor):
        self.filter = RedactingFilter(redactor)
        self._attached: list[logging.Filterer] = []

    def __enter__(self) -> redact_logs:
        for name in self.LOGGERS:
            logger = logging.getLogger(name)
            for target in [logger, *logger.handlers]:
                target.addFilter(self.filter)
                self._attached.append(target)
        return self

    def __exit__(self, *exc: object) -> None:
        for target in self._attached:
            target.removeFilter(self.filter)
        self._attached.clear()

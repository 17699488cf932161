"""What every lab service provides: start, stop, a one-line status, and its inventory targets."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from .layout import LabLayout


class LabService(ABC):
    name: ClassVar[str]
    programs: ClassVar[tuple[str, ...]] = ()  # what it runs (lab/packages.py maps to packages)

    def __init__(self, layout: LabLayout):
        self.layout = layout

    @abstractmethod
    def up(self) -> None:
        """Start (creating what is missing); a running service is left as it is."""

    @abstractmethod
    def down(self) -> None:
        """Stop every process of the service; its data stays for the next `up`."""

    @abstractmethod
    def status(self) -> tuple[bool, str]:
        """(running, one line saying where and how)."""

    def inventory(self) -> dict[str, Any]:
        """Targets for the lab inventory (`targets:` entries), by target name."""
        return {}

    def runbook_targets(self) -> dict[str, dict[str, str]]:
        """Per-runbook overrides for the inventory's `runbooks:` section: runbook slug ->
        {its target name: the inventory entry to use instead}."""
        return {}

"""The lab as a whole: its services in start order, `up`/`down`/`status`, and the inventory it
writes so `RUNBOOKS_INVENTORY=<lab>/inventory.yaml` points every runbook at lab targets."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import yaml

from .app import AppLab
from .backups import BackupsLab
from .layout import LabLayout
from .packages import ensure_programs
from .patroni import PatroniLab
from .postgres import PostgresLab, require_postgres_user
from .processes import LabError
from .service import LabService
from .sshd import SSHDLab
from .tls import TLSLab

# The backup store before Patroni, whose primary archives WAL into it.
SERVICES: tuple[type[LabService], ...] = (
    PostgresLab, SSHDLab, BackupsLab, PatroniLab, AppLab, TLSLab,
)  # fmt: skip


class Lab:
    def __init__(self, layout: LabLayout, only: Iterable[str] | None = None):
        self.layout = layout
        chosen = set(only or [])
        unknown = chosen - {s.name for s in SERVICES}
        if unknown:
            names = ", ".join(s.name for s in SERVICES)
            raise LabError(f"no lab service {', '.join(sorted(unknown))} (services: {names})")
        self.services = [s(layout) for s in SERVICES if not chosen or s.name in chosen]

    def service(self, name: str) -> LabService:
        for service in self.services:
            if service.name == name:
                return service
        raise LabError(f"lab service {name} is not part of this lab")

    def up(self, say: Callable[[str], None] = lambda line: None) -> None:
        installed = ensure_programs(p for s in self.services for p in s.programs)
        if installed:
            say(f"installed Debian packages: {' '.join(installed)}")
        require_postgres_user()
        self.layout.root.mkdir(parents=True, exist_ok=True)
        for service in self.services:
            say(f"starting {service.name}")
            service.up()
            say(f"  {service.name}: {service.status()[1]}")
        self.write_inventory()
        say(f"inventory: {self.layout.inventory_path}")

    def down(self, say: Callable[[str], None] = lambda line: None) -> None:
        failures = []
        for service in reversed(self.services):
            say(f"stopping {service.name}")
            try:
                service.down()
            except LabError as exc:  # stop the others anyway
                failures.append(str(exc))
        if failures:
            raise LabError("; ".join(failures))

    def status(self) -> list[tuple[str, bool, str]]:
        return [(s.name, *s.status()) for s in self.services]

    def write_inventory(self) -> None:
        targets: dict = {}
        runbooks: dict = {}
        for service in self.services:
            targets.update(service.inventory())
            for slug, overrides in service.runbook_targets().items():
                runbooks.setdefault(slug, {}).update(overrides)
        inventory = {"targets": targets, **({"runbooks": runbooks} if runbooks else {})}
        self.layout.inventory_path.write_text(
            "# Written by `runbooks lab up`: every runbook target points at the lab.\n"
            + yaml.safe_dump(inventory, sort_keys=True)
        )

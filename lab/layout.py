"""Where the lab keeps things and which loopback ports it uses: one place, so services, the
inventory and the tests agree."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from config import Settings

HOST = "127.0.0.1"

# Fixed high ports (LAB-NOTES.md); RUNBOOKS_LAB_PORT_OFFSET moves them all, e.g. for a second
# lab on one machine.
PORTS = {
    "postgres": 55432,
    "postgres_replica": 55433,
    "sshd": 2222,
    "nginx_tls": 8443,
    "nginx_acme": 5002,
    "pebble": 14000,
    "pebble_management": 15000,
    "challtestsrv_dns": 8053,
    "challtestsrv_management": 8055,
    "etcd_client": 23790,
    "etcd_peer": 23800,
    "patroni_rest_1": 18001,
    "patroni_rest_2": 18002,
    "patroni_pg_1": 55441,
    "patroni_pg_2": 55442,
    "patroni_endpoint": 55440,
    "app": 8081,
    "app_canary": 8181,
    "app_ssh": 2223,  # the app host's own sshd (lab/app.py)
    "app_public": 8543,  # the shop's public HTTPS entry, nginx in front of webapp
}


@dataclass(frozen=True)
class LabLayout:
    root: Path
    port_offset: int = 0
    ports: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> LabLayout:
        root = Path(os.environ.get("RUNBOOKS_LAB_DIR") or settings.data_dir / "lab")
        offset = int(os.environ.get("RUNBOOKS_LAB_PORT_OFFSET", "0"))
        return cls(root.resolve(), offset, {k: v + offset for k, v in PORTS.items()})

    def port(self, name: str) -> int:
        return self.ports[name]

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    @property
    def link_name(self) -> str:
        """`runbooks-lab-<hash of the lab root>`: the name of the links a lab puts under a
        system base (/etc/nginx, /etc/patroni, ...) into its own directory, one per lab."""
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:10]
        return f"runbooks-lab-{digest}"

    @property
    def run_dir(self) -> Path:  # pid files
        return self.path("run")

    @property
    def log_dir(self) -> Path:
        return self.path("logs")

    @property
    def inventory_path(self) -> Path:
        return self.path("inventory.yaml")

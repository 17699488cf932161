"""The lab's OpenSSH sshd on a loopback port with its own host key: the runbooks' remote
target (`app`, `web`, `db_host` all reach this machine through it). LAB-NOTES.md section 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .layout import HOST
from .processes import (
    LabError,
    ensure_port_free,
    port_open,
    run,
    running_pid,
    start_daemon,
    stop_daemon,
    wait_for_port,
)
from .service import LabService

SSHD = "/usr/sbin/sshd"
# The runbooks' SSH targets; on a real platform these are different hosts.
SSH_TARGETS = ("app", "web", "db_host")


class SSHDLab(LabService):
    name = "sshd"
    # nft: security-breach blocks the attacker on the `web` host, which is this machine.
    programs = (SSHD, "ssh-keygen", "nft")

    @property
    def root(self) -> Path:
        return self.layout.path("ssh")

    @property
    def port(self) -> int:
        return self.layout.port("sshd")

    @property
    def client_key(self) -> Path:
        return self.root / "client_key"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    def up(self) -> None:
        if running_pid(self.layout, self.name):
            return
        ensure_port_free(self.port, "sshd")
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        host_key = self.root / "ssh_host_ed25519_key"
        for key in (host_key, self.client_key):
            if not key.exists():
                run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], "ssh-keygen")
        (self.root / "authorized_keys").write_text(Path(f"{self.client_key}.pub").read_text())
        public = Path(f"{host_key}.pub").read_text().split()[:2]
        self.known_hosts.write_text(f"[{HOST}]:{self.port} {' '.join(public)}\n")
        config = self.root / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    f"ListenAddress {HOST}",
                    f"HostKey {host_key}",
                    f"PidFile {self.root / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "MaxSessions 50",
                    "MaxStartups 50:30:100",
                    "",
                ]
            )
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation, as root
        run([SSHD, "-t", "-f", str(config)], "sshd -t")
        start_daemon(self.layout, self.name, [SSHD, "-D", "-e", "-f", str(config)])
        wait_for_port(self.port, "sshd", log=self.layout.log_dir / "sshd.log")

    def down(self) -> None:
        stop_daemon(self.layout, self.name)

    def status(self) -> tuple[bool, str]:
        up = running_pid(self.layout, self.name) is not None and port_open(self.port)
        return up, f"{HOST}:{self.port} {'up' if up else 'down'}"

    def inventory(self) -> dict[str, Any]:
        if not self.client_key.exists():
            raise LabError("sshd has no client key yet: run `runbooks lab up` first")
        entry = {
            "kind": "ssh",
            "host": HOST,
            "port": self.port,
            "user": "root",
            "key_file": str(self.client_key),
            "known_hosts": str(self.known_hosts),
        }
        return {name: dict(entry) for name in SSH_TARGETS}

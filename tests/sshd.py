"""A real OpenSSH sshd on loopback for the SSH executor's tests (pytest plugin module).

`sshd` (session scope) starts `/usr/sbin/sshd -D -e -f CONFIG` on a free 127.0.0.1 port with
its own ed25519 host key and one authorized client key, all under a tmp dir, and stops it at
the end of the session. Without sshd the tests skip locally and fail in CI (CI set).

Recipe and gotchas: /work/shared/LAB-NOTES.md section 2 (as root sshd needs /run/sshd;
`StrictModes no` because the keys live under /tmp; a non-22 port is `[host]:port` in
known_hosts; `-e` sends the log to stderr, which we keep in a file for `log()`).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tasks.executors.ssh import SSHTarget

SSHD_BINARY = Path("/usr/sbin/sshd")
HOST = "127.0.0.1"
READY_WITHIN_SECONDS = 5.0


def make_ed25519_key(path: Path) -> str:
    """Write a new private key (mode 0600, OpenSSH format) and `path.pub`; return the public
    line `ssh-ed25519 AAAA...`."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(private)
    line = public.decode()
    Path(f"{path}.pub").write_text(line + "\n")
    return line


def free_port() -> int:
    """A loopback port nobody listens on (right now)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def known_hosts_line(port: int, public_key: str) -> str:
    return f"[{HOST}]:{port} {public_key}\n"


@dataclass
class SSHD:
    host: str
    port: int
    user: str
    directory: Path
    client_key: Path
    known_hosts: Path
    host_public_key: str
    log_file: Path
    process: subprocess.Popen

    def log(self) -> str:
        """sshd's stderr so far (all connections of the session)."""
        return self.log_file.read_text(errors="replace")

    def inventory_entry(self) -> dict[str, Any]:
        """This server as an `ssh` target of a RUNBOOKS_INVENTORY file."""
        return {
            "kind": "ssh",
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "key_file": str(self.client_key),
            "known_hosts": str(self.known_hosts),
        }

    def target(self, **overrides: Any) -> SSHTarget:
        values: dict[str, Any] = {
            "name": "sshd",
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "key_file": str(self.client_key),
            "known_hosts": str(self.known_hosts),
            "connect_timeout": 5.0,
        }
        values.update(overrides)
        return SSHTarget(**values)


def _missing(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _write_config(directory: Path, port: int) -> Path:
    config = directory / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                f"ListenAddress {HOST}",
                f"HostKey {directory / 'ssh_host_ed25519_key'}",
                f"PidFile {directory / 'sshd.pid'}",
                f"AuthorizedKeysFile {directory / 'authorized_keys'}",
                "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "PrintMotd no",
                "LogLevel INFO",
                "",
            ]
        )
    )
    return config


def _wait_until_listening(process: subprocess.Popen, port: int, log_file: Path) -> None:
    deadline = time.monotonic() + READY_WITHIN_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = log_file.read_text(errors="replace").strip()
            pytest.fail(f"sshd exited with {process.returncode}: {log}", pytrace=False)
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.05)
    log = log_file.read_text(errors="replace").strip()
    pytest.fail(f"sshd not listening on {HOST}:{port} after {READY_WITHIN_SECONDS:g}s: {log}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@contextlib.contextmanager
def start_sshd(directory: Path) -> Iterator[SSHD]:
    """A real OpenSSH sshd on a free loopback port, with its own keys, stopped on exit."""
    if os.geteuid() == 0:
        # sshd as root refuses to start without its privilege separation directory.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    directory.mkdir(parents=True, exist_ok=True)
    host_public_key = make_ed25519_key(directory / "ssh_host_ed25519_key")
    client_public_key = make_ed25519_key(directory / "client_key")
    (directory / "authorized_keys").write_text(client_public_key + "\n")
    port = free_port()
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(known_hosts_line(port, host_public_key))
    config = _write_config(directory, port)
    log_file = directory / "sshd.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [str(SSHD_BINARY), "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    try:
        _wait_until_listening(process, port, log_file)
        yield SSHD(
            host=HOST,
            port=port,
            user=pwd.getpwuid(os.geteuid()).pw_name,
            directory=directory,
            client_key=directory / "client_key",
            known_hosts=known_hosts,
            host_public_key=host_public_key,
            log_file=log_file,
            process=process,
        )
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHD]:
    if not SSHD_BINARY.exists():
        _missing(
            f"{SSHD_BINARY} not found: the SSH executor's tests need a real OpenSSH server "
            "(apt-get install openssh-server; scripts/setup.sh installs it)"
        )
    with start_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server

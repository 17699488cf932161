"""The Debian packages the lab's services come from: installed when missing (as root with
apt), or named exactly so a person can install them."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable

from .processes import LabError

# A program the lab runs -> the Debian package that provides it.
PROVIDERS = {
    "/usr/lib/postgresql/15/bin/initdb": "postgresql-15",
    "psql": "postgresql-client",
    "/usr/sbin/sshd": "openssh-server",
    "ssh-keygen": "openssh-client",
    "nginx": "nginx",
    "pebble": "pebble",
    "certbot": "certbot",
    "openssl": "openssl",
    "patroni": "patroni",
    "patronictl": "patroni",
    "haproxy": "haproxy",
    "etcd": "etcd-server",
    "etcdctl": "etcd-client",
    "supervisord": "supervisor",
    "supervisorctl": "supervisor",
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "curl": "curl",
    "/usr/bin/python3": "python3",
    "/usr/lib/postgresql/15/bin/pg_basebackup": "postgresql-15",
    "gpg": "gnupg",
    "tar": "tar",
    "sha256sum": "coreutils",
    "nft": "nftables",
}


def _present(program: str) -> bool:
    if program.startswith("/"):
        return os.access(program, os.X_OK)
    return shutil.which(program) is not None


def missing_packages(programs: Iterable[str]) -> list[str]:
    return sorted({PROVIDERS[p] for p in programs if not _present(p)})


def ensure_programs(programs: Iterable[str]) -> list[str]:
    """Install what is missing; returns the packages installed. Raises LabError naming the
    packages when it cannot install them itself."""
    missing = missing_packages(programs)
    if not missing:
        return []
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise LabError(f"the lab needs the Debian packages: {' '.join(missing)} (apt-get install)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
    ):
        result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            raise LabError(f"installing {' '.join(missing)} failed: {result.stderr.strip()[-300:]}")
    return missing

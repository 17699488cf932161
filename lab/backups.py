"""The lab's backup store: the WAL archive the Patroni cluster's primary archives to, encrypted
physical base backups, and the passphrase they are encrypted with. full-database-recovery
restores from it.

On the platform a nightly job makes the base backups; here `base_backup()` is that job, made
the way the runbook expects them (its `backup_file` parameter): `pg_basebackup -Fp -Xstream`,
packed with `tar czf`, encrypted with `gpg --symmetric` (AES-256) under the passphrase file,
and a `<file>.sha256` beside it.

The runbook's bases are /mnt/backups/postgres and /etc/pgbackup; up() links
`<base>/runbooks-lab-<hash>` into the lab (lab/links.py) and down() removes the links.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from .layout import HOST
from .links import link_into, unlink_from
from .postgres import PG_BIN, as_postgres, chown_postgres
from .processes import run
from .service import LabService

STORE_BASE = Path("/mnt/backups/postgres")
KEYS_BASE = Path("/etc/pgbackup")
PASSPHRASE_FILE = "backup.pass"  # noqa: S105 - a file name, not a secret


class BackupsLab(LabService):
    name = "backups"
    programs = ("gpg", "tar", "sha256sum", str(PG_BIN / "pg_basebackup"))

    @property
    def root(self) -> Path:
        return self.layout.path("backups")

    @property
    def store(self) -> Path:  # /mnt/backups/postgres/<link> on the database host
        return self.root / "postgres"

    @property
    def wal_dir(self) -> Path:  # where the Patroni primary's archive_command copies WAL
        return self.store / "wal"

    @property
    def base_dir(self) -> Path:
        return self.store / "base"

    @property
    def keys(self) -> Path:  # /etc/pgbackup/<link>
        return self.root / "keys"

    @property
    def link_name(self) -> str:
        return self.layout.link_name

    # ---- lifecycle ----------------------------------------------------------------------

    def up(self) -> None:
        for folder in (self.wal_dir, self.base_dir, self.keys):
            folder.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        chown_postgres(self.store)  # PostgreSQL itself writes the archive
        self.keys.chmod(0o700)
        passphrase = self.keys / PASSPHRASE_FILE
        if not passphrase.exists():
            passphrase.touch(mode=0o600)
            passphrase.write_text(secrets.token_urlsafe(32) + "\n")
        link_into(STORE_BASE, self.link_name, self.store)
        link_into(KEYS_BASE, self.link_name, self.keys)

    def down(self) -> None:
        unlink_from(STORE_BASE, self.link_name)
        unlink_from(KEYS_BASE, self.link_name)

    def status(self) -> tuple[bool, str]:
        linked = (STORE_BASE / self.link_name).is_symlink()
        wal = sum(1 for p in self.wal_dir.glob("*") if p.is_file()) if linked else 0
        base = len(list(self.base_dir.glob("*.gpg"))) if linked else 0
        where = f"{STORE_BASE / self.link_name}: {base} base backup(s), {wal} archived WAL file(s)"
        return linked, where if linked else f"{STORE_BASE / self.link_name} missing"

    # ---- the nightly backup job ---------------------------------------------------------

    def base_backup(self, port: int, user: str = "replicator") -> str:
        """An encrypted base backup of the PostgreSQL on `port`; returns the runbook's
        `backup_file` value (relative to /mnt/backups/postgres)."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        name = f"base-{stamp}.tar.gz.gpg"
        work = Path(tempfile.mkdtemp(prefix="base-", dir=self.root))
        try:
            copy = work / "copy"
            chown_postgres(work)
            run(
                as_postgres(PG_BIN / "pg_basebackup", "-h", HOST, "-p", port, "-U", user,
                            "-D", copy, "-Fp", "-Xstream", "-c", "fast"),
                "pg_basebackup (the nightly base backup)",
            )  # fmt: skip
            tarball = work / "base.tar.gz"
            run(["tar", "-C", copy, "-czf", tarball, "."], "tar (the base backup)")
            gnupg = work / "gnupg"  # gpg's own state, not root's ~/.gnupg
            gnupg.mkdir(mode=0o700)
            run(
                ["gpg", "--homedir", gnupg, "--batch", "--yes", "--pinentry-mode", "loopback",
                 "--passphrase-file", self.keys / PASSPHRASE_FILE, "--symmetric",
                 "--cipher-algo", "AES256", "--output", self.base_dir / name, tarball],
                "gpg --symmetric (the base backup)",
            )  # fmt: skip
            digest = run(["sha256sum", name], "sha256sum", cwd=self.base_dir).stdout
            (self.base_dir / f"{name}.sha256").write_text(digest)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return f"{self.link_name}/base/{name}"

    def runbook_paths(self) -> list[str]:
        """`k=v` values for full-database-recovery that reach this store through the links."""
        return [f"wal_archive={self.link_name}/wal", f"key_file={self.link_name}/{PASSPHRASE_FILE}"]

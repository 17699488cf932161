"""security-breach, the catalog's own runbook, against the lab: an attacker at 127.0.0.2 (all of
127/8 is this machine) fetches pages of the shop through its nginx front, and the database role
`reporting_ro` (the one role of the lab's PostgreSQL that must give a SCRAM-SHA-256 password on
loopback, lab/postgres.py) is open in a session.

A full run blocks the address in nftables (its open connection is reset, its new ones time out,
127.0.0.1 is still served), locks the role and ends its session, reports what the role and the
address took, rotates the role's password (the old one fails, the new one works) and the app's
SECRET_KEY (webapp restarted, healthy), posts to a webhook, "patches" installed packages that
are already the newest (nothing on the machine changes) and seals the evidence in a tarball whose
checksum verifies. A new password the runbook refuses stops it before anything is rotated, with
the role still locked; an evidence step that fails rolls back the notification (a correction is
posted). The block is never rolled back by the runbook: the tests remove `inet runbook_block`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lab.layout import HOST
from lab.postgres import SCRAM_ROLE

pytestmark = pytest.mark.lab

ATTACKER = "127.0.0.2"
ROLE = SCRAM_ROLE
OLD_PASSWORD = "Old-password.0123456789abcdef"
NEW_PASSWORD = "Rotated-password.0123456789ABCDEF"
OLD_SECRET_KEY = "old-secret-key-known-to-the-attacker"
INCIDENTS = Path("/var/lib/incidents")  # evidence_dir's base
# Installed on every Debian host the lab runs on; the test uses the ones with no upgrade pending.
PATCH_CANDIDATES = ("tar", "gzip", "nftables", "less")
NFT_TABLE = ("inet", "runbook_block")


# ---- helpers ------------------------------------------------------------------------------


def public_get(app, path: str = "/", source: str | None = None) -> subprocess.CompletedProcess:
    """A request to the shop's public name through nginx, from `source` if given."""
    origin = ["--interface", source] if source else []
    return app.public_curl(path, "-o", "/dev/null", "-w", "%{http_code}", *origin, max_time=3)


def attacker_totals(app) -> tuple[int, int]:
    """(requests, bytes) nginx logged for the attacker, read from its access log."""
    requests = sent = 0
    for line in (app.nginx_log_link / "access.log").read_text().splitlines():
        m = re.match(r'^(\S+) \S+ \S+ \[[^\]]+\] "[^"]*" \d{3} (\d+|-)', line)
        if m and m[1] == ATTACKER:
            requests += 1
            sent += 0 if m[2] == "-" else int(m[2])
    return requests, sent


def as_role(postgres, password: str, sql: str = "SELECT current_user"):
    """psql as the compromised role over TCP, where the lab asks it for its password."""
    return subprocess.run(
        ["psql", "-X", "-At", "-h", HOST, "-p", str(postgres.port), "-U", ROLE, "-d", "app",
         "-c", sql],
        capture_output=True,
        text=True,
        env={**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "10"},
        timeout=60,
        check=False,
    )  # fmt: skip


def nft(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["nft", *args], capture_output=True, text=True, check=False)


def webapp_pid(app) -> str:
    return app.supervisorctl("pid", "webapp").stdout.strip()


def step_map(steps) -> dict:
    return {s.step_id: s for s in steps}


# ---- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nftables(lab):
    """nft on this machine: the lab installs it (Debian package nftables) for the web host."""
    if shutil.which("nft") is None:
        message = "nft is missing (apt-get install nftables)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def firewall(nftables):
    """The runbook's block stays by design: remove what it added, so nothing is left behind."""
    existed = nft("list", "table", *NFT_TABLE).returncode == 0
    yield
    if existed:  # someone else's table: only our element goes
        nft("delete", "element", *NFT_TABLE, "attackers", f"{{ {ATTACKER} }}")
    else:
        nft("delete", "table", *NFT_TABLE)
        assert nft("list", "table", *NFT_TABLE).returncode != 0


@pytest.fixture
def app(lab):
    return lab.service("app")


@pytest.fixture
def postgres(lab):
    return lab.service("postgres")


def _drop_role(postgres) -> None:
    if postgres.psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{ROLE}'") == "1":  # noqa: S608 - a constant
        postgres.psql(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{ROLE}'"  # noqa: S608 - a constant
        )
        postgres.psql(f"DROP OWNED BY {ROLE}")
        postgres.psql(f"DROP ROLE {ROLE}")


@pytest.fixture
def role(postgres):
    """The compromised role: a password, SELECT on the shop's tables, one heavy read done and a
    session still open (psql in pg_sleep). Yields that session's process and backend pid."""
    _drop_role(postgres)
    postgres.psql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{OLD_PASSWORD}'")
    postgres.psql(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {ROLE}")
    read = as_role(postgres, OLD_PASSWORD, "SELECT * FROM customers")
    assert read.returncode == 0 and len(read.stdout.splitlines()) == 2000, read.stderr
    session = subprocess.Popen(
        ["psql", "-X", "-h", HOST, "-p", str(postgres.port), "-U", ROLE, "-d", "app",
         "-c", "SELECT pg_sleep(600)"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PGPASSWORD": OLD_PASSWORD},
    )  # fmt: skip
    backend = ""
    for _ in range(100):
        backend = postgres.psql(
            f"SELECT pid FROM pg_stat_activity WHERE usename = '{ROLE}' AND query LIKE '%pg_sleep%'"  # noqa: S608 - a constant
        )
        if backend:
            break
        time.sleep(0.1)
    assert backend, "the role's session did not show up"
    try:
        yield session, backend
    finally:
        if session.poll() is None:
            session.kill()
        if not session.stdout.closed:
            session.communicate()
        _drop_role(postgres)


@dataclass
class Webhook:
    url: str
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    status: int = 200


@pytest.fixture
def webhook():
    """The incident channel: a real HTTP server on loopback recording every POST."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            hook.received.append((dict(self.headers), body))
            self.send_response(hook.status)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((HOST, 0), Handler)
    hook = Webhook(f"http://{HOST}:{server.server_address[1]}/hooks/security")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def app_env(app):
    """The app host's /srv/app/shared/app.env with a SECRET_KEY the attacker knows; put back
    as it was afterwards."""
    path = app.app_dir / "shared" / "app.env"
    original = path.read_text()
    kept = [line for line in original.splitlines() if not line.startswith("SECRET_KEY=")]
    path.write_text("\n".join([*kept, f"SECRET_KEY={OLD_SECRET_KEY}"]) + "\n")
    try:
        yield path
    finally:
        for leftover in path.parent.glob("app.env.*"):
            leftover.unlink()
        path.write_text(original)


@pytest.fixture
def evidence_dir():
    """A unique directory under /var/lib/incidents, removed afterwards with the base if this
    test created it."""
    base_existed = INCIDENTS.exists()
    path = INCIDENTS / f"rb-lab-{uuid.uuid4().hex[:8]}"
    try:
        yield path
    finally:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        if not base_existed:
            with contextlib.suppress(OSError):
                INCIDENTS.rmdir()
        assert not path.exists()


@pytest.fixture(scope="module")
def newest_packages() -> list[str]:
    """Installed packages with no upgrade pending after the same `apt-get update` the runbook
    runs: upgrading them changes nothing on this machine."""
    if shutil.which("apt-get") is None:
        pytest.skip("no apt-get")
    subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=600, check=True)
    chosen = []
    for package in PATCH_CANDIDATES:
        status = subprocess.run(
            ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True
        ).stdout
        simulated = subprocess.run(
            ["apt-get", "-s", "install", "--only-upgrade", package],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        if status == "install ok installed" and not re.search(r"^Inst ", simulated, re.M):
            chosen.append(package)
    assert chosen, f"every candidate has an upgrade pending: {PATCH_CANDIDATES}"
    return chosen[:2]


def installed_versions(packages: list[str]) -> str:
    return subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${Version}\n", *packages],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def vulnerability_feed_answers() -> bool:
    """pip-audit's default service is PyPI's JSON API (…/pypi/<name>/<version>/json)."""
    try:
        with urllib.request.urlopen("https://pypi.org/pypi/pip/23.0.1/json", timeout=15):
            return True
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def audited_venv(lab):
    """pip-audit on the app host (as for dependency-updates); where PyPI's vulnerability feed
    answers, the live venv gets a pip and setuptools without known vulnerabilities (Debian's
    `python3 -m venv` seeds old ones). Returns whether the feed answers."""
    app = lab.service("app")
    app.install_pip_audit()
    feed = vulnerability_feed_answers()
    if feed:
        app.on_host(
            "/srv/app/current/venv/bin/pip", "install", "--quiet", "--disable-pip-version-check",
            "--upgrade", "pip", "setuptools",
            what="upgrading pip and setuptools in the live venv",
        )  # fmt: skip
    return feed


def breach(lab, app, evidence_dir, packages, webhook, new_password=NEW_PASSWORD):
    return lab.run(
        "security-breach",
        f"attacker_ip={ATTACKER}",
        f"compromised_role={ROLE}",
        "new_role_password=env:SECURITY_TEST_NEW_PASSWORD",
        "block_hours=1",
        "lookback_hours=1",
        f"access_log={app.nginx_log_link.name}/access.log",
        "app_env_file=app.env",
        f"app_port={app.port}",
        f"packages={' '.join(packages)}",
        "notify_webhook=env:SECURITY_TEST_WEBHOOK",
        f"evidence_dir={evidence_dir.name}",
        SECURITY_TEST_NEW_PASSWORD=new_password,
        SECURITY_TEST_WEBHOOK=webhook.url,
    )


def attack(app) -> None:
    """The attacker's traffic through the shop's nginx: 5 pages and 2 version probes."""
    for path in ["/"] * 5 + ["/version"] * 2:
        assert public_get(app, path, source=ATTACKER).stdout == "200"
    assert public_get(app, "/healthz").stdout == "200"  # an ordinary client


def assert_blocked(app) -> None:
    blocked = public_get(app, "/", source=ATTACKER)
    assert blocked.returncode == 28, (blocked.returncode, blocked.stdout, blocked.stderr)
    assert blocked.stdout == "000"
    assert public_get(app, "/").stdout == "200"


# ---- tests --------------------------------------------------------------------------------


def test_breach_is_contained_measured_rotated_and_sealed(
    lab, app, postgres, firewall, role, webhook, app_env, evidence_dir, newest_packages,
    audited_venv,
):  # fmt: skip
    session, backend = role
    attack(app)
    requests, sent = attacker_totals(app)
    assert requests >= 7
    # A connection the attacker holds open to the front.
    held = socket.create_connection(
        (HOST, app.public_port), timeout=10, source_address=(ATTACKER, 0)
    )
    versions_before = installed_versions(newest_packages)
    master_before = webapp_pid(app)

    result, execution, steps = breach(lab, app, evidence_dir, newest_packages, webhook)

    assert result.returncode == 0, result.stdout + result.stderr
    assert execution.status == "succeeded"
    assert [s.status for s in steps] == ["succeeded"] * 8
    by_id = step_map(steps)

    # block-attacker-ip: the held connection was reset, new ones time out, others are served.
    held.settimeout(10)
    with pytest.raises(ConnectionResetError):
        held.recv(1)
    held.close()
    assert_blocked(app)
    element = nft("get", "element", *NFT_TABLE, "attackers", f"{{ {ATTACKER} }}")
    assert element.returncode == 0 and "timeout 1h" in element.stdout, element.stderr
    dropped = re.search(r"counter packets (\d+)", nft("list", "chain", *NFT_TABLE, "input").stdout)
    assert dropped and int(dropped[1]) > 0

    # lock-compromised-role: its open session was ended by the server.
    _out, err = session.communicate(timeout=30)
    assert session.returncode != 0
    assert "terminating connection due to administrator command" in err
    assert re.search(
        rf"^\s*{backend}\s*\|\s*t\s*$", by_id["lock-compromised-role"].output_tail, re.M
    )
    assert "select pg_sleep(600)" in by_id["lock-compromised-role"].output_tail.lower()

    # check-database-exfiltration: what the role may read and what it did read.
    report = by_id["check-database-exfiltration"].output_tail
    for table in ("customers", "inventory_items", "orders", "payments", "tenants"):
        assert re.search(rf"^\s*public\s*\|\s*{table}\s*\|\s*SELECT\s*$", report, re.M), table
    assert re.search(r"^\s*1\s*\|\s*2000\s*\|.*\|\s*SELECT \* FROM customers\s*$", report, re.M)

    # check-web-exfiltration: the attacker with exactly what nginx logged for it.
    report = by_id["check-web-exfiltration"].output_tail
    assert f"attacker {ATTACKER}: {requests} requests, {sent} bytes" in report
    assert re.search(
        rf"^\s*{re.escape(ATTACKER)}\s+{requests} requests .*<- attacker$", report, re.M
    )
    assert "'200': " in report and "/version" in report

    # rotate-credentials: the old password is refused, the new one logs in.
    refused = as_role(postgres, OLD_PASSWORD)
    assert refused.returncode != 0
    assert f'password authentication failed for user "{ROLE}"' in refused.stderr
    assert as_role(postgres, NEW_PASSWORD).stdout.strip() == ROLE
    # ... the app got a new SECRET_KEY, kept its other settings, and serves after restarts.
    settings = app_env.read_text()
    key = re.search(r"^SECRET_KEY=(.*)$", settings, re.M)[1]
    assert key != OLD_SECRET_KEY and re.fullmatch(r"[0-9a-f]{64}", key)
    assert "DATABASE_URL=sqlite:////srv/app/shared/app.db" in settings
    assert not list(app_env.parent.glob("app.env.*"))
    assert webapp_pid(app) != master_before
    assert app.get("/healthz")[0] == 200
    assert public_get(app, "/healthz").stdout == "200"
    # The new password never reached a record.
    for step in steps:
        assert NEW_PASSWORD not in f"{step.command}{step.output_tail}{step.error}"

    # notify-stakeholders: the channel got the containment message as JSON.
    [(headers, body)] = webhook.received
    assert headers["Content-Type"] == "application/json"
    text = json.loads(body)["text"]
    assert f"{ATTACKER} blocked at the edge for 1 h" in text
    assert f"database role `{ROLE}` locked" in text
    assert f"Runbook run {execution.id}." in text

    # patch-packages: nothing to upgrade, so nothing changed; the release's venv was audited.
    output = by_id["patch-packages"].output_tail
    assert installed_versions(newest_packages) == versions_before
    for package in newest_packages:
        assert f"{package} is already the newest version" in output
    assert "listed packages with an upgrade still pending: 0" in output
    if audited_venv:
        assert "No known vulnerabilities found" in output
        assert "could not be audited" not in output
    else:
        # PyPI's JSON API answers 404 here (only the simple index is reachable), so pip-audit
        # skips every distribution of the venv and still exits 0.
        assert "Dependency not found on PyPI and could not be audited: gunicorn" in output

    # collect-evidence: a read-only tarball whose checksum verifies, with every report in it.
    [tarball] = evidence_dir.glob("security-breach-*.tar.gz")
    checksum = evidence_dir / f"{tarball.name}.sha256"
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    assert checksum.read_text() == f"{digest}  {tarball.name}\n"
    assert (evidence_dir.stat().st_mode & 0o777) == 0o700
    assert {oct(p.stat().st_mode & 0o777) for p in (tarball, checksum)} == {"0o400"}
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
        readme = tar.extractfile("evidence/README.txt").read().decode()
        final = tar.extractfile("evidence/db-state-final.txt").read().decode()
    assert {
        "evidence/README.txt",
        "evidence/role-sessions-at-lock.txt",
        "evidence/db-exfiltration.txt",
        "evidence/db-state-final.txt",
    } <= names
    assert f"run {execution.id}" in readme and f"attacker address: {ATTACKER}" in readme
    assert re.search(rf"^\s*{ROLE}\s*\|\s*t\s*\|", final, re.M)  # login again, new password


def test_a_refused_new_password_stops_before_rotating_and_the_role_stays_locked(
    lab, app, postgres, firewall, role, webhook, app_env, evidence_dir
):
    session, _backend = role
    attack(app)
    settings_before = app_env.read_bytes()
    master_before = webapp_pid(app)

    # Long enough to be a secret, too short for the runbook (24 characters at least).
    result, execution, steps = breach(
        lab, app, evidence_dir, ["tar"], webhook, new_password="short-password-1"
    )

    assert result.returncode == 1
    assert execution.status == "failed", [(s.step_id, s.status) for s in steps]
    assert [(s.step_id, s.status) for s in steps] == [
        ("block-attacker-ip", "succeeded"),
        ("lock-compromised-role", "succeeded"),
        ("check-database-exfiltration", "succeeded"),
        ("check-web-exfiltration", "succeeded"),
        ("rotate-credentials", "failed"),
        ("notify-stakeholders", "skipped"),
        ("patch-packages", "skipped"),
        ("collect-evidence", "skipped"),
    ]
    assert (
        "the new password must be 24-128 characters"
        in step_map(steps)["rotate-credentials"].output_tail
    )
    # Containment holds: the address is blocked, the role locked and its session ended.
    assert_blocked(app)
    session.communicate(timeout=30)
    assert session.returncode != 0
    locked = as_role(postgres, OLD_PASSWORD)
    assert locked.returncode != 0
    assert f'role "{ROLE}" is not permitted to log in' in locked.stderr
    # Nothing was rotated: the same settings file, the same webapp, no message, no evidence.
    assert app_env.read_bytes() == settings_before
    assert not list(app_env.parent.glob("app.env.*"))
    assert webapp_pid(app) == master_before
    assert webhook.received == []
    assert not evidence_dir.exists()


def test_a_failed_evidence_step_rolls_back_the_notification(
    lab, app, postgres, firewall, role, webhook, app_env, evidence_dir, newest_packages,
    audited_venv,
):  # fmt: skip
    attack(app)
    # A file where the evidence directory should be: the evidence step cannot create it.
    INCIDENTS.mkdir(parents=True, exist_ok=True)
    evidence_dir.write_text("in the way\n")

    result, execution, steps = breach(lab, app, evidence_dir, newest_packages, webhook)

    assert result.returncode == 1
    assert execution.status == "rolled_back", [(s.step_id, s.status) for s in steps]
    assert [(s.step_id, s.status, s.rollback_status) for s in steps] == [
        ("block-attacker-ip", "succeeded", "irreversible"),
        ("lock-compromised-role", "succeeded", "irreversible"),
        ("check-database-exfiltration", "succeeded", "not_needed"),
        ("check-web-exfiltration", "succeeded", "not_needed"),
        ("rotate-credentials", "succeeded", "irreversible"),
        ("notify-stakeholders", "succeeded", "succeeded"),
        ("patch-packages", "succeeded", "irreversible"),
        ("collect-evidence", "failed", "not_needed"),
    ]
    # The channel got the containment message, then the correction of this run.
    assert [json.loads(body)["text"][:9] for _headers, body in webhook.received] == [
        ":lock: Se",
        ":warning:",
    ]
    correction = json.loads(webhook.received[1][1])["text"]
    assert f"security runbook run {execution.id} failed" in correction
    # No evidence anywhere, the file in the way untouched; containment and rotation stay.
    assert evidence_dir.read_text() == "in the way\n"
    assert_blocked(app)
    assert as_role(postgres, NEW_PASSWORD).stdout.strip() == ROLE

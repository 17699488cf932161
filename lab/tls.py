"""The lab's TLS stack (LAB-NOTES.md section 3): pebble (an ACME test CA) with
pebble-challtestsrv as its DNS, nginx serving `lab.test` over TLS and the ACME webroot, and a
certbot lineage for `lab.test` registered with pebble whose current certificate expires in a
few days, so ssl-certificate-renewal finds a renewal due.

The near-expiry certificate is signed with openssl by the lab's own CA (pebble issues 5-year
certificates only). The same CA signs pebble's HTTPS listener, so certbot must trust it: the
trust bundle (lab CA + pebble's root, which issues the renewed certificates) is what the
runbook's `ca_bundle` parameter points at.

The runbook's path parameters have system bases (/etc/nginx, /etc/letsencrypt, ...), so up()
links `<base>/runbooks-lab-<hash of the lab root>` to the lab's directories and down() removes
the links; `runbook_parameters()` gives the values that reach them."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import ssl
import time
import urllib.request
from pathlib import Path
from typing import ClassVar

from cryptography import x509

from .layout import HOST
from .links import link_into, unlink_from
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

DOMAIN = "lab.test"
EXPIRING_DAYS = 5  # inside the runbook's default renewal window of 30 days
# Processes in start order; down() stops them in reverse.
DAEMONS = ("pebble-challtestsrv", "pebble", "nginx")


class TLSLab(LabService):
    name = "tls"
    programs = ("nginx", "pebble", "certbot", "openssl")
    # The runbook's path bases -> the lab directory linked under each.
    LINKED: ClassVar[dict[str, str]] = {
        "/etc/nginx": "nginx",
        "/etc/letsencrypt": "letsencrypt/config",
        "/var/lib/letsencrypt": "letsencrypt/work",
        "/var/log/letsencrypt": "letsencrypt/logs",
        "/etc/ssl": "trust",
    }

    # ---- where things are ---------------------------------------------------------------

    @property
    def root(self) -> Path:
        return self.layout.path("tls")

    @property
    def link_name(self) -> str:
        return self.layout.link_name

    @property
    def ca_pem(self) -> Path:
        return self.root / "ca" / "ca.pem"

    @property
    def pebble_root_pem(self) -> Path:
        return self.root / "trust" / "pebble-root.pem"

    @property
    def trust_bundle(self) -> Path:
        return self.root / "trust" / "bundle.pem"

    @property
    def nginx_conf(self) -> Path:
        return self.root / "nginx" / "nginx.conf"

    @property
    def sites_dir(self) -> Path:
        return self.root / "nginx" / "sites-enabled"

    @property
    def site_conf(self) -> Path:
        return self.sites_dir / f"{DOMAIN}.conf"

    @property
    def certbot_config(self) -> Path:
        return self.root / "letsencrypt" / "config"

    @property
    def live_dir(self) -> Path:
        return self.certbot_config / "live" / DOMAIN

    @property
    def webroot(self) -> Path:
        return self.root / "webroot"

    @property
    def tls_port(self) -> int:
        return self.layout.port("nginx_tls")

    @property
    def acme_server(self) -> str:
        return f"https://{HOST}:{self.layout.port('pebble')}/dir"

    def runbook_parameters(self) -> list[str]:
        """`k=v` values for ssl-certificate-renewal that reach this lab through the links."""
        name = self.link_name
        return [
            f"domain={DOMAIN}",
            f"tls_port={self.tls_port}",
            f"nginx_conf={name}/nginx.conf",
            f"tls_config={name}/sites-enabled/{DOMAIN}.conf",
            f"certbot_config_dir={name}",
            f"certbot_work_dir={name}",
            f"certbot_logs_dir={name}",
            f"acme_server={self.acme_server}",
            f"ca_bundle={name}/bundle.pem",
        ]

    # ---- lifecycle ----------------------------------------------------------------------

    def up(self) -> None:
        if all(running_pid(self.layout, d) for d in DAEMONS):
            self._link()
            return
        self.down()  # a partly running stack is restarted whole
        for port in ("challtestsrv_dns", "challtestsrv_management", "pebble",
                     "pebble_management", "nginx_acme", "nginx_tls"):  # fmt: skip
            ensure_port_free(self.layout.port(port), f"tls ({port})")
        for folder in ("ca", "trust", "nginx/tmp", "letsencrypt", "webroot"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        self.sites_dir.mkdir(parents=True, exist_ok=True)
        self.webroot.chmod(0o755)  # nginx workers run as nobody
        if not self.ca_pem.exists():
            self._make_ca()
        self._start_pebble()
        # Pebble keeps accounts and roots in memory: a new pebble means a new certbot state.
        shutil.rmtree(self.certbot_config.parent, ignore_errors=True)
        for folder in ("config", "work", "logs"):
            (self.certbot_config.parent / folder).mkdir(parents=True)
        self.site_conf.unlink(missing_ok=True)
        self._write_nginx_conf()
        self._start_nginx()
        self._fetch_pebble_root()
        self._link()
        self._certbot("certonly", "--server", self.acme_server, "--agree-tos",
                      "-m", f"ops@{DOMAIN}", "--no-eff-email", "--webroot",
                      "-w", str(self.webroot), "-d", DOMAIN, "--cert-name", DOMAIN)  # fmt: skip
        self._write_site_conf()
        self.install_expiring_certificate()

    def down(self) -> None:
        for daemon in reversed(DAEMONS):
            stop_daemon(self.layout, daemon)
        self._unlink()

    def status(self) -> tuple[bool, str]:
        running = all(running_pid(self.layout, d) for d in DAEMONS)
        up = running and port_open(self.tls_port)
        where = f"nginx {HOST}:{self.tls_port} ({DOMAIN}), ACME {self.acme_server}"
        if not up:
            return False, f"{where} down"
        try:
            served = self.served_certificate()
        except OSError as exc:
            return False, f"{where}, TLS handshake failed: {exc}"
        until = f"{served.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        return True, f"{where}, serial {served.serial_number:x} until {until}"

    # ---- certificates -------------------------------------------------------------------

    def install_expiring_certificate(self) -> int:
        """Make the lineage's current version a lab-CA certificate expiring in EXPIRING_DAYS
        days (as if the last renewal were long ago), reload nginx, wait until it is served.
        Returns its serial."""
        archive = self.certbot_config / "archive" / DOMAIN
        version = 1 + max(int(p.stem.removeprefix("cert")) for p in archive.glob("cert*.pem"))
        work = self.root / "ca" / "expiring"
        work.mkdir(exist_ok=True)
        (work / "san.ext").write_text(f"subjectAltName=DNS:{DOMAIN}\n")
        self._openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                      "-nodes", "-keyout", work / "key.pem", "-subj", f"/CN={DOMAIN}",
                      "-out", work / "csr.pem")  # fmt: skip
        self._openssl("x509", "-req", "-in", work / "csr.pem", "-CA", self.ca_pem,
                      "-CAkey", self.root / "ca" / "ca.key", "-set_serial",
                      f"0x{secrets.token_hex(15)}", "-days", str(EXPIRING_DAYS),
                      "-extfile", work / "san.ext", "-out", work / "cert.pem")  # fmt: skip
        cert, chain = (work / "cert.pem").read_text(), self.ca_pem.read_text()
        files = {"cert": cert, "chain": chain, "fullchain": cert + chain,
                 "privkey": (work / "key.pem").read_text()}  # fmt: skip
        for kind, text in files.items():
            target = archive / f"{kind}{version}.pem"
            target.write_text(text)
            target.chmod(0o600 if kind == "privkey" else 0o644)
            link = self.live_dir / f"{kind}.pem"
            link.unlink()
            link.symlink_to(f"../../archive/{DOMAIN}/{kind}{version}.pem")
        serial = x509.load_pem_x509_certificate(cert.encode()).serial_number
        self.reload_nginx()
        self.wait_until_served(serial)
        return serial

    def served_certificate(self, cafile: Path | None = None) -> x509.Certificate:
        """The certificate nginx serves for DOMAIN, from a real TLS handshake; with `cafile`
        the handshake verifies the chain and the host name against it."""
        if cafile is None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context = ssl.create_default_context(cafile=str(cafile))
        with context.wrap_socket(
            socket.create_connection((HOST, self.tls_port), timeout=10),
            server_hostname=DOMAIN,
        ) as tls:
            der = tls.getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der)

    def wait_until_served(self, serial: int, timeout: float = 30.0) -> None:
        """Until every handshake gets `serial`: the new workers serve it and the old ones,
        which keep accepting for a moment after a reload, are gone."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                # In this order: once a handshake got `serial`, a new worker exists, so a single
                # worker left means the old ones are gone.
                if self.served_certificate().serial_number == serial and self._nginx_workers() == 1:
                    return
            except OSError:
                pass  # nginx is between workers
            if time.monotonic() > deadline:
                raise LabError(f"nginx did not serve certificate {serial:x} within {timeout} s")
            time.sleep(0.2)

    def _nginx_workers(self) -> int:
        master = running_pid(self.layout, "nginx")
        return len(Path(f"/proc/{master}/task/{master}/children").read_text().split())

    def reload_nginx(self) -> None:
        run(["nginx", "-t", "-c", str(self.nginx_conf)], "nginx -t")
        run(["nginx", "-s", "reload", "-c", str(self.nginx_conf)], "nginx -s reload")

    # ---- helpers ------------------------------------------------------------------------

    def _openssl(self, *args: str | Path) -> None:
        run(["openssl", *map(str, args)], f"openssl {args[0]}")

    def _make_ca(self) -> None:
        ca = self.root / "ca"
        self._openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                      "-nodes", "-keyout", ca / "ca.key", "-out", self.ca_pem, "-days", "3650",
                      "-subj", "/CN=runbooks lab CA")  # fmt: skip
        # Pebble's HTTPS listener (ACME directory and management API) on 127.0.0.1.
        (ca / "listener.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        self._openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                      "-nodes", "-keyout", ca / "pebble-listener.key", "-subj", "/CN=localhost",
                      "-out", ca / "pebble-listener.csr")  # fmt: skip
        self._openssl("x509", "-req", "-in", ca / "pebble-listener.csr", "-CA", self.ca_pem,
                      "-CAkey", ca / "ca.key", "-set_serial", f"0x{secrets.token_hex(15)}",
                      "-days", "3650", "-extfile", ca / "listener.ext",
                      "-out", ca / "pebble-listener.pem")  # fmt: skip

    def _start_pebble(self) -> None:
        dns = f"{HOST}:{self.layout.port('challtestsrv_dns')}"
        # Fake DNS only: every name resolves to 127.0.0.1, so pebble's VA dials nginx.
        start_daemon(self.layout, "pebble-challtestsrv", [
            "pebble-challtestsrv", "-defaultIPv4", HOST, "-defaultIPv6", "", "-dns01", dns,
            "-http01", "", "-https01", "", "-tlsalpn01", "",
            "-management", f"{HOST}:{self.layout.port('challtestsrv_management')}",
        ])  # fmt: skip
        config = {
            "pebble": {
                "listenAddress": f"{HOST}:{self.layout.port('pebble')}",
                "managementListenAddress": f"{HOST}:{self.layout.port('pebble_management')}",
                "certificate": str(self.root / "ca" / "pebble-listener.pem"),
                "privateKey": str(self.root / "ca" / "pebble-listener.key"),
                "httpPort": self.layout.port("nginx_acme"),  # http-01: nginx's webroot
                "tlsPort": self.tls_port,  # tls-alpn-01 (unused)
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        (self.root / "pebble.json").write_text(json.dumps(config, indent=2))
        wait_for_port(self.layout.port("challtestsrv_dns"), "pebble-challtestsrv",
                      log=self.layout.log_dir / "pebble-challtestsrv.log")  # fmt: skip
        start_daemon(
            self.layout,
            "pebble",
            ["pebble", "-config", str(self.root / "pebble.json"), "-dnsserver", dns],
            # No validation sleeps; no rejected nonces (certbot 2.1 crashes on badNonce).
            env={"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"},
        )
        for port in ("pebble", "pebble_management"):
            wait_for_port(self.layout.port(port), "pebble", log=self.layout.log_dir / "pebble.log")

    def pebble_root(self) -> str:
        """The root pebble issues under (PEM), from its management API; new at every start."""
        url = f"https://{HOST}:{self.layout.port('pebble_management')}/roots/0"
        context = ssl.create_default_context(cafile=str(self.ca_pem))
        with urllib.request.urlopen(url, context=context, timeout=10) as response:
            return response.read().decode()

    def _fetch_pebble_root(self) -> None:
        root = self.pebble_root()
        self.pebble_root_pem.write_text(root)
        # certbot trusts pebble's listener by the lab CA; clients trust what pebble issues
        # by pebble's root.
        self.trust_bundle.write_text(self.ca_pem.read_text() + root)

    def _write_nginx_conf(self) -> None:
        tmp, logs = self.root / "nginx" / "tmp", self.layout.log_dir
        temp_paths = "".join(
            f"    {kind}_temp_path {tmp / kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        self.nginx_conf.write_text(
            f"pid {self.root / 'nginx' / 'nginx.pid'};\n"
            f"error_log {logs / 'tls-nginx-error.log'};\n"
            "worker_processes 1;\n"  # wait_until_served counts on one
            "events { worker_connections 64; }\n"
            "http {\n"
            f"    access_log {logs / 'tls-nginx-access.log'};\n"
            f"{temp_paths}"
            "    server {  # where pebble's VA fetches http-01 challenges\n"
            f"        listen {HOST}:{self.layout.port('nginx_acme')};\n"
            f"        location /.well-known/acme-challenge/ {{ root {self.webroot}; }}\n"
            "    }\n"
            f"    include {self.sites_dir}/*.conf;\n"
            "}\n"
        )

    def _write_site_conf(self) -> None:
        self.site_conf.write_text(
            "server {\n"
            f"    listen {HOST}:{self.tls_port} ssl;\n"
            f"    server_name {DOMAIN};\n"
            f"    ssl_certificate {self.live_dir / 'fullchain.pem'};\n"
            f"    ssl_certificate_key {self.live_dir / 'privkey.pem'};\n"
            f'    location / {{ return 200 "{DOMAIN}\\n"; }}\n'
            "}\n"
        )

    def _start_nginx(self) -> None:
        log = self.layout.log_dir / "tls-nginx-error.log"
        self.layout.log_dir.mkdir(parents=True, exist_ok=True)
        run(["nginx", "-t", "-c", str(self.nginx_conf), "-e", str(log)], "nginx -t")
        # In the foreground, so the lab tracks the master's pid like its other daemons.
        argv = ["nginx", "-c", str(self.nginx_conf), "-e", str(log), "-g", "daemon off;"]
        start_daemon(self.layout, "nginx", argv)
        wait_for_port(self.layout.port("nginx_acme"), "nginx", log=log)

    def _certbot(self, *args: str) -> None:
        base = self.certbot_config.parent
        run(
            ["certbot", *args, "--non-interactive", "--config-dir", str(self.certbot_config),
             "--work-dir", str(base / "work"), "--logs-dir", str(base / "logs")],
            f"certbot {args[0]} (log: {base / 'logs' / 'letsencrypt.log'})",
            # Trust pebble's listener, whatever the ambient CA variables say.
            env={**os.environ, "REQUESTS_CA_BUNDLE": str(self.ca_pem)},
            timeout=120,
        )  # fmt: skip

    def _link(self) -> None:
        """`<base>/runbooks-lab-<hash>` -> the lab directory, for each runbook path base."""
        for base, target in self.LINKED.items():
            link_into(Path(base), self.link_name, self.root / target)

    def _unlink(self) -> None:
        for base in self.LINKED:
            unlink_from(Path(base), self.link_name)

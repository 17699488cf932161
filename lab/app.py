"""The lab's application host: the demo shop (lab/demo_app) under supervisord, laid out the way
the catalog's application runbooks expect a real host (LAB-NOTES.md section 5):

    /srv/app/releases/<release>/   the release's code, its venv and requirements.lock
    /srv/app/current -> releases/<release>     what `webapp` runs (gunicorn, 2 workers)
    /srv/app/canary  -> releases/<release>     what `webapp-canary` runs (autostart=false)
    /srv/app/artifacts/<release>.tar.gz(.sha256), /srv/app/shared/{app.env,app.db,locks/}
    /etc/supervisor/supervisord.conf + conf.d/webapp.conf (webapp, webapp-canary, webapp-worker)

The runbooks name these system paths literally, so the host is a private mount namespace of
this machine (`unshare --mount`): in it, /srv, /etc/supervisor and /usr/local/sbin (the host's
own tools: pip-audit) are bind mounts of lab directories; the machine's own stay untouched.
supervisord and the host's own sshd (inventory target `app`) run in that namespace; the
namespace ends with its last process.

In front, as on the platform, nginx terminates TLS for the public host name (PUBLIC_HOST) and
proxies to webapp; its combined-format access log is what the runbooks' `web` target reads,
through /var/log/nginx/runbooks-lab-<hash of the lab root> (a symlink into the lab that up()
creates and down() removes). While the flag file /etc/nginx/runbooks-lab-<hash>-shop/
maintenance.flag exists it answers 503 with a maintenance page (full-database-recovery's
maintenance mode; the lab's `web` target for that runbook is this host). A runner, and a
command on this host, finds the public host through `CURL_HOME=runner_curl_home` (a .curlrc
with `connect-to` and the lab's CA), in place of public DNS and a public CA.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path
from typing import Any

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

DEMO_APP = Path(__file__).with_name("demo_app")
SSHD = "/usr/sbin/sshd"
PYTHON = "/usr/bin/python3"  # the host's Python, as on a real Debian app host
# The release the lab starts with, live behind `current`.
FIRST_RELEASE = "lab-v1"
PUBLIC_HOST = "shop.lab.test"
NGINX_LOG_BASE = Path("/var/log/nginx")
NGINX_CONF_BASE = Path("/etc/nginx")
MAINTENANCE_FLAG = "maintenance.flag"
# The newest schema revision among the demo app's migrations.
MIGRATIONS = DEMO_APP / "migrations" / "versions"
LATEST_SCHEMA = max(p.name.split("_", 1)[0] for p in MIGRATIONS.glob("0*.py"))
# What the releases install: gunicorn serves the app, Alembic migrates its database.
REQUIREMENTS = ("gunicorn", "alembic")
# In the namespace: the lab's directories mounted over the system paths the runbooks use.
MOUNT_AND_EXEC = (
    'mount --bind "$1" /srv && mount --bind "$2" /etc/supervisor'
    ' && mount --bind "$3" /usr/local/sbin && shift 3 && exec "$@"'
)


class AppLab(LabService):
    name = "app"
    programs = (
        "supervisord", "supervisorctl", SSHD, "ssh-keygen", "unshare", "nsenter", "curl", PYTHON,
        "nginx", "openssl",
    )  # fmt: skip

    # ---- where things are ---------------------------------------------------------------

    @property
    def root(self) -> Path:
        return self.layout.path("app")

    @property
    def srv(self) -> Path:  # mounted at /srv on the app host
        return self.root / "srv"

    @property
    def app_dir(self) -> Path:  # /srv/app on the app host
        return self.srv / "app"

    @property
    def etc_supervisor(self) -> Path:  # mounted at /etc/supervisor on the app host
        return self.root / "etc-supervisor"

    @property
    def supervisor_conf(self) -> Path:
        return self.etc_supervisor / "supervisord.conf"

    @property
    def local_sbin(self) -> Path:  # mounted at /usr/local/sbin: the host's own tools (pip-audit)
        return self.root / "usr-local-sbin"

    @property
    def requirements_lock(self) -> Path:  # what releases install unless told otherwise
        return self.root / "locks" / "requirements.lock"

    @property
    def ssh_dir(self) -> Path:
        return self.root / "ssh"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def wheels(self) -> Path:  # the pinned distributions every release's lock hashes
        return self.root / "wheels"

    @property
    def front(self) -> Path:  # nginx in front of webapp
        return self.root / "front"

    @property
    def runner_curl_home(self) -> Path:
        """CURL_HOME for a runner: its .curlrc reaches PUBLIC_HOST:443 at the lab's nginx."""
        return self.root / "runner"

    @property
    def nginx_log_link(self) -> Path:
        """/var/log/nginx/runbooks-lab-<hash>: the front's logs, under the runbooks' log base."""
        return NGINX_LOG_BASE / self.layout.link_name

    @property
    def front_link_name(self) -> str:
        """/etc/nginx/<this> -> the front's directory, where its maintenance flag goes."""
        return f"{self.layout.link_name}-shop"

    @property
    def maintenance_flag(self) -> Path:
        return self.front / MAINTENANCE_FLAG

    def maintenance_flag_parameter(self) -> str:
        """full-database-recovery's `maintenance_flag` (relative to /etc/nginx) for this lab."""
        return f"maintenance_flag={self.front_link_name}/{MAINTENANCE_FLAG}"

    @property
    def port(self) -> int:
        return self.layout.port("app")

    @property
    def public_port(self) -> int:
        return self.layout.port("app_public")

    @property
    def canary_port(self) -> int:
        return self.layout.port("app_canary")

    @property
    def ssh_port(self) -> int:
        return self.layout.port("app_ssh")

    # ---- lifecycle ----------------------------------------------------------------------

    def up(self) -> None:
        if all(running_pid(self.layout, d) for d in ("app-supervisord", "app-sshd", "app-front")):
            return
        for port, what in (
            (self.port, "webapp"),
            (self.ssh_port, "the app host's sshd"),
            (self.public_port, "the shop's nginx"),
        ):
            ensure_port_free(port, what)
        for folder in (
            self.app_dir / "releases",
            self.app_dir / "artifacts",
            self.app_dir / "shared" / "locks",
            self.etc_supervisor / "conf.d",
            self.local_sbin,
            self.root / "run",
            self.logs,
        ):
            folder.mkdir(parents=True, exist_ok=True)
        settings = self.app_dir / "shared" / "app.env"
        if not settings.exists():
            settings.write_text("DATABASE_URL=sqlite:////srv/app/shared/app.db\n")
        self._write_supervisor_config()
        if not self.requirements_lock.exists():
            self.lock("requirements", *REQUIREMENTS)
        # `current` points at /srv/app/..., which resolves on the app host only
        if not (self.app_dir / "current").is_symlink():
            self.install_release(FIRST_RELEASE, "1.0.0", schema_revision="0001")
            self.point("current", FIRST_RELEASE)
        self._start_supervisord()
        self._start_sshd()
        self._start_front()

    def down(self) -> None:
        stop_daemon(self.layout, "app-front")
        if self.nginx_log_link.is_symlink():
            self.nginx_log_link.unlink()
        unlink_from(NGINX_CONF_BASE, self.front_link_name)
        stop_daemon(self.layout, "app-sshd")
        pid = running_pid(self.layout, "app-supervisord")
        if pid is not None:
            # supervisord stops its programs (stopwaitsecs each) before it exits.
            self.supervisorctl("shutdown", check=False)
            deadline = time.monotonic() + 60
            while running_pid(self.layout, "app-supervisord") and time.monotonic() < deadline:
                time.sleep(0.1)
        stop_daemon(self.layout, "app-supervisord")

    def status(self) -> tuple[bool, str]:
        up = (
            running_pid(self.layout, "app-supervisord") is not None
            and port_open(self.ssh_port)
            and port_open(self.port)
            and port_open(self.public_port)
        )
        live = self.live_release() or "none"
        return up, (
            f"webapp {HOST}:{self.port} {'up' if up else 'down'}, live release {live}, "
            f"app host sshd {HOST}:{self.ssh_port}, "
            f"https://{PUBLIC_HOST} at {HOST}:{self.public_port}"
        )

    def inventory(self) -> dict[str, Any]:
        # Replaces the plain sshd's `app`: the application runbooks need the app host's view.
        return {
            "app": {
                "kind": "ssh",
                "host": HOST,
                "port": self.ssh_port,
                "user": "root",
                "key_file": str(self.ssh_dir / "client_key"),
                "known_hosts": str(self.ssh_dir / "known_hosts"),
            }
        }

    def runbook_targets(self) -> dict[str, dict[str, str]]:
        # The shop's nginx (the runbook's `web` host) is reached from this host in the lab.
        return {"full-database-recovery": {"web": "app"}}

    # ---- on the app host ----------------------------------------------------------------

    def host_argv(self, *argv: str | Path) -> list[str]:
        """`argv` run in a private mount namespace that sees the app host's /srv and
        /etc/supervisor (the same view as the running host's)."""
        return [
            "unshare", "--mount", "--propagation", "private", "--",
            "/bin/sh", "-c", MOUNT_AND_EXEC, "app-host",
            str(self.srv), str(self.etc_supervisor), str(self.local_sbin),
            *map(str, argv),
        ]  # fmt: skip

    def on_host(self, *argv: str | Path, what: str = "", timeout: float = 600):
        return run(self.host_argv(*argv), what or f"app host: {argv[0]}", timeout=timeout)

    def supervisorctl(self, *args: str, check: bool = True):
        argv = ["supervisorctl", "-c", str(self.supervisor_conf), *args]
        if check:
            return run(argv, f"supervisorctl {' '.join(args)}", timeout=120)
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)

    def get(self, path: str, port: int | None = None) -> tuple[int, dict]:
        """An HTTP GET to webapp (or the canary): (status, JSON body)."""
        url = f"http://{HOST}:{port or self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def public_curl(self, path: str, *options: str, max_time: float = 10):
        """curl to the shop's public name through its nginx, as a runner's curl reaches it
        (CURL_HOME=runner_curl_home); `options` are curl's own (`-w`, `--interface`, ...)."""
        return subprocess.run(
            ["curl", "-sS", "--max-time", str(max_time), *options, f"https://{PUBLIC_HOST}{path}"],
            capture_output=True,
            text=True,
            env={**os.environ, "CURL_HOME": str(self.runner_curl_home)},
            check=False,
        )

    def served_version(self) -> str | None:
        try:
            return self.get("/version")[1].get("version")
        except OSError:
            return None

    def live_release(self) -> str | None:
        current = self.app_dir / "current"
        return Path(current.readlink()).name if current.is_symlink() else None

    def point(self, link: str, release: str) -> None:
        """Point /srv/app/<link> at a release, atomically, as the runbooks do."""
        temporary = self.app_dir / f"{link}.lab-new"
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(f"/srv/app/releases/{release}")
        temporary.replace(self.app_dir / link)

    def schema_revision(self) -> str:
        import sqlite3

        with sqlite3.connect(self.app_dir / "shared" / "app.db") as db:
            return db.execute("SELECT version_num FROM alembic_version").fetchone()[0]

    # ---- releases -----------------------------------------------------------------------

    def release_tree(
        self,
        version: str,
        *,
        schema_revision: str = LATEST_SCHEMA,
        requires_settings: tuple[str, ...] = ("DATABASE_URL",),
        imports: tuple[str, ...] = (),
        lock: Path | None = None,
        smoke_tests: bool = False,
    ) -> dict[str, bytes]:
        """The files of a release (path -> content): the demo app, its migrations up to
        `schema_revision`, release.json, the hashed requirements.lock (`lock`, else the lab's)
        and, for a staging copy, the smoke tests."""
        files = {
            "webapp.py": (DEMO_APP / "webapp.py").read_bytes(),
            "alembic.ini": (DEMO_APP / "alembic.ini").read_bytes(),
            "requirements.lock": (lock or self.requirements_lock).read_bytes(),
        }
        if smoke_tests:
            files["tests/smoke/test_smoke.py"] = (
                DEMO_APP / "tests" / "smoke" / "test_smoke.py"
            ).read_bytes()
        for path in sorted((DEMO_APP / "migrations").rglob("*")):
            relative = path.relative_to(DEMO_APP).as_posix()
            if path.is_file() and "__pycache__" not in relative:
                revision = path.name.split("_", 1)[0]
                if "versions/" in relative and revision > schema_revision:
                    continue
                files[relative] = path.read_bytes()
        release = {
            "version": version,
            "schema_revision": schema_revision,
            "requires_settings": list(requires_settings),
            "imports": list(imports),
        }
        files["release.json"] = (json.dumps(release, indent=2) + "\n").encode()
        return files

    def build_artifact(self, release: str, version: str, **tree: Any) -> Path:
        """/srv/app/artifacts/<release>.tar.gz and its .sha256, as a CI pipeline publishes them."""
        artifact = self.app_dir / "artifacts" / f"{release}.tar.gz"
        with tarfile.open(artifact, "w:gz") as tar:
            for name, content in self.release_tree(version, **tree).items():
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(content), 0o644, int(time.time())
                tar.addfile(info, io.BytesIO(content))
        digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
        Path(f"{artifact}.sha256").write_text(f"{digest}  {artifact.name}\n")
        return artifact

    def install_release(
        self, release: str, version: str, *, packages: tuple[str, ...] = (), **tree: Any
    ) -> None:
        """A complete release directory with its venv and the schema migrated, the way a
        finished deployment leaves it (the lab's starting point and test fixtures); `packages`
        are installed on top from the package index (a staging copy's test tools)."""
        directory = self.app_dir / "releases" / release
        if directory.exists():
            raise LabError(f"release {release} exists already")
        for name, content in self.release_tree(version, **tree).items():
            (directory / name).parent.mkdir(parents=True, exist_ok=True)
            (directory / name).write_bytes(content)
        host_dir = f"/srv/app/releases/{release}"
        self.on_host(PYTHON, "-m", "venv", f"{host_dir}/venv", what="python3 -m venv")
        self.on_host(
            f"{host_dir}/venv/bin/pip", "install", "--quiet", "--no-input",
            "--disable-pip-version-check", "--no-index", "--find-links", self.wheels,
            "--require-hashes", "-r", f"{host_dir}/requirements.lock",
            what=f"installing release {release}'s requirements",
        )  # fmt: skip
        if packages:
            self.on_host(
                f"{host_dir}/venv/bin/pip", "install", "--quiet", "--no-input",
                "--disable-pip-version-check", *packages,
                what=f"installing {' '.join(packages)} into release {release}",
            )  # fmt: skip
        self.on_host(
            "/bin/sh",
            "-c",
            f"cd {host_dir} && venv/bin/alembic -c alembic.ini upgrade head",
            what=f"migrating for release {release}",
        )

    # ---- setup --------------------------------------------------------------------------

    def lock(self, name: str, *requirements: str) -> Path:
        """<lab>/app/locks/<name>.lock: `requirements` resolved on the package index, pinned
        and hashed for `pip install --require-hashes`; the wheels stay in the lab, so the lab's
        own releases install offline."""
        download = self.root / "download"
        shutil.rmtree(download, ignore_errors=True)
        run(
            [str(self._tools_pip()), "download", "--quiet", "--disable-pip-version-check",
             "--only-binary=:all:", "-d", str(download), *requirements],
            f"downloading {' '.join(requirements)} from the package index",
            timeout=600,
        )  # fmt: skip
        self.wheels.mkdir(parents=True, exist_ok=True)
        lines = ["# Pinned and hashed for `pip install --require-hashes` (written by the lab)."]
        for wheel in sorted(download.glob("*.whl")):
            name_part, version = wheel.name.split("-")[:2]
            digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
            lines.append(f"{name_part}=={version} --hash=sha256:{digest}")
            shutil.copy2(wheel, self.wheels / wheel.name)
        shutil.rmtree(download)
        path = self.root / "locks" / f"{name}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
        return path

    def install_pip_audit(self) -> None:
        """pip-audit on the app host's PATH (/usr/local/sbin), as dependency-updates needs."""
        if not (self.local_sbin / "pip-audit").exists():
            run(
                [str(self._tools_pip()), "install", "--quiet", "--disable-pip-version-check",
                 "pip-audit"],
                "installing pip-audit",
                timeout=600,
            )  # fmt: skip
            # This machine reaches PyPI through a TLS-inspecting proxy whose CA only the system
            # bundle has; pip-audit's requests would use certifi's, so the host points it there.
            launcher = self.local_sbin / "pip-audit"
            launcher.write_text(
                "#!/bin/sh\n"
                'REQUESTS_CA_BUNDLE="${REQUESTS_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}" '
                f'exec {self.root / "tools" / "bin" / "pip-audit"} "$@"\n'
            )
            launcher.chmod(0o755)

    def _tools_pip(self) -> Path:
        """The lab's own venv for downloading and for tools, with the host's Python."""
        tools = self.root / "tools"
        if not (tools / "bin" / "pip").exists():
            run([PYTHON, "-m", "venv", str(tools)], "python3 -m venv for the lab's tools")
        return tools / "bin" / "pip"

    def _write_supervisor_config(self) -> None:
        socket = self.root / "run" / "supervisor.sock"
        self.supervisor_conf.write_text(
            "; The app host's supervisord, laid out like the Debian package's; socket, pid\n"
            "; file and logs live in the lab directory.\n"
            f"[unix_http_server]\nfile={socket}\nchmod=0700\n\n"
            f"[supervisord]\nlogfile={self.logs / 'supervisord.log'}\n"
            f"pidfile={self.root / 'run' / 'supervisord.pid'}\nchildlogdir={self.logs}\n"
            "nodaemon=true\n\n"
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
            f"[supervisorctl]\nserverurl=unix://{socket}\n\n"
            "[include]\nfiles = conf.d/*.conf\n"
        )
        gunicorn = (
            "{link}/venv/bin/gunicorn --chdir {link} --bind 127.0.0.1:{port} --workers {workers}"
            " --graceful-timeout 10 --access-logfile - webapp:application"
        )
        common = (
            'environment=APP_SETTINGS="/srv/app/shared/app.env",DEBUG_ENDPOINTS="1"\n'
            "stopasgroup=true\nkillasgroup=true\nredirect_stderr=true\n"
        )
        (self.etc_supervisor / "conf.d" / "webapp.conf").write_text(
            "; The demo shop: gunicorn serving /srv/app/current, a canary slot for deployments\n"
            "; and background workers started on demand.\n"
            "[program:webapp]\n"
            f"command={gunicorn.format(link='/srv/app/current', port=self.port, workers=2)}\n"
            "directory=/srv/app/current\n"
            f"{common}autostart=true\nautorestart=true\nstartsecs=3\nstartretries=3\n"
            f"stopwaitsecs=15\nstdout_logfile={self.logs / 'webapp.log'}\n\n"
            "[program:webapp-canary]\n"
            f"command={gunicorn.format(link='/srv/app/canary', port=self.canary_port, workers=1)}\n"
            "directory=/srv/app/canary\n"
            f"{common}autostart=false\nautorestart=false\nstartsecs=3\nstartretries=0\n"
            f"stopwaitsecs=15\nstdout_logfile={self.logs / 'webapp-canary.log'}\n\n"
            "[program:webapp-worker]\n"
            "command=/srv/app/current/venv/bin/python /srv/app/current/webapp.py worker\n"
            "process_name=%(program_name)s_%(process_num)02d\nnumprocs=2\n"
            "directory=/srv/app/current\n"
            f"{common}autostart=false\nautorestart=true\nstartsecs=1\nstopwaitsecs=10\n"
            f"stdout_logfile={self.logs / 'webapp-worker-%(process_num)02d.log'}\n"
        )

    def _start_supervisord(self) -> None:
        start_daemon(
            self.layout,
            "app-supervisord",
            self.host_argv("supervisord", "-n", "-c", self.supervisor_conf),
        )
        wait_for_port(
            self.port, "webapp under supervisord", timeout=60, log=self.logs / "webapp.log"
        )

    def _start_sshd(self) -> None:
        ssh = self.ssh_dir
        ssh.mkdir(parents=True, exist_ok=True)
        ssh.chmod(0o700)
        host_key = ssh / "ssh_host_ed25519_key"
        for key in (host_key, ssh / "client_key"):
            if not key.exists():
                run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], "ssh-keygen")
        (ssh / "authorized_keys").write_text((ssh / "client_key.pub").read_text())
        public = Path(f"{host_key}.pub").read_text().split()[:2]
        (ssh / "known_hosts").write_text(f"[{HOST}]:{self.ssh_port} {' '.join(public)}\n")
        config = ssh / "sshd_config"
        config.write_text(
            f"Port {self.ssh_port}\nListenAddress {HOST}\nHostKey {host_key}\n"
            f"PidFile {ssh / 'sshd.pid'}\nAuthorizedKeysFile {ssh / 'authorized_keys'}\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            "MaxSessions 50\nMaxStartups 50:30:100\n"
            # curl on this host reaches the public name at the lab's nginx, as on the platform
            f"SetEnv CURL_HOME={self.runner_curl_home}\n"
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation, as root
        run([SSHD, "-t", "-f", str(config)], "sshd -t")
        # The same namespace as supervisord, so runbook commands see the host it runs.
        supervisord = running_pid(self.layout, "app-supervisord")
        start_daemon(
            self.layout,
            "app-sshd",
            ["nsenter", f"--target={supervisord}", "--mount", "--",
             SSHD, "-D", "-e", "-f", str(config)],
        )  # fmt: skip
        wait_for_port(
            self.ssh_port, "the app host's sshd", log=self.layout.log_dir / "app-sshd.log"
        )

    def _start_front(self) -> None:
        front = self.front
        (front / "logs").mkdir(parents=True, exist_ok=True)
        (front / "temp").mkdir(exist_ok=True)
        self._make_certificates()
        conf = front / "nginx.conf"
        temp = front / "temp"
        conf.write_text(
            "# The shop's public entry: TLS for the public host name, proxied to webapp.\n"
            f"daemon off;\nworker_processes 1;\npid {front / 'nginx.pid'};\n"
            f"error_log {front / 'logs' / 'error.log'};\n"
            "events { worker_connections 256; }\nhttp {\n"
            f"  access_log {front / 'logs' / 'access.log'} combined;\n"
            + "".join(
                f"  {kind}_temp_path {temp / kind};\n"
                for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
            )
            + f"  server {{\n    listen {HOST}:{self.public_port} ssl;\n"
            f"    server_name {PUBLIC_HOST};\n"
            f"    ssl_certificate {front / 'tls' / 'shop.pem'};\n"
            f"    ssl_certificate_key {front / 'tls' / 'shop.key'};\n"
            # Maintenance mode: the flag's presence is tested on every request, no reload.
            "    error_page 503 /maintenance.html;\n"
            f"    location = /maintenance.html {{\n      root {front / 'html'};\n"
            "      internal;\n    }\n"
            f"    location / {{\n      if (-f {self.maintenance_flag}) {{\n"
            "        return 503;\n      }\n"
            f"      proxy_pass http://{HOST}:{self.port};\n"
            "      proxy_set_header Host $host;\n"
            "      proxy_set_header X-Forwarded-For $remote_addr;\n    }\n  }\n}\n"
        )
        (front / "html").mkdir(exist_ok=True)
        (front / "html" / "maintenance.html").write_text(
            "<!doctype html><title>Maintenance</title><h1>Back soon</h1>\n"
        )
        error_log = str(front / "logs" / "error.log")
        run(["nginx", "-t", "-q", "-c", str(conf), "-e", error_log], "nginx -t (the shop's nginx)")
        start_daemon(self.layout, "app-front", ["nginx", "-c", str(conf), "-e", error_log])
        wait_for_port(self.public_port, "the shop's nginx", log=front / "logs" / "error.log")
        if not self.nginx_log_link.is_symlink():
            self.nginx_log_link.symlink_to(front / "logs")
        link_into(NGINX_CONF_BASE, self.front_link_name, front)
        self.runner_curl_home.mkdir(exist_ok=True)
        (self.runner_curl_home / ".curlrc").write_text(
            "# The lab's public host name, for runners (CURL_HOME=this directory).\n"
            f"connect-to = {PUBLIC_HOST}:443:{HOST}:{self.public_port}\n"
            f"cacert = {front / 'tls' / 'ca.pem'}\n"
        )

    def _make_certificates(self) -> None:
        """A lab CA and a certificate for PUBLIC_HOST signed by it."""
        tls = self.front / "tls"
        if (tls / "shop.pem").exists():
            return
        tls.mkdir(parents=True, exist_ok=True)
        ca, key = str(tls / "ca.pem"), str(tls / "ca.key")
        run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", key, "-out", ca, "-days", "3650", "-subj", "/CN=runbooks lab CA"],
            "openssl: the lab CA",
        )  # fmt: skip
        run(
            ["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(tls / "shop.key"), "-out", str(tls / "shop.csr"),
             "-subj", f"/CN={PUBLIC_HOST}"],
            "openssl: the shop's key",
        )  # fmt: skip
        (tls / "san.ext").write_text(f"subjectAltName=DNS:{PUBLIC_HOST}\n")
        run(
            ["openssl", "x509", "-req", "-in", str(tls / "shop.csr"), "-CA", ca, "-CAkey", key,
             "-CAcreateserial", "-days", "825", "-extfile", str(tls / "san.ext"),
             "-out", str(tls / "shop.pem")],
            "openssl: the shop's certificate",
        )  # fmt: skip

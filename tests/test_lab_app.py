"""The application runbooks, the catalog's own, against the lab's app host (lab/app.py): the
demo shop under supervisord, gunicorn serving /srv/app/current, nginx in front.

production-deployment puts a new release live (the shop reports its version over HTTP, also
through nginx) or, for a release failing its health check, leaves the previous one serving and
the schema where it was; application-crash brings a crash-looping webapp back on the previous
release; high-memory-usage finds the worker holding memory and restarts it; dependency-updates
takes a newer gunicorn through staging (smoke tests, canary) into production.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid

import pytest

from lab.app import PUBLIC_HOST, REQUIREMENTS

pytestmark = pytest.mark.lab

# The Redis database application-crash flushes: one no other test or service uses.
CACHE_DB = 11
REDIS = ["redis-cli", "-h", "127.0.0.1", "-p", "6379", "-n", str(CACHE_DB)]


@pytest.fixture
def app(lab):
    return lab.service("app")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def public_get(app, path: str) -> subprocess.CompletedProcess:
    """A request to the shop's public name through nginx: the body, then the status line."""
    return app.public_curl(path, "-w", "\n%{http_code}")


def program_states(app) -> dict[str, str]:
    output = app.supervisorctl("status", check=False).stdout
    return {line.split()[0]: line.split()[1] for line in output.splitlines() if line.strip()}


def deploy(lab, app, release: str, previous: str):
    return lab.run(
        "production-deployment",
        f"release={release}",
        f"previous_release={previous}",
        f"app_port={app.port}",
        f"canary_port={app.canary_port}",
        f"public_host={PUBLIC_HOST}",
        CURL_HOME=str(app.runner_curl_home),
    )


def test_deployment_puts_the_new_release_live(lab, app):
    previous = app.live_release()
    release = unique("rel")
    app.build_artifact(release, f"2.0.0+{release}", schema_revision="0002")

    result, execution, steps = deploy(lab, app, release, previous)

    assert result.returncode == 0, result.stdout + result.stderr
    assert execution.status == "succeeded"
    assert [s.status for s in steps] == ["succeeded"] * 9
    assert app.live_release() == release
    assert app.served_version() == f"2.0.0+{release}"
    through_nginx = public_get(app, "/version")
    assert through_nginx.stdout.endswith("\n200") and release in through_nginx.stdout
    assert app.schema_revision() == "0002"
    assert program_states(app)["webapp-canary"] == "STOPPED"
    # A graceful reload: the same gunicorn master, new workers.
    assert "reload-webapp" in [s.step_id for s in steps]


def test_a_release_failing_its_health_check_is_rolled_back(lab, app):
    previous = app.live_release()
    served_before, schema_before = app.served_version(), app.schema_revision()
    master_before = app.supervisorctl("pid", "webapp").stdout.strip()
    release = unique("bad")
    # The new release brings migration 0003 and needs a setting nobody configured: its /healthz
    # answers 503.
    app.build_artifact(
        release,
        "2.1.0",
        schema_revision="0003",
        requires_settings=("DATABASE_URL", "PAYMENT_GATEWAY_URL"),
    )

    result, execution, steps = deploy(lab, app, release, previous)

    assert result.returncode == 1
    assert execution.status == "rolled_back", [(s.step_id, s.status) for s in steps]
    assert [(s.step_id, s.status) for s in steps[:5]] == [
        ("preflight", "succeeded"),
        ("unpack-release", "succeeded"),
        ("install-dependencies", "succeeded"),
        ("run-migrations", "succeeded"),
        ("start-canary", "failed"),
    ]
    assert "missing settings: PAYMENT_GATEWAY_URL" in steps[4].output_tail
    assert f"schema revision before: {schema_before}" in steps[3].output_tail
    assert schema_before != "0003"
    assert [s.rollback_status for s in steps[1:4]] == ["succeeded"] * 3
    # Production never moved: same release, same master, same version; the schema went back,
    # the release directory is gone and the canary is not left running.
    assert app.live_release() == previous
    assert app.served_version() == served_before
    assert app.supervisorctl("pid", "webapp").stdout.strip() == master_before
    assert app.schema_revision() == schema_before
    assert not (app.app_dir / "releases" / release).exists()
    assert program_states(app)["webapp-canary"] in ("STOPPED", "EXITED")


def test_a_crash_loop_is_stopped_by_rolling_back(lab, app):
    good, broken = unique("good"), unique("crash")
    app.install_release(good, "3.0.0")  # both with every migration the lab has
    # A release importing a module its venv lacks: every gunicorn worker dies at boot.
    app.install_release(broken, "3.1.0", imports=("payments_sdk",))
    app.point("current", broken)
    app.supervisorctl("restart", "webapp", check=False)
    # supervisor retries it (BACKOFF) and gives up (FATAL) after startretries.
    gave_up = False
    for _ in range(240):
        if program_states(app)["webapp"] == "FATAL":
            gave_up = True
            break
        subprocess.run(["sleep", "0.5"], check=True)
    assert gave_up, program_states(app)
    # Clients get 502s from nginx meanwhile, and the cache holds entries of the broken release.
    assert all(public_get(app, "/").stdout.endswith("\n502") for _ in range(5))
    subprocess.run([*REDIS, "MSET", "page:/", "v3.1", "page:/rings", "v3.1"], check=True)

    result, execution, steps = lab.run(
        "application-crash",
        f"previous_release={good}",
        f"app_port={app.port}",
        f"access_log={app.nginx_log_link.name}/access.log",
        f"cache_db={CACHE_DB}",
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert execution.status == "succeeded"
    assert [s.status for s in steps] == ["succeeded"] * 9
    by_id = {s.step_id: s for s in steps}
    assert "Traceback" in by_id["collect-app-logs"].output_tail
    assert "payments_sdk" in by_id["collect-app-logs"].output_tail
    assert "crash_loop=yes" in by_id["check-crash-loop"].output_tail
    rate = re.search(r"5xx=(\d+)", by_id["measure-error-rate"].output_tail)
    assert rate and int(rate.group(1)) >= 5
    # The shop is back on the good release, the workers run, the cache is empty.
    assert app.live_release() == good
    assert app.served_version() == "3.0.0"
    assert public_get(app, "/healthz").stdout.endswith("\n200")
    states = program_states(app)
    assert states["webapp"] == "RUNNING"
    assert states["webapp-worker:webapp-worker_00"] == "RUNNING"
    assert subprocess.run([*REDIS, "DBSIZE"], capture_output=True, text=True).stdout.strip() == "0"
    app.supervisorctl("stop", "webapp-worker:*", check=False)


def test_a_memory_hungry_worker_is_found_and_restarted(lab, app):
    # Each request makes the gunicorn worker that serves it hold 96 MiB more.
    for _ in range(6):
        assert app.get("/debug/allocate?mib=96")[0] == 200
    master_before = app.supervisorctl("pid", "webapp").stdout.strip()

    result, execution, steps = lab.run(
        "high-memory-usage",
        "program=webapp",
        "min_rss_mib=300",
        "sample_interval=10",
        f"app_port={app.port}",
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert execution.status == "succeeded"
    assert [s.status for s in steps] == ["succeeded"] * 7
    by_id = {s.step_id: s for s in steps}
    before = int(re.search(r"program_rss_kib=(\d+)", by_id["sample-rss-growth"].output_tail)[1])
    assert before > 500 * 1024
    assert "smaps_rollup" in by_id["diagnostic-dump"].output_tail
    assert "restarted=1" in by_id["rolling-restart"].output_tail
    assert "memory dropped" in by_id["verify-memory-dropped"].output_tail
    # A new webapp whose workers hold nothing.
    assert app.supervisorctl("pid", "webapp").stdout.strip() != master_before
    for _ in range(4):
        assert app.get("/debug/allocate?mib=0")[1]["held_mib"] == 0


def test_a_dependency_update_goes_through_staging_to_production(lab, app):
    app.install_pip_audit()
    # Live and staging run an older gunicorn; the candidate lock is the lab's newest one.
    older = app.lock("older-gunicorn", "gunicorn==23.0.0", *REQUIREMENTS[1:])
    live, staging = unique("live"), unique("staging")
    app.install_release(live, "5.0.0", schema_revision="0003", lock=older)
    app.install_release(
        staging, "5.0.0", schema_revision="0003", lock=older, smoke_tests=True, packages=("pytest",)
    )
    app.point("current", live)
    app.supervisorctl("restart", "webapp")
    assert app.served_version() == "5.0.0"
    candidate = f"{unique('candidate')}.lock"
    shutil.copy(app.requirements_lock, app.app_dir / "shared" / "locks" / candidate)
    newest = re.search(r"^gunicorn==(\S+)", app.requirements_lock.read_text(), re.M)[1]
    master_before = app.supervisorctl("pid", "webapp").stdout.strip()

    result, execution, steps = lab.run(
        "dependency-updates",
        f"candidate_lock={candidate}",
        f"staging_release={staging}",
        f"canary_port={app.canary_port}",
        f"app_port={app.port}",
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert execution.status == "succeeded"
    assert [s.status for s in steps] == ["succeeded"] * 7
    by_id = {s.step_id: s for s in steps}
    assert "candidate_audit_exit=0" in by_id["audit-vulnerabilities"].output_tail
    assert re.search(r"\d+ passed", by_id["test-staging"].output_tail)
    for release in (staging, live):
        site = app.app_dir / "releases" / release / "venv" / "lib"
        assert [p.name for p in site.glob("python3*/site-packages/gunicorn-*.dist-info")] == [
            f"gunicorn-{newest}.dist-info"
        ]
    # Production was restarted onto the new packages and serves.
    assert app.supervisorctl("pid", "webapp").stdout.strip() != master_before
    assert app.served_version() == "5.0.0"
    assert program_states(app)["webapp-canary"] in ("STOPPED", "EXITED")

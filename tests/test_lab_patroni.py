"""database-outage, the catalog's own runbook, against the lab's Patroni cluster (etcd, two
PostgreSQL nodes, HAProxy as the application's endpoint): with the cluster paused (Patroni
promotes nothing by itself) the leader's PostgreSQL crashes; the runbook fails over to the
replica, the new leader accepts writes through the endpoint, the old leader is re-initialised
and streams from it, the incident channel hears about it and the note is on the host.
A candidate that is not a member, or is the leader itself, is refused before anything
changes."""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lab.patroni import CONFIG_BASE, MEMBERS, SCOPE

pytestmark = pytest.mark.lab

INCIDENT_BASE = Path("/var/log/incidents")
STEPS = 8


class Webhook:
    """A real HTTP receiver for the incident channel: records every JSON body posted to it."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/incident"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.close()


@pytest.fixture
def incident_dir():
    """A unique directory under the runbook's incident base (removed afterwards, and the base
    too when this test created it)."""
    created_base = not INCIDENT_BASE.exists()
    folder = INCIDENT_BASE / f"rb-lab-{uuid.uuid4().hex[:8]}"
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
    if created_base and INCIDENT_BASE.exists() and not any(INCIDENT_BASE.iterdir()):
        INCIDENT_BASE.rmdir()


@pytest.fixture
def patroni(lab):
    """The lab's Patroni cluster, healthy before the test and resumed and healthy after it."""
    service = lab.service("patroni")
    service.wait_healthy()
    yield service
    service.resume()
    service.wait_healthy()


def wait_for(condition, what: str, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)
    return value


def cluster(patroni) -> dict[str, dict]:
    return {m["Member"]: m for m in json.loads(patroni.patronictl("list", "-f", "json"))}


def outage_params(patroni, candidate: str, failed: str, incident_dir: Path) -> list[str]:
    return [
        f"cluster={SCOPE}",
        f"candidate={candidate}",
        f"failed_member={failed}",
        f"patroni_config={patroni.ctl_config.relative_to(CONFIG_BASE)}",
        f"incident_dir={incident_dir.relative_to(INCIDENT_BASE)}",
        "notify_webhook=env:INCIDENT_WEBHOOK_URL",
    ]


def test_failover_after_the_primary_crashes(lab, patroni, webhook, incident_dir):
    old = patroni.leader()
    [new] = [m for m in MEMBERS if m != old]
    timeline = cluster(patroni)[old]["TL"]
    # Committed before the outage: must survive the failover.
    marker = uuid.uuid4().hex
    patroni.psql("CREATE TABLE IF NOT EXISTS lab_outage_marker (value text PRIMARY KEY)")
    patroni.psql(f"INSERT INTO lab_outage_marker VALUES ('{marker}')")  # noqa: S608 - a uuid

    # The outage: maintenance mode is on, then the leader's PostgreSQL dies. Patroni removes
    # the leader key but, paused, promotes nobody: the runbook's situation.
    patroni.patronictl("pause", "--wait")
    patroni.kill_postgres(old)
    wait_for(lambda: patroni.leader() is None, f"{old} to lose the leader key")
    assert cluster(patroni)[new]["Role"] == "Replica"

    result, execution, steps = lab.run(
        "database-outage",
        *outage_params(patroni, new, old, incident_dir),
        INCIDENT_WEBHOOK_URL=webhook.url,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert execution.status == "succeeded"
    assert [s.status for s in steps] == ["succeeded"] * STEPS

    # The candidate leads on a new timeline, and the endpoint routes to it.
    members = cluster(patroni)
    assert members[new]["Role"] == "Leader" and members[new]["TL"] > timeline
    assert patroni.psql("SELECT current_setting('port')") == str(patroni.pg_port(new))
    # It accepts writes: a row through the application's endpoint, read back, with the data
    # from before the outage still there and the runbook's own probe row.
    row = uuid.uuid4().hex
    patroni.psql(f"INSERT INTO lab_outage_marker VALUES ('{row}')")  # noqa: S608 - a uuid
    assert (
        patroni.psql(
            f"SELECT count(*) FROM lab_outage_marker WHERE value IN ('{marker}', '{row}')"  # noqa: S608
        )
        == "2"
    )
    assert (
        patroni.psql(
            f"SELECT count(*) FROM runbook_write_probe WHERE run_id = '{execution.id}'"  # noqa: S608
        )
        == "1"
    )
    # The old leader was re-initialised: a streaming replica of the new one, on its timeline,
    # and the row written after the run reaches it.
    assert members[old]["Role"] == "Replica" and members[old]["TL"] == members[new]["TL"]
    assert (
        patroni.psql(
            f"SELECT state FROM pg_stat_replication WHERE application_name = '{old}'"  # noqa: S608
        )
        == "streaming"
    )
    wait_for(
        lambda: patroni.psql(
            f"SELECT count(*) FROM lab_outage_marker WHERE value = '{row}'",  # noqa: S608
            port=patroni.pg_port(old),
        ) == "1",
        f"the new row on {old}",
    )  # fmt: skip

    # The incident channel got the outcome, and the note is on the database host.
    [message] = webhook.received
    assert f"failed over from `{old}` to `{new}`" in message["text"]
    [note] = incident_dir.glob(f"*-database-outage-{SCOPE}.md")
    text = note.read_text()
    assert text.startswith(f"# Database outage, cluster {SCOPE}")
    assert f"failed primary: {old}; promoted: {new}" in text


@pytest.mark.parametrize("candidate", ["node9", "the leader"])
def test_a_candidate_that_is_no_replica_is_refused(lab, patroni, webhook, incident_dir, candidate):
    before = cluster(patroni)
    leader = patroni.leader()
    if candidate == "the leader":
        candidate = leader
    [replica] = [m for m in MEMBERS if m != leader]
    result, execution, steps = lab.run(
        "database-outage",
        *outage_params(patroni, candidate, replica, incident_dir),
        INCIDENT_WEBHOOK_URL=webhook.url,
    )
    assert result.returncode == 1
    assert execution.status == "failed", [(s.step_id, s.status) for s in steps]
    assert steps[0].step_id == "assess-cluster" and steps[0].status == "failed"
    # The verify script said why: "node9 is not a member …", "the candidate is not a replica".
    assert steps[0].verify_passed is False
    assert {s.status for s in steps[1:]} == {"skipped"}

    # Nothing changed: the same leader on the same timeline, the replica still streaming,
    # writes still go through, nobody was notified and no note was written.
    assert patroni.leader() == leader
    assert {m: (v["Role"], v["TL"]) for m, v in cluster(patroni).items()} == {
        m: (v["Role"], v["TL"]) for m, v in before.items()
    }
    assert not patroni.paused()
    patroni.wait_healthy(timeout=10)
    assert webhook.received == []
    assert not incident_dir.exists()

"""The SSH executor against a real OpenSSH sshd on loopback (the `sshd` fixture, tests/sshd.py).

No mocks: every test opens real connections. A canary file proves that a hostile value or a
refused connection ran nothing; sshd's own log proves how many logins happened.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.errors import (
    AuthenticationFailed,
    CommandTimedOut,
    HostKeyRejected,
    TargetUnreachable,
)
from tasks.executors.result import TRUNCATION_MARK
from tasks.executors.ssh import SSHExecutor
from tasks.redaction import MASK, Redactor
from tasks.render import RenderedCommand
from tests.sshd import SSHD, free_port, known_hosts_line, make_ed25519_key


def argv(*elements: str) -> RenderedCommand:
    return RenderedCommand("argv", argv=elements)


def script(text: str) -> RenderedCommand:
    return RenderedCommand("script", script=text)


def hostile(canary: Path) -> str:
    """Text that runs `touch CANARY` wherever a shell parses it as code."""
    return f"$(touch {canary}) `touch {canary}`; touch {canary} 'quote\" \\ \n\t{{x}} -n"


def log_since(sshd: SSHD, offset: int, *, until: str, within: float = 3.0) -> str:
    """sshd's log after `offset`, once `until` appears in it (sshd writes asynchronously)."""
    deadline = time.monotonic() + within
    while True:
        text = sshd.log()[offset:]
        if until in text or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


@pytest.fixture
def executor(sshd: SSHD) -> Iterator[SSHExecutor]:
    executor = SSHExecutor(sshd.target())
    yield executor
    executor.close()


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    return tmp_path / "CANARY"


# Values arrive literally (safety rule 1) --------------------------------------------------
def test_argv_elements_and_env_values_arrive_literally(executor, canary):
    value = hostile(canary)
    result = executor.run(
        argv("sh", "-c", 'printf "%s|%s" "$1" "$RB_VALUE"', "sh", value),
        env={"RB_VALUE": value},
        timeout=10,
    )
    assert result.exit_code == 0, result
    assert result.stdout_tail == f"{value}|{value}"
    assert result.stderr_tail == ""
    assert not canary.exists()


def test_script_reads_values_from_env_only(executor, canary):
    value = hostile(canary)
    result = executor.run(
        script('printf "%s\\n" "$RB_TENANT_ID"\necho "$0" >&2\n'),
        env={"RB_TENANT_ID": value, "RB_EMPTY": ""},
        timeout=10,
    )
    assert result.exit_code == 0, result
    assert result.stdout_tail == value + "\n"
    assert result.stderr_tail == "runbook-step\n"
    assert not canary.exists()


def test_describe_shows_target_and_command_but_no_env_values(sshd, canary):
    secret = "s3cret-Value-42"
    executor = SSHExecutor(sshd.target(), redact=Redactor([secret]))
    try:
        result = executor.run(
            argv("printenv", "RB_PASSWORD", "RB_TENANT_ID"),
            env={"RB_PASSWORD": secret, "RB_TENANT_ID": hostile(canary)},
            timeout=10,
        )
    finally:
        executor.close()
    assert result.command == (
        f"ssh {sshd.user}@127.0.0.1:{sshd.port} env RB_PASSWORD=… RB_TENANT_ID=… "
        "timeout -k 5 10s printenv RB_PASSWORD RB_TENANT_ID"
    )
    assert result.stdout_tail.startswith(f"{MASK}\n")  # secrets in output are redacted too
    assert secret not in result.stdout_tail
    assert not canary.exists()


def test_env_names_are_checked_before_connecting(executor):
    for name in ("rb_lower", "RB-DASH", "RB_X\n", "1RB", "RB X", ""):
        with pytest.raises(ValueError, match="environment variable name"):
            executor.run(argv("true"), env={name: "v"}, timeout=10)
    with pytest.raises(ValueError, match="timeout"):
        executor.run(argv("true"), env={}, timeout=0)
    assert executor.handshakes == 0


# Exit codes, stderr, stdin -----------------------------------------------------------------
def test_exit_codes_and_stderr(executor):
    assert executor.run(argv("true"), env={}, timeout=10).exit_code == 0
    assert executor.run(argv("false"), env={}, timeout=10).exit_code == 1

    failed = executor.run(script("echo out\necho 'went wrong' >&2\nexit 3"), env={}, timeout=10)
    assert (failed.exit_code, failed.stdout_tail, failed.stderr_tail) == (
        3,
        "out\n",
        "went wrong\n",
    )
    assert not failed.ok and not failed.timed_out

    missing = executor.run(argv("ls", "/nonexistent-path"), env={}, timeout=10)
    assert missing.exit_code == 2
    assert "No such file or directory" in missing.stderr_tail

    # 124 is the remote `timeout`'s status, but only a run that lasted its deadline timed out.
    fast = executor.run(script("exit 124"), env={}, timeout=10)
    assert (fast.exit_code, fast.timed_out) == (124, False)

    # stdin is closed: a command that reads it sees EOF at once instead of hanging.
    reads_stdin = executor.run(argv("cat"), env={}, timeout=10)
    assert (reads_stdin.exit_code, reads_stdin.stdout_tail) == (0, "")


def test_output_is_kept_when_a_background_child_holds_stdout(executor, tmp_path):
    # The command exits at once, but its child keeps stdout open: the run still returns (the
    # base class stops waiting for the streams after its grace), with the output that came.
    pidfile = tmp_path / "child.pid"
    env = {"RB_PIDFILE": str(pidfile)}
    started = time.monotonic()
    result = executor.run(
        script('sleep 60 &\necho "$!" > "$RB_PIDFILE"\necho parent done'), env=env, timeout=30
    )
    assert time.monotonic() - started < 15
    assert (result.exit_code, result.stdout_tail) == (0, "parent done\n")
    stop = executor.run(script('kill "$(cat "$RB_PIDFILE")"'), env=env, timeout=10)
    assert stop.exit_code == 0 and executor.handshakes == 1


# One connection per executor --------------------------------------------------------------
def test_many_runs_share_one_handshake(sshd, executor):
    offset = len(sshd.log())
    for n in range(5):
        result = executor.run(argv("echo", str(n)), env={}, timeout=10)
        assert result.stdout_tail == f"{n}\n"
    assert executor.handshakes == 1
    log = log_since(sshd, offset, until="Accepted publickey")
    assert log.count("Accepted publickey") == 1, log

    executor.close()  # a closed executor connects again on its next run
    assert executor.run(argv("true"), env={}, timeout=10).exit_code == 0
    assert executor.handshakes == 2


# Host keys (safety rule 3) and authentication ---------------------------------------------
def test_unknown_host_key_is_refused_before_anything_is_sent(sshd, tmp_path, canary):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    executor = SSHExecutor(sshd.target(known_hosts=str(empty)))
    offset = len(sshd.log())
    with pytest.raises(HostKeyRejected) as refused:
        executor.run(argv("touch", str(canary)), env={}, timeout=10)
    message = str(refused.value)
    assert f"unknown host key for [127.0.0.1]:{sshd.port}" in message
    assert f"add it to {empty}" in message
    assert f"user {sshd.user}" in message
    assert "\n" not in message
    assert refused.value.result is None
    assert executor.handshakes == 0
    assert not canary.exists()
    log = log_since(sshd, offset, until="[preauth]")
    assert "[preauth]" in log, log  # sshd saw the connection end before authentication
    assert "Accepted" not in log, log


def test_changed_host_key_is_refused(sshd, tmp_path, canary):
    other_key = make_ed25519_key(tmp_path / "impostor_host_key")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(known_hosts_line(sshd.port, other_key))
    executor = SSHExecutor(sshd.target(known_hosts=str(known_hosts)))
    offset = len(sshd.log())
    with pytest.raises(
        HostKeyRejected, match=rf"host key for \[127\.0\.0\.1\]:{sshd.port} changed"
    ):
        executor.run(argv("touch", str(canary)), env={}, timeout=10)
    assert not canary.exists()
    log = log_since(sshd, offset, until="[preauth]")
    assert "Accepted" not in log, log


def test_key_not_in_authorized_keys_fails_authentication(sshd, tmp_path, canary):
    stranger = tmp_path / "stranger_key"
    make_ed25519_key(stranger)
    executor = SSHExecutor(sshd.target(key_file=str(stranger)))
    with pytest.raises(AuthenticationFailed) as failed:
        executor.run(argv("touch", str(canary)), env={}, timeout=10)
    assert f"authentication failed for {sshd.user}@127.0.0.1:{sshd.port}" in str(failed.value)
    assert executor.handshakes == 0
    assert not canary.exists()


def test_closed_port_is_unreachable_fast(sshd):
    port = free_port()
    executor = SSHExecutor(sshd.target(port=port))
    started = time.monotonic()
    with pytest.raises(TargetUnreachable) as unreachable:
        executor.run(argv("true"), env={}, timeout=10)
    assert time.monotonic() - started < 2
    assert type(unreachable.value) is TargetUnreachable
    assert f"cannot reach {sshd.user}@127.0.0.1:{port}: connection refused" in str(
        unreachable.value
    )


# The deadline holds on the remote side (safety rule 5) ------------------------------------
PID_GONE = """\
pid=$(cat "$RB_PIDFILE")
for _ in 1 2 3 4 5 6 7 8 9 10; do
  state=$(sed -n 's/^[0-9]* (.*) \\([A-Z]\\) .*/\\1/p' "/proc/$pid/stat" 2>/dev/null)
  case "$state" in ''|Z|X) echo "pid $pid gone"; exit 0 ;; esac  # a zombie is dead already
  sleep 0.2
done
echo "pid $pid still there (state $state)"
exit 1
"""


def test_timeout_kills_the_remote_process(executor, tmp_path):
    pidfile = tmp_path / "sleep.pid"
    env = {"RB_PIDFILE": str(pidfile)}
    started = time.monotonic()
    with pytest.raises(CommandTimedOut) as timed_out:
        executor.run(
            script('sleep 300 &\necho "$!" > "$RB_PIDFILE"\necho started\nwait\n'),
            env=env,
            timeout=2,
        )
    elapsed = time.monotonic() - started
    assert 2 <= elapsed < 5, elapsed  # the remote `timeout` answered, not our local fallback
    assert timed_out.value.timeout == 2
    result = timed_out.value.result
    assert result.timed_out and result.exit_code is None
    assert result.stdout_tail == "started\n"  # the partial output is kept
    assert pidfile.read_text().strip().isdigit()

    check = executor.run(script(PID_GONE), env=env, timeout=10)
    assert check.exit_code == 0, check.stdout_tail
    assert executor.handshakes == 1  # the connection survived the timeout


def test_timeout_kills_a_command_that_ignores_sigterm(executor, tmp_path):
    pidfile = tmp_path / "stubborn.pid"
    env = {"RB_PIDFILE": str(pidfile)}
    started = time.monotonic()
    with pytest.raises(CommandTimedOut) as timed_out:
        executor.run(
            script('trap \'\' TERM\nsleep 300 &\necho "$!" > "$RB_PIDFILE"\nwait\n'),
            env=env,
            timeout=1,
        )
    elapsed = time.monotonic() - started
    assert 1 + 5 <= elapsed < 1 + 5 + 2, elapsed  # TERM ignored; KILL after `timeout -k 5`
    assert timed_out.value.result.timed_out
    assert executor.run(script(PID_GONE), env=env, timeout=10).exit_code == 0


# Bounded output (safety rule 5) -----------------------------------------------------------
def test_output_is_bounded_and_keeps_the_tail(executor):
    result = executor.run(
        script("seq 1 200000\necho last line >&2"), env={}, timeout=30, output_limit=1000
    )
    assert result.exit_code == 0
    assert result.truncated
    assert result.stdout_tail.startswith(TRUNCATION_MARK)
    body = result.stdout_tail.removeprefix(TRUNCATION_MARK)
    assert len(body.encode()) == 1000
    assert body.endswith("199999\n200000\n")
    assert result.stderr_tail == "last line\n"

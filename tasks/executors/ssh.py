"""Run a command on an SSH target with paramiko: argv or a bash script, values only in env.

One connection per executor (per target of a run), opened on the first command and reused by
every later one; `close()` ends it. Host keys are checked against the target's own
known_hosts file only (`RejectPolicy`: an unknown or changed key refuses the connection before
authentication, so nothing is sent). The remote command line is built with `shlex.join` from
argv elements (DESIGN.md rule 1):

    env RB_X=value ... timeout -k 5 30s ARGV...     (a script: bash -c SCRIPT runbook-step)

The deadline holds on both ends (rule 5): the remote `timeout` stops the command's process
group (TERM, KILL 5 s later) and reports it; locally `wait()` gives up a little after that and
`kill()` closes the channel, for a target that stopped answering.

paramiko and socket errors become our errors in one place, `_translated_errors`. No pty, stdin
closed at once; stdout and stderr are read apart, concurrently, by the base class's pumps.
paramiko ignores "exit-signal", so a command killed by a signal has no exit status (None).
"""

from __future__ import annotations

import contextlib
import math
import re
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from paramiko import (
    AuthenticationException,
    BadHostKeyException,
    Channel,
    RejectPolicy,
    SSHClient,
    SSHException,
)
from paramiko.ssh_exception import NoValidConnectionsError

from ..errors import AuthenticationFailed, CommandTimedOut, HostKeyRejected, TargetUnreachable
from ..render import RenderedCommand
from .base import KILL_GRACE_SECONDS, Redact, StreamingExecutor, no_redaction
from .local import command_argv
from .result import DEFAULT_OUTPUT_LIMIT, Result

ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")  # used with fullmatch: no trailing newline slips by

# The remote `timeout` sends TERM at the deadline and KILL this long after.
REMOTE_KILL_AFTER = KILL_GRACE_SECONDS
# Locally we wait for the remote side to report its own timeout (at most deadline +
# REMOTE_KILL_AFTER) plus this slack before closing the channel ourselves.
LOCAL_SLACK_SECONDS = 3.0

# paramiko's exit_status when the channel closed without an exit-status message: the command
# died from a signal (paramiko ignores "exit-signal") or the connection was lost.
_NO_EXIT_STATUS = -1
# What the remote command reports when `timeout` stopped it: 124 (TERM worked), 137 (a shell
# reporting KILL), or no status at all (`timeout` itself killed by KILL after -k).
_REMOTE_TIMEOUT_STATUSES = (124, 137, _NO_EXIT_STATUS)


@dataclass(frozen=True, kw_only=True)
class SSHTarget:
    """Where and how to connect. Secrets arrive already resolved and are never shown."""

    name: str
    host: str
    port: int = 22
    user: str
    key_file: str | Path | None = None
    known_hosts: str | Path
    password: str | None = field(default=None, repr=False)
    key_passphrase: str | None = field(default=None, repr=False)
    connect_timeout: float = 10.0
    keepalive_seconds: int = 15

    def __post_init__(self) -> None:
        if self.key_file is None and self.password is None:
            raise ValueError(f"ssh target {self.name}: give a key_file or a password")
        if not str(self.known_hosts):
            raise ValueError(f"ssh target {self.name}: known_hosts is required")

    @property
    def where(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


def check_env(env: dict[str, str]) -> None:
    for name, value in env.items():
        if not ENV_NAME.fullmatch(name):
            raise ValueError(f"environment variable name {name!r} must match [A-Z_][A-Z0-9_]*")
        if "\0" in value:
            raise ValueError(f"environment variable {name} contains a NUL byte")


def check_timeout(timeout: float) -> None:
    # `timeout 0` would mean "no deadline" on the remote side.
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")


def remote_command_line(command: RenderedCommand, env: dict[str, str], timeout: float) -> str:
    """The one string the remote login shell parses: every element quoted by shlex."""
    check_env(env)
    check_timeout(timeout)
    return shlex.join(
        [
            "env",
            *[f"{name}={value}" for name, value in env.items()],
            "timeout",
            "-k",
            f"{REMOTE_KILL_AFTER:g}",
            f"{timeout:g}s",
            *command_argv(command),
        ]
    )


class _ChannelStream:
    """One output stream of a channel, for the base class's pump: `read1` returns what has
    arrived. (paramiko's `makefile("rb")` objects have no read1, and their read(n) waits for n
    bytes or EOF: a command whose background child keeps stdout open would lose its output.)"""

    def __init__(self, channel: Channel, *, stderr: bool):
        self._channel = channel
        self._recv = channel.recv_stderr if stderr else channel.recv

    def read1(self, size: int = 65536) -> bytes:
        return self._recv(size)  # b"" at EOF and once the channel is closed

    @property
    def closed(self) -> bool:
        return self._channel.closed


@dataclass
class _Running:
    channel: Channel
    stdout: _ChannelStream
    stderr: _ChannelStream
    exec_at: float  # monotonic, just before the exec request: the remote deadline starts later
    status_at: float | None = None  # when the exit status (or the channel's end) arrived

    def lasted_at_least(self, timeout: float) -> bool:
        """Could the remote `timeout` have fired? (This span bounds the remote one from above.)"""
        return self.status_at is not None and self.status_at - self.exec_at >= timeout


class SSHExecutor(StreamingExecutor):
    """Runs commands on one SSH target, one command at a time, over one connection."""

    def __init__(self, remote: SSHTarget, redact: Redact = no_redaction):
        super().__init__(remote.name, redact)
        self.remote = remote
        self.handshakes = 0  # SSH connections opened (host key checked, authenticated)
        self._client: SSHClient | None = None
        self._running: _Running | None = None

    # The connection ---------------------------------------------------------------
    def _connection(self) -> SSHClient:
        if self._client is not None:
            transport = self._client.get_transport()
            if transport is not None and transport.is_active():
                return self._client
            self.close()  # lost since the last command: open a new one
        self._client = self._connect()
        self.handshakes += 1
        return self._client

    def _connect(self) -> SSHClient:
        remote = self.remote
        client = SSHClient()
        try:
            client.load_host_keys(str(remote.known_hosts))  # never the system files
        except OSError as exc:
            raise HostKeyRejected(
                f"cannot read known_hosts {remote.known_hosts} for {remote.where}: "
                f"{exc.strerror or exc}; nothing was sent",
                target=self.target,
            ) from exc
        client.set_missing_host_key_policy(RejectPolicy())
        if remote.key_file is not None:
            try:
                with Path(remote.key_file).open("rb"):
                    pass
            except OSError as exc:
                raise AuthenticationFailed(
                    f"cannot read key file {remote.key_file} for {remote.where}: "
                    f"{exc.strerror or exc}",
                    target=self.target,
                ) from exc
        try:
            with self._translated_errors(client):
                client.connect(
                    remote.host,
                    port=remote.port,
                    username=remote.user,
                    key_filename=str(remote.key_file) if remote.key_file is not None else None,
                    password=remote.password,
                    passphrase=remote.key_passphrase,
                    timeout=remote.connect_timeout,
                    banner_timeout=remote.connect_timeout,
                    auth_timeout=remote.connect_timeout,
                    channel_timeout=remote.connect_timeout,
                    look_for_keys=False,
                    allow_agent=False,
                )
                client.get_transport().set_keepalive(remote.keepalive_seconds)
        except BaseException:
            client.close()
            raise
        return client

    @contextlib.contextmanager
    def _translated_errors(self, client: SSHClient) -> Iterator[None]:
        """paramiko and socket errors -> our errors, most specific first, chained."""
        remote = self.remote
        hostport = f"[{remote.host}]:{remote.port}"
        try:
            yield
        except BadHostKeyException as exc:
            raise HostKeyRejected(
                f"host key for {hostport} changed: the server offered "
                f"{_key_text(exc.key)}, {remote.known_hosts} holds {_key_text(exc.expected_key)}; "
                f"refusing to connect as {remote.user} (nothing was sent); if the change is "
                f"expected, replace that entry in {remote.known_hosts}",
                target=self.target,
            ) from exc
        except AuthenticationException as exc:
            raise AuthenticationFailed(
                f"authentication failed for {remote.where}: {_one_line(exc)}",
                target=self.target,
            ) from exc
        except SSHException as exc:
            if "not found in known_hosts" in str(exc):
                raise HostKeyRejected(
                    f"unknown host key for {hostport} ({_offered_key(client)}), user "
                    f"{remote.user}: refusing to connect (nothing was sent); after checking "
                    f"its fingerprint, add it to {remote.known_hosts}",
                    target=self.target,
                ) from exc
            raise TargetUnreachable(
                f"ssh to {remote.where} failed: {_one_line(exc)}", target=self.target
            ) from exc
        except (NoValidConnectionsError, TimeoutError, OSError, EOFError) as exc:
            raise TargetUnreachable(
                f"cannot reach {remote.where}: {_reason(exc)}", target=self.target
            ) from exc

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    # The low-level operations -----------------------------------------------------
    def describe(self, command: RenderedCommand, env: dict[str, str], timeout: float) -> str:
        check_env(env)
        check_timeout(timeout)
        names = "".join(f"{name}=… " for name in env)  # values stay out of the record
        prefix = f"env {names}" if env else ""
        shown = command.display() if command.argv is not None else f"bash -c {command.display()}"
        return (
            f"ssh {self.remote.where} {prefix}timeout -k {REMOTE_KILL_AFTER:g} {timeout:g}s {shown}"
        )

    def start(self, command: RenderedCommand, env: dict[str, str], timeout: float) -> _Running:
        line = remote_command_line(command, env, timeout)  # refuses bad input before connecting
        client = self._connection()
        channel = None
        try:
            with self._translated_errors(client):
                channel = client.get_transport().open_session(timeout=self.remote.connect_timeout)
                exec_at = time.monotonic()
                channel.exec_command(line)  # no pty: stdout and stderr stay apart
                channel.shutdown_write()  # stdin: EOF at once
                running = _Running(
                    channel,
                    _ChannelStream(channel, stderr=False),
                    _ChannelStream(channel, stderr=True),
                    exec_at,
                )
        except BaseException:
            if channel is not None:
                channel.close()
            raise
        self._running = running
        return running

    def streams(self, handle: _Running) -> tuple[_ChannelStream, _ChannelStream]:
        return handle.stdout, handle.stderr

    def wait(self, handle: _Running, timeout: float) -> int | None:
        """The exit status; _NO_EXIT_STATUS when the channel closed without one; None when
        even the remote `timeout` has not answered in time."""
        grace = REMOTE_KILL_AFTER + LOCAL_SLACK_SECONDS
        if not handle.channel.status_event.wait(timeout + grace):
            return None
        handle.status_at = time.monotonic()
        return handle.channel.exit_status

    def kill(self, handle: _Running) -> None:
        # The remote `timeout` owns killing the process group; closing the channel ends our
        # side (the pumps see EOF) when the target stopped answering.
        handle.channel.close()

    # The run: the shared machinery, then what only SSH knows ------------------------
    def run(
        self,
        command: RenderedCommand,
        *,
        env: dict[str, str],
        timeout: float,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
    ) -> Result:
        self._running = None
        try:
            result = super().run(command, env=env, timeout=timeout, output_limit=output_limit)
        finally:
            running, self._running = self._running, None
            if running is not None:
                running.channel.close()  # also when a background child still holds stdout
        assert running is not None  # start() succeeded, or super().run() raised
        return self._judge(result, running, timeout)

    def _judge(self, result: Result, running: _Running, timeout: float) -> Result:
        """What the base class cannot know: a missing exit status, and the remote deadline."""
        status = result.exit_code
        if status == _NO_EXIT_STATUS:
            result = replace(result, exit_code=None)
            transport = self._client.get_transport() if self._client is not None else None
            if transport is None or not transport.is_active():
                self.close()
                raise TargetUnreachable(
                    f"connection to {self.remote.where} lost while the command ran: "
                    f"{result.command}",
                    target=self.target,
                    result=result,
                )
        if status in _REMOTE_TIMEOUT_STATUSES and running.lasted_at_least(timeout):
            result = replace(result, exit_code=None, timed_out=True)
            raise CommandTimedOut(
                f"timed out after {timeout:g}s: {result.command}",
                target=self.target,
                timeout=timeout,
                result=result,
            )
        return result


def _key_text(key) -> str:
    return f"{key.get_name()} {key.fingerprint}"


def _offered_key(client: SSHClient) -> str:
    transport = client.get_transport()
    with contextlib.suppress(Exception):
        return _key_text(transport.get_remote_server_key())
    return "key not shown"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _reason(exc: BaseException) -> str:
    if isinstance(exc, NoValidConnectionsError) and exc.errors:
        # Its own text says "[Errno None] Unable to connect..."; the per-address errors say why.
        exc = next(iter(exc.errors.values()))
    if isinstance(exc, TimeoutError):
        return "connection timed out"
    if isinstance(exc, EOFError):
        return "connection closed by the server"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return _one_line(exc) or type(exc).__name__


__all__ = ["SSHExecutor", "SSHTarget", "remote_command_line"]

"""Refuse a taken port up front, with the setting that moves it, instead of a bind traceback
from deep inside uvicorn or the Prefect server."""

from __future__ import annotations

import socket


class PortTaken(Exception):
    pass


def ensure_port_free(host: str, port: int, what: str, setting: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # The same option uvicorn and the Prefect server bind with, so a socket left in
        # TIME_WAIT by an earlier run does not count as taken, but a listener does.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise PortTaken(
                f"{what} port {host}:{port} is taken ({exc.strerror}); "
                f"stop what listens there or choose another port with {setting}"
            ) from None

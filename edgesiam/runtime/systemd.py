"""systemd's notify protocol (``READY=1``, ``WATCHDOG=1``, ``STOPPING=1``) without libsystemd."""

from __future__ import annotations

import logging
import os
import socket

__all__ = ["sd_notify", "watchdog_interval"]

log = logging.getLogger("edgesiam.runtime")


def sd_notify(state: str) -> None:
    """Tell systemd (``Type=notify``, ``WatchdogSec``) how the service is; no-op elsewhere."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.debug("sd_notify(%s) failed: %s", state, exc)


def watchdog_interval() -> float | None:
    usec = os.environ.get("WATCHDOG_USEC")
    try:
        return int(usec) / 2e6 if usec else None
    except ValueError:
        return None

"""Talking to systemd: READY=1 once the kiosk can serve, watchdog pings from the event loop.

No library: the protocol is one datagram on the socket named by ``$NOTIFY_SOCKET``. Without
that variable (a developer's terminal) every call here does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(*fields: str) -> bool:
    """Send ``READY=1``-style fields to systemd; False when not run by systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(fields).encode())
    except OSError as exc:
        log.warning("could not notify systemd on %s: %s", address, exc)
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between pings (half of systemd's WatchdogSec), or None when none is asked for."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2_000_000
    except ValueError:
        log.warning("WATCHDOG_USEC=%r is not a number of microseconds; no watchdog", usec)
        return None


async def keep_watchdog_fed(interval: float) -> None:
    """Ping from the event loop itself: a loop that hangs stops pinging and gets restarted."""
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)

"""``kiosk serve`` under systemd: READY=1 only once it sells, watchdog pings, STOPPING=1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from kiosk.config import Settings


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_ready_after_recovery_and_devices_then_watchdog_pings_then_stopping(
    settings: Settings, tmp_path: Path
) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify_path = tmp_path / "notify.sock"
    listener.bind(str(notify_path))
    listener.settimeout(30)
    port = free_port()
    env = {**os.environ, "NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "300000",
           "KIOSK_DATABASE": str(settings.database), "KIOSK_STATE_DIR": str(tmp_path),
           "KIOSK_VENDING": "sim://?revolution=0.1", "KIOSK_PORT": str(port)}
    env.pop("WATCHDOG_PID", None)
    server = subprocess.Popen([sys.executable, "-m", "kiosk.cli", "serve"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        first = listener.recv(4096).decode()
        assert first.splitlines() == ["READY=1", "STATUS=in service"]
        # Ready means ready: the port answers and the kiosk sells at this very moment.
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.status_code == 200 and ready.json()["ready"] is True
        started = time.monotonic()
        pings = 0
        while pings < 3:
            if listener.recv(4096) == b"WATCHDOG=1":
                pings += 1
        assert time.monotonic() - started < 5  # every 0.15 s is asked for: three come soon
        server.send_signal(signal.SIGTERM)
        messages = []
        while b"STOPPING=1" not in messages:
            messages.append(listener.recv(4096))
        # uvicorn re-raises SIGTERM once it has shut down cleanly; systemd counts that as success.
        assert server.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if server.poll() is None:
            server.kill()
        listener.close()

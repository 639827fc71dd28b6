"""A kiosk served by ``kiosk serve`` in a process of its own, as on the Pi, for the benchmarks.

Each benchmark starts the real command on a database it prepared, with the devices it names
(simulators, through their URLs), and learns that the kiosk is ready the way systemd does: from
the ``READY=1`` datagram on ``$NOTIFY_SOCKET``, sent once recovery has run, the devices are
open and the port listens. Nothing polls, so start-up times are exact.

A serial device can also be simulated outside the kiosk, as ``kiosk simulate DEVICE`` in a
process of its own (:class:`simulators.console.SimulatorConsole`), and given to the kiosk by its
pty: then the kiosk's process holds only what it would hold on the Pi, where the reader is
hardware.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kiosk import db as kiosk_db
from kiosk import demo

ROOT = Path(__file__).resolve().parents[1]
#: Where benchmarks keep what is worth keeping between runs (the database of a million sales).
CACHE = ROOT / "var" / "bench"
#: Stock and capacity of every slot of a benchmark database: no sale ever finds a slot empty.
PLENTY = 1_000_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def seeded_database(path: Path, *, plenty: bool = True) -> Path:
    """A migrated database with the demo planogram; ``plenty`` fills every slot to ``PLENTY``."""
    kiosk_db.upgrade(path)
    database = kiosk_db.Database(path)
    try:
        demo.seed(database)
        if plenty:
            with database.engine.begin() as connection:
                connection.exec_driver_sql(
                    f"UPDATE slot SET capacity = {PLENTY}, stock = {PLENTY} "
                    "WHERE product_id IS NOT NULL")
        with database.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        database.dispose()
    return path


def copy_database(template: Path, target: Path) -> Path:
    shutil.copy(template, target)
    return target


class ReadySocket:
    """The ``$NOTIFY_SOCKET`` a spawned process says ``READY=1`` on, as systemd listens."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "notify"
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(self.path))

    def wait(self, process: subprocess.Popen[bytes], timeout: float = 30.0) -> float:
        """``perf_counter()`` when READY=1 arrived; raises if the process died or took too long."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"no READY=1 within {timeout:g} s from {process.args!r}")
            self.socket.settimeout(min(remaining, 0.25))
            try:
                message = self.socket.recv(4096)
            except TimeoutError:
                if process.poll() is not None:
                    raise RuntimeError(f"{process.args!r} exited with {process.returncode} "
                                       "before it was ready") from None
                continue
            if b"READY=1" in message.split(b"\n"):
                return time.perf_counter()

    def close(self) -> None:
        self.socket.close()
        self.path.unlink(missing_ok=True)


@dataclass
class ServedKiosk:
    process: subprocess.Popen[bytes]
    url: str
    #: perf_counter() at the spawn and at READY=1.
    spawned: float
    ready: float
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_mb(self) -> float:
        return rss_mb(self.pid)


def rss_mb(pid: int) -> float:
    """Resident memory of a process (VmRSS), in MB of 10^6 bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used so far, user and system, all threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as systemd stops the kiosk; SIGKILL if it does not go within 10 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def kiosk_environment(database: Path, state_dir: Path, port: int,
                      devices: Mapping[str, str]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("KIOSK_")}
    env.update({"KIOSK_DATABASE": str(database), "KIOSK_STATE_DIR": str(state_dir),
                "KIOSK_PORT": str(port), "KIOSK_HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1"})
    env.update({f"KIOSK_{kind.upper()}": url for kind, url in devices.items()})
    return env


@contextmanager
def spawn(argv: list[str], env: dict[str, str], log: Path,
          timeout: float = 30.0) -> Iterator[tuple[subprocess.Popen[bytes], float, float]]:
    """Start ``argv`` with its own ``$NOTIFY_SOCKET``; yield it with perf_counter() at the
    spawn and at its READY=1. Stopped with SIGTERM when the block ends."""
    with tempfile.TemporaryDirectory(prefix="kiosk-bench-ready-") as scratch:
        ready_socket = ReadySocket(Path(scratch))
        env = {**env, "NOTIFY_SOCKET": str(ready_socket.path)}
        with log.open("ab") as output:
            spawned = time.perf_counter()
            process = subprocess.Popen(argv, env=env, stdout=output, stderr=subprocess.STDOUT,
                                       cwd=ROOT)
        try:
            ready = ready_socket.wait(process, timeout)
            yield process, spawned, ready
        finally:
            stop(process)
            ready_socket.close()


@contextmanager
def serve(database: Path, devices: Mapping[str, str] | None = None, *,
          environment: Mapping[str, str] | None = None,
          prefix: Sequence[str] = ()) -> Iterator[ServedKiosk]:
    """``kiosk serve`` on ``database`` on a free loopback port, until the block ends.

    ``devices`` maps ``card``, ``vending``, ``fingerprint`` to device URLs (default sim://).
    ``environment`` adds variables (a preloaded library, settings); ``prefix`` goes before the
    command (``taskset -c 0``). Its log (uvicorn's access lines included, as on a kiosk) goes
    to a file beside the database.
    """
    port = free_port()
    log = database.with_suffix(".log")
    env = {**kiosk_environment(database, database.parent, port, devices or {}),
           **(environment or {})}
    with spawn([*prefix, sys.executable, "-m", "kiosk.cli", "serve"], env, log) as (
            process, spawned, ready):
        yield ServedKiosk(process, f"http://127.0.0.1:{port}", spawned, ready, log)

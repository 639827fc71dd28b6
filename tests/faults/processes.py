"""The kiosk and its devices as separate processes, the way they run on the Pi.

A real card reader or fingerprint module outlives a crashed kiosk: it keeps its sessions, its
templates and its state while the server process is killed and started again. So the fault
suite runs each serial device as ``kiosk simulate card|fingerprint`` in a process of its own,
talks to it through its console (one command a line, one answer a line), and runs ``kiosk
serve`` as a third process that can be killed with SIGKILL at any moment. The vending simulator
drives gpiozero's mock pins, which cannot cross processes, so it lives inside the server (and
is freshly stocked at every start, like a machine whose counters were lost).

Readiness is what systemd would see: the server says ``READY=1`` on ``NOTIFY_SOCKET`` only once
recovery has run and the devices are open.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import httpx

from simulators.console import SimulatorConsole, tail

KIOSK = [sys.executable, "-m", "kiosk.cli"]

#: Mechanics fast enough for hundreds of sales, slow enough to kill the server mid-vend.
FAST_SPIRALS = "revolution=0.05&start_limit=0.5&turn_limit=1.0&drop_limit=0.3&nudges=2"
#: The card driver's waits, short so that a lost line is noticed quickly.
QUICK_READER = "reply_timeout=1&settle=0.05&retry_initial=0.05&retry_max=0.5"


class ProcessFailed(AssertionError):
    """A process under test died or went silent; the message carries the end of its log."""


class CardReaderProcess(SimulatorConsole):
    """The card reader: a simulated Qibixx interface that waits for the test's customer."""

    def __init__(self, log: Path, *args: str) -> None:
        super().__init__("card", log, "--auto", "off", *args)

    def report(self) -> dict[str, Any]:
        """The card provider's settlement report: what was captured, reverted, left open."""
        answer: dict[str, Any] = json.loads(self.say("report"))
        return answer

    def url(self) -> str:
        return f"qibixx://{self.port}?{QUICK_READER}"


class FingerprintProcess(SimulatorConsole):
    """The fingerprint module, with the demo members' fingers enrolled on their pages."""

    def __init__(self, log: Path, fingers: Iterable[tuple[str, int]], *args: str) -> None:
        super().__init__("fingerprint", log, *args)
        for finger, page in fingers:
            self.say(f"enrol {finger} {page}")

    def url(self) -> str:
        return f"r30x://{self.port}?retry_max=0.5"


class KioskProcess:
    """``kiosk serve`` as a process that can be started, killed with SIGKILL, and started again."""

    def __init__(self, workdir: Path, database: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.database = database
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "KIOSK_DATABASE": str(database), "KIOSK_STATE_DIR": str(workdir),
            "KIOSK_PORT": str(self.port), **env,
        }
        for inherited in ("WATCHDOG_USEC", "WATCHDOG_PID", "KIOSK_CONFIG"):
            self.env.pop(inherited, None)
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log = workdir / "kiosk-0.log"
        self.status = ""

    def command(self) -> list[str]:
        """How the server is started (a subclass may run it confined, say)."""
        return [*KIOSK, "serve"]

    def start(self, timeout: float = 30.0) -> str:
        """Start the server and wait for READY=1; the STATUS it gave (in or out of service)."""
        assert self.process is None, "already running"
        self.starts += 1
        self.log = self.workdir / f"kiosk-{self.starts}.log"
        notify_path = self.workdir / f"notify-{self.starts}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
            listener.bind(str(notify_path))
            listener.settimeout(0.2)
            # The log goes through a pipe, not a file the server writes itself: a server whose
            # writes fail (a full disk, a file size limit) still says why.
            self.process = subprocess.Popen(
                self.command(), env={**self.env, "NOTIFY_SOCKET": str(notify_path)},
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.workdir,
            )
            assert self.process.stdout is not None
            threading.Thread(target=_copy, args=(self.process.stdout, self.log.open("wb")),
                             daemon=True, name=f"kiosk log {self.starts}").start()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    message = listener.recv(4096).decode()
                except TimeoutError:
                    if self.process.poll() is not None:
                        raise self.failed("the kiosk exited before it was ready") from None
                    continue
                lines = message.splitlines()
                if "READY=1" in lines:
                    self.status = next((line.removeprefix("STATUS=") for line in lines
                                        if line.startswith("STATUS=")), "")
                    return self.status
        raise self.failed(f"the kiosk was not ready within {timeout:g} s")

    def failed(self, what: str) -> ProcessFailed:
        return ProcessFailed(f"{what}; the end of {self.log}:\n{tail(self.log)}")

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed or closed, as in a power cut."""
        process, self.process = self.process, None
        assert process is not None, "not running"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self) -> int:
        """SIGTERM, as systemd stops it; the exit status."""
        process, self.process = self.process, None
        if process is None:
            return 0
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise self.failed("the kiosk did not stop within 60 s of SIGTERM") from None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @contextlib.contextmanager
    def client(self) -> Iterator[httpx.Client]:
        with httpx.Client(base_url=self.url, timeout=15) as client:
            yield client

    def log_text(self) -> str:
        """Everything every start of this server logged, oldest first."""
        return "\n".join(path.read_text(errors="replace")
                         for path in sorted(self.workdir.glob("kiosk-*.log")))


def _copy(source: IO[bytes], log: IO[bytes]) -> None:
    with source, log:
        for line in source:
            log.write(line)
            log.flush()


def wait_for(what: str, check: Callable[[], Any], timeout: float = 15.0,
             every: float = 0.01) -> Any:
    """Poll ``check`` until it returns something truthy; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def sale_state(client: httpx.Client, sale_id: str) -> str:
    answer = client.get(f"/api/sales/{sale_id}")
    answer.raise_for_status()
    state: str = answer.json()["state"]
    return state


def wait_for_state(client: httpx.Client, sale_id: str, *states: str,
                   timeout: float = 15.0) -> str:
    """Wait until the server reports the sale in one of ``states``; that state."""
    found: str = wait_for(f"sale {sale_id} in {' or '.join(states)}",
                          lambda: (s := sale_state(client, sale_id)) in states and s,
                          timeout=timeout, every=0.005)
    return found


def card_sale_until(client: httpx.Client, card: CardReaderProcess, slot: str,
                    state: str = "dispensing") -> str:
    """Start a card sale from ``slot``, present an approving card, wait for ``state``; its id."""
    answer = client.post("/api/sales", json={"slot": slot, "method": "card"})
    assert answer.status_code == 201, answer.text
    sale_id: str = answer.json()["id"]
    wait_for_state(client, sale_id, "authorizing")
    card.say("approve")
    wait_for_state(client, sale_id, state, timeout=60)
    return sale_id


class HealthzPoller:
    """Asks ``/healthz`` every 20 ms on a thread of its own; keeps how long each answer took.
    A kiosk whose event loop waits for anything shows it here first."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.waits: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True, name="healthz poller")

    def __enter__(self) -> HealthzPoller:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _poll(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self._stop.is_set():
                asked = time.monotonic()
                assert client.get("/healthz").status_code == 200
                self.waits.append(time.monotonic() - asked)
                self._stop.wait(0.02)


# --- reading the ledger straight from the file, as a technician's sqlite3 would ------------------

@contextlib.contextmanager
def ledger_file(database: Path) -> Iterator[sqlite3.Connection]:
    """The database, read-only, with WAL visible: safe beside a running or a killed server."""
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
    connection.row_factory = sqlite3.Row
    try:
        yield connection
    finally:
        connection.close()


def sale_row(database: Path, sale_id: str) -> sqlite3.Row:
    with ledger_file(database) as db:
        row: sqlite3.Row | None = db.execute("SELECT * FROM sale WHERE id = ?",
                                             (sale_id,)).fetchone()
    assert row is not None, f"sale {sale_id} is not in the ledger"
    return row


def sale_history(database: Path, sale_id: str) -> list[str]:
    with ledger_file(database) as db:
        return [r["to_state"] for r in db.execute(
            "SELECT to_state FROM sale_event WHERE sale_id = ? ORDER BY id", (sale_id,))]


def balances(database: Path) -> dict[str, int]:
    """Each member's balance, by name: the sum of the member's account entries."""
    with ledger_file(database) as db:
        return {r["name"]: r["balance"] for r in db.execute(
            "SELECT member.name AS name, COALESCE(SUM(account_entry.amount_cents), 0) AS balance "
            "FROM member LEFT JOIN account_entry ON account_entry.member_id = member.id "
            "GROUP BY member.id")}


def stocks(database: Path) -> dict[str, int]:
    with ledger_file(database) as db:
        return {r["code"]: r["stock"] for r in db.execute("SELECT code, stock FROM slot")}


def unfinished(database: Path) -> list[str]:
    terminal = ("completed", "declined", "cancelled", "voided", "needs_review")
    with ledger_file(database) as db:
        return [r["id"] for r in db.execute(
            f"SELECT id FROM sale WHERE state NOT IN ({','.join('?' * len(terminal))})",
            terminal)]

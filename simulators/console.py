"""A ``kiosk simulate DEVICE`` process, driven from outside through its console.

A real card reader or fingerprint module is a separate thing from the kiosk: it outlives a
crashed server and holds what the kiosk's process would not hold on the Pi. The fault suite and
the benchmarks therefore run a serial device's simulator as a process of its own and talk to it
the way a developer would at a terminal: one command a line on its standard input, one answer a
line on its standard output. Its first line is the pty it serves; its log goes to a file.
"""

from __future__ import annotations

import contextlib
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

#: The project root, so that ``python -m kiosk.cli`` finds the kiosk from any working directory.
ROOT = Path(__file__).resolve().parents[1]


class SimulatorFailed(RuntimeError):
    """The simulator ended, went silent or refused a command; the message ends with its log."""


def tail(log: Path, lines: int = 40) -> str:
    """The last lines of a log, for an error message."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class SimulatorConsole:
    """``kiosk simulate DEVICE ARGS`` running in its own process: its port, and its console."""

    def __init__(self, device: str, log: Path, *args: str) -> None:
        self.device = device
        self.log = log
        self._log_file: IO[str] = log.open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kiosk.cli", "simulate", device, *args], cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log_file, text=True,
            bufsize=1,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        # A thread reads the answers, so that a silent simulator costs a timeout, not a hang.
        threading.Thread(target=self._read, daemon=True, name=f"{device} console").start()
        try:
            self.port = self._answer(15.0, "its port")
        except SimulatorFailed:
            self.close()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def say(self, command: str, timeout: float = 10.0) -> str:
        """Send one console command; its one-line answer."""
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        answer = self._answer(timeout, f"answer to {command!r}")
        if answer.startswith("error"):
            raise SimulatorFailed(f"the {self.device} simulator refused {command!r}: {answer}")
        return answer

    def close(self) -> None:
        """Ask the simulator to quit; kill it if it does not within ten seconds."""
        with contextlib.suppress(OSError, ValueError, SimulatorFailed):
            self.say("quit", timeout=5)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log_file.close()

    def __enter__(self) -> SimulatorConsole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _answer(self, timeout: float, what: str) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise SimulatorFailed(f"the {self.device} simulator gave no {what} within "
                                  f"{timeout:g} s; the end of {self.log}:\n"
                                  f"{tail(self.log)}") from None
        if line is None:
            raise SimulatorFailed(f"the {self.device} simulator ended; the end of {self.log}:\n"
                                  f"{tail(self.log)}")
        return line

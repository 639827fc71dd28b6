"""The simulated machine's output lines, kept in a file so they outlive the process.

A real GPIO line keeps the level it was last driven to when the process that drove it dies
(SIGKILL, the watchdog's abort, a crash): a motor switched on stays on. That is why the
kiosk's unit runs ``kiosk motors-off`` after the server ends, however it ends. The vending
simulator mirrors each motor output's level into this bank (one byte per pin, ``0`` or ``1``,
in the order of the pins' names), and ``kiosk motors-off`` drives the same bank, so the same
failure and its remedy can be tested without hardware.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

#: The bank's file in the kiosk's state directory.
FILE_NAME = "vending-pins"


class PinBank:
    """Levels of named output pins in a memory-mapped file (the page cache survives a kill)."""

    def __init__(self, path: Path, pins: list[str]) -> None:
        self.path = path
        self.pins = sorted(pins)
        self._index = {pin: n for n, pin in enumerate(self.pins)}
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.fstat(descriptor).st_size != len(self.pins):
                os.ftruncate(descriptor, 0)
                os.ftruncate(descriptor, len(self.pins))
                os.pwrite(descriptor, b"0" * len(self.pins), 0)
            self._map = mmap.mmap(descriptor, len(self.pins))
        finally:
            os.close(descriptor)

    def set(self, pin: str, level: bool) -> None:
        n = self._index[pin]
        self._map[n:n + 1] = b"1" if level else b"0"

    def level(self, pin: str) -> bool:
        n = self._index[pin]
        return self._map[n:n + 1] == b"1"

    def levels(self) -> dict[str, bool]:
        return {pin: self.level(pin) for pin in self.pins}

    def close(self) -> None:
        self._map.close()

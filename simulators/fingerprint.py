"""A simulated R30x fingerprint module on a pseudo-terminal, with fault injection.

    with FingerprintSimulator(library_path="fingers.json") as sim:
        reader = R30xFingerprintReader(sim.port)   # opened like /dev/ttyUSB0
        sim.place_finger("alice")

The module itself (instructions, library, buffers) is :mod:`simulators.fingerprint_module`;
the pty, its thread, unplug and replug are :mod:`simulators.pty_port`. ``.port`` is a stable
path (a symlink to the current pty), so a driver that keeps reopening it finds the module
again after :meth:`FingerprintSimulator.replug`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TextIO

from drivers.fingerprint.frame import DEFAULT_ADDRESS
from drivers.fingerprint.r30x import R30xFingerprintReader
from drivers.registry import Attached, DeviceUrl
from simulators.fingerprint_module import FingerprintModule
from simulators.pty_port import PtyPort

log = logging.getLogger(__name__)

#: Fault names for :meth:`FingerprintSimulator.fault`, the console and the dev panel.
FAULTS = {
    "silent": "stop answering (until 'resume')",
    "resume": "answer again",
    "bad-checksum": "corrupt the checksum of the next COUNT answers",
    "wrong-address": "send the next COUNT answers from another module address",
    "garbage": "send noise bytes before the next answer",
    "truncated": "cut the next COUNT answers short: their second half never arrives",
    "replayed": "send the last answer to the same instruction again just before each of the "
    "next COUNT answers (a stale frame replayed on the line)",
    "messy": "'image too messy' for the next COUNT captures",
    "flash-error": "fail the next COUNT flash writes (store, delete, empty, settings)",
    "wrong-password": "the module now wants a password the kiosk does not know",
    "unplug": "pull the cable: the pty goes away",
    "replug": "plug the cable back in: a new pty behind the same port path",
    "slow": "hold every answer back COUNT x 100 ms (until 'clear')",
    "clear": "remove every fault and plug back in",
}
#: Noise for the "garbage" fault: stray bytes and half a header, to exercise resync.
DEFAULT_GARBAGE = b"\x00\x13\x37\xef\x01\x12"
#: The address wrong-address answers come from.
FOREIGN_ADDRESS = 0x0BAD0ADD
#: The password the "wrong-password" fault sets.
FOREIGN_PASSWORD = 0x5EC2E7


class FingerprintSimulator:
    """An R30x module behind a pty: drive it with named fingers, break it with faults.

    ``library_path`` (None: memory only) is where the library persists as JSON, as a real
    module keeps its flash across power cycles. The other arguments are the module's
    factory settings.
    """

    def __init__(
        self,
        library_path: str | Path | None = None,
        capacity: int = 200,
        *,
        address: int = DEFAULT_ADDRESS,
        password: int = 0,
        security_level: int = 3,
        packet_size: int = 128,
        baud: int = 57600,
    ) -> None:
        self.library_path = Path(library_path) if library_path is not None else None
        library = _load_library(self.library_path, capacity) if self.library_path else {}
        self._module = FingerprintModule(
            capacity,
            address=address,
            password=password,
            security_level=security_level,
            packet_size=packet_size,
            baud=baud,
            library=library,
        )
        self._module.on_library_change = self._save
        self._factory_password = password
        self._lock = threading.RLock()
        self._silent = False
        self._bad_checksums = 0
        self._wrong_addresses = 0
        self._garbage = b""
        self._truncated = 0
        self._replayed = 0
        #: The last clean answer to each instruction, for the "replayed" fault.
        self._last_answers: dict[str, bytes] = {}
        self._pty = PtyPort(
            self._answer, name="ttyR30X", lock=self._lock, on_plug=self._module.power_cycle
        )

    # --- what tests and people see ------------------------------------------------------

    @property
    def port(self) -> str:
        """The stable device path to open (a symlink to the current pty)."""
        return self._pty.port

    @property
    def wire(self) -> PtyPort:
        """The simulated serial line: pace it like a UART (``wire.wire_baud``), count bytes."""
        return self._pty

    @property
    def tty(self) -> str | None:
        """The current pty behind :attr:`port`; None while unplugged."""
        return self._pty.tty

    @property
    def plugged(self) -> bool:
        return self._pty.plugged

    @property
    def library(self) -> dict[int, str]:
        """Page -> finger name, a copy."""
        with self._lock:
            return dict(self._module.library)

    @property
    def finger(self) -> str | None:
        """The finger on the sensor now."""
        return self._module.finger

    @property
    def received(self) -> list[str]:
        """Every instruction received so far, by name (``GEN_IMG`` ...)."""
        with self._lock:
            return list(self._module.received)

    @property
    def module(self) -> FingerprintModule:
        """The simulated module itself; hold :attr:`lock` while touching it from outside."""
        return self._module

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    # --- driving it -----------------------------------------------------------------------

    def place_finger(self, name: str) -> None:
        """Put the finger called ``name`` on the sensor (it stays until lifted)."""
        if not name:
            raise ValueError("a simulated finger needs a name")
        with self._lock:
            self._module.finger = name

    def lift_finger(self) -> None:
        with self._lock:
            self._module.finger = None

    def enrol(self, name: str, page: int) -> None:
        """Store finger ``name`` at ``page`` directly, as if enrolled earlier (demo data)."""
        with self._lock:
            if not 0 <= page < self._module.capacity:
                raise ValueError(
                    f"page {page} is outside the library (0..{self._module.capacity - 1})"
                )
            self._module.library[page] = name
            self._save()

    # --- faults ---------------------------------------------------------------------------

    def fault(self, name: str, count: int = 1) -> None:
        """Inject a fault by its :data:`FAULTS` name; ``count`` where the fault counts."""
        actions: dict[str, Callable[[], None]] = {
            "silent": self.stop_answering,
            "resume": self.resume_answering,
            "bad-checksum": lambda: self.corrupt_next_checksums(count),
            "wrong-address": lambda: self.answer_from_wrong_address(count),
            "garbage": lambda: self.send_garbage(),
            "truncated": lambda: self.truncate_next_answers(count),
            "replayed": lambda: self.replay_next_answers(count),
            "slow": lambda: self.delay_answers(count / 10),
            "messy": lambda: self.fail_next_captures(count),
            "flash-error": lambda: self.fail_next_flash_writes(count),
            "wrong-password": lambda: self.require_password(FOREIGN_PASSWORD),
            "unplug": self.unplug,
            "replug": self.replug,
            "clear": self.clear_faults,
        }
        if name not in actions:
            raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
        actions[name]()

    def stop_answering(self) -> None:
        """Read and ignore every command, like a hung module."""
        with self._lock:
            self._silent = True

    def resume_answering(self) -> None:
        with self._lock:
            self._silent = False

    def corrupt_next_checksums(self, count: int = 1) -> None:
        with self._lock:
            self._bad_checksums += count

    def answer_from_wrong_address(self, count: int = 1) -> None:
        with self._lock:
            self._wrong_addresses += count

    def send_garbage(self, data: bytes = DEFAULT_GARBAGE) -> None:
        """Put ``data`` on the line just before the next answer."""
        with self._lock:
            self._garbage += data

    def truncate_next_answers(self, count: int = 1) -> None:
        """The next ``count`` answers lose their second half, as when the line drops out."""
        with self._lock:
            self._truncated += count

    def replay_next_answers(self, count: int = 1) -> None:
        """Each of the next ``count`` answers comes just after a stale copy of the module's
        last answer to the same instruction (nothing extra when there was none)."""
        with self._lock:
            self._replayed += count

    def delay_answers(self, seconds: float) -> None:
        """Hold every answer back ``seconds`` (0: answer at once), like a busy module."""
        self._pty.answer_delay = seconds

    def fail_next_captures(self, count: int = 1) -> None:
        """The next ``count`` Img2Tz answer 0x06 (image too messy)."""
        with self._lock:
            self._module.messy_captures += count

    def fail_next_flash_writes(self, count: int = 1) -> None:
        with self._lock:
            self._module.flash_failures += count

    def require_password(self, password: int) -> None:
        """Set the module's password and forget that the host had verified it."""
        with self._lock:
            self._module.password = password
            self._module.verified = False

    def clear_faults(self) -> None:
        """Back to a healthy module with its factory password, plugged in."""
        with self._lock:
            self._silent = False
            self._bad_checksums = self._wrong_addresses = 0
            self._truncated = self._replayed = 0
            self._garbage = b""
            self._pty.answer_delay = 0.0
            self._module.messy_captures = self._module.flash_failures = 0
            self._module.password = self._factory_password
        if not self.plugged:
            self.replug()

    def unplug(self) -> None:
        """Close the pty and remove :attr:`port`: the driver sees the device vanish."""
        self._pty.unplug()

    def replug(self) -> None:
        """A new pty behind :attr:`port`, and the module powers up again."""
        self._pty.replug()

    # --- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Stop serving and remove the pty; the library file stays. Idempotent."""
        self._pty.close()

    def __enter__(self) -> FingerprintSimulator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- on the port's thread ----------------------------------------------------------

    def _answer(self, data: bytes) -> bytes:
        if self._silent:
            return b""
        seen = len(self._module.received)
        frames = self._module.receive(data)
        commands = self._module.received[seen:]
        # Which instruction the acknowledge answers: known when the chunk held one command.
        instruction = commands[0] if len(commands) == 1 else None
        return b"".join(
            self._with_faults(f, instruction) if i == 0 else f for i, f in enumerate(frames)
        )

    def _with_faults(self, frame: bytes, instruction: str | None) -> bytes:
        """Apply wire faults to an answer (the first frame of a reply: its acknowledge)."""
        stale = b""
        if instruction is not None:
            stale = self._last_answers.get(instruction, b"")
            self._last_answers[instruction] = frame
        if self._replayed:
            self._replayed -= 1
        else:
            stale = b""
        if self._wrong_addresses:
            self._wrong_addresses -= 1
            # The address is not covered by the checksum: only it changes.
            frame = frame[:2] + FOREIGN_ADDRESS.to_bytes(4, "big") + frame[6:]
        if self._bad_checksums:
            self._bad_checksums -= 1
            frame = frame[:-1] + bytes((frame[-1] ^ 0x5A,))
        if self._truncated:
            self._truncated -= 1
            frame = frame[: len(frame) // 2]
        noise, self._garbage = self._garbage, b""
        return noise + stale + frame

    def _save(self) -> None:
        if self.library_path is None:
            return
        content = {
            "comment": "simulated R30x fingerprint library: finger names by page",
            "capacity": self._module.capacity,
            "pages": {str(page): name for page, name in sorted(self._module.library.items())},
        }
        staging = self.library_path.with_name(self.library_path.name + ".tmp")
        staging.write_text(json.dumps(content, indent=2) + "\n")
        staging.replace(self.library_path)


def _load_library(path: Path, capacity: int) -> dict[int, str]:
    if not path.exists():
        return {}
    try:
        pages = json.loads(path.read_text())["pages"]
        library = {int(page): str(name) for page, name in pages.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path} is not a fingerprint simulator library: {exc}") from None
    dropped = sorted(page for page in library if not 0 <= page < capacity)
    if dropped:
        log.warning("%s: pages %s are beyond capacity %d, ignored", path, dropped, capacity)
    return {page: name for page, name in library.items() if 0 <= page < capacity}


# --- sim:// -------------------------------------------------------------------------------

#: URL parameters only the simulator uses; the rest go to the driver.
SIM_PARAMS = ("library", "capacity")


def attach(url: DeviceUrl, state_dir: Path) -> Attached:
    """``sim://``: start a simulator and build the real R30x driver on its port.

    The library persists in ``state_dir / "fingerprint-sim.json"`` unless ``library=PATH``
    says otherwise; ``capacity`` sizes it; ``address`` and ``password`` set both the module
    and the driver; any other parameter goes to the driver (``reply_timeout`` ...).
    """
    library = Path(url.param("library", str(state_dir / "fingerprint-sim.json")))
    library.parent.mkdir(parents=True, exist_ok=True)
    simulator = FingerprintSimulator(
        library,
        url.int_param("capacity", 200),
        address=url.int_param("address", DEFAULT_ADDRESS),
        password=url.int_param("password", 0),
    )
    try:
        params = {key: value for key, value in url.params.items() if key not in SIM_PARAMS}
        driver = R30xFingerprintReader.from_url(
            DeviceUrl(
                raw=f"r30x://{simulator.port}", scheme="r30x", path=simulator.port, params=params
            )
        )
    except Exception:
        simulator.close()
        raise
    driver.description = f"sim:// (simulated R30x on {simulator.port})"
    return Attached(driver, simulator)


# --- kiosk simulate fingerprint ------------------------------------------------------------


def console(argv: list[str], *, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """``kiosk simulate fingerprint``: print the port, then take one command a line."""
    parser = argparse.ArgumentParser(
        prog="kiosk simulate fingerprint",
        description="Simulated R30x fingerprint module on a pty. Prints the device path, then "
        "reads commands: place NAME, lift, enrol NAME PAGE, list, fault NAME [COUNT], "
        "faults, quit.",
    )
    parser.add_argument("--library", type=Path, help="JSON file the library persists in")
    parser.add_argument("--capacity", type=int, default=200, help="library pages (default 200)")
    parser.add_argument("--baud", type=int, default=57600, help="baud the module reports")
    parser.add_argument("--address", type=lambda v: int(v, 0), default=DEFAULT_ADDRESS)
    parser.add_argument("--password", type=lambda v: int(v, 0), default=0)
    args = parser.parse_args(argv)
    inp, out = stdin or sys.stdin, stdout or sys.stdout
    with FingerprintSimulator(
        args.library, args.capacity, address=args.address, password=args.password, baud=args.baud
    ) as sim:
        print(sim.port, file=out, flush=True)
        for line in inp:
            words = line.split()
            if not words:
                continue
            if words[0] in ("quit", "exit"):
                print("ok bye", file=out, flush=True)
                return 0
            print(_console_command(sim, words), file=out, flush=True)
    return 0


def _console_command(sim: FingerprintSimulator, words: list[str]) -> str:
    verb, args = words[0], words[1:]
    try:
        if verb == "place" and len(args) == 1:
            sim.place_finger(args[0])
            return f"ok finger {args[0]} on the sensor"
        if verb == "lift" and not args:
            sim.lift_finger()
            return "ok sensor clear"
        if verb in ("enrol", "enroll") and len(args) == 2:
            sim.enrol(args[0], int(args[1]))
            return f"ok {args[0]} enrolled at page {args[1]}"
        if verb == "list" and not args:
            library = sim.library
            pages = " ".join(f"{page}={_short(name)}" for page, name in sorted(library.items()))
            return f"ok {len(library)} templates{': ' + pages if pages else ''}"
        if verb == "fault" and 1 <= len(args) <= 2:
            sim.fault(args[0], int(args[1]) if len(args) == 2 else 1)
            return f"ok fault {args[0]}"
        if verb == "faults" and not args:
            return "ok " + "; ".join(f"{name}: {what}" for name, what in FAULTS.items())
    except ValueError as exc:
        return f"error {exc}"
    return (
        f"error unknown command {' '.join(words)!r}; "
        "try: place NAME, lift, enrol NAME PAGE, list, fault NAME [COUNT], faults, quit"
    )


def _short(name: str) -> str:
    return name if len(name) <= 24 else name[:21] + "..."

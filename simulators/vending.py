"""A spiral vending machine on gpiozero mock pins, driven by the real GpioSpiralMechanism.

The model watches the motor outputs the driver switches and answers on the inputs as the
machine would: while a motor has power its spiral turns (``revolution`` seconds per turn), the
home switch opens just after the start and closes at the end of each turn, and when a product
reaches the end of the spiral it falls and cuts the drop beam for a moment. Faults per slot
(:class:`SpiralFault`) and on the beam (:class:`BeamFault`) can be injected; motor runs,
deliveries and stock can be read back. Every simulator has its own ``MockFactory``: pass
``simulator.factory`` to the driver.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO, TypeVar

from gpiozero.pins.mock import MockFactory, MockPin

from drivers.base import DeviceError
from drivers.registry import Attached, DeviceUrl, DeviceUrlError
from drivers.vending.gpio_spiral import GpioSpiralMechanism
from drivers.vending.layout import (
    TIMING_KEYS,
    Layout,
    LayoutError,
    default_layout,
    load_layout,
    override_timing,
)
from simulators.pin_bank import FILE_NAME, PinBank

log = logging.getLogger(__name__)

#: Changes each mock pin remembers (see :class:`_Line`).
PIN_HISTORY = 64
#: Finished motor runs, and moments motors overlapped, the model lists (the latest): a machine
#: simulated for weeks keeps its totals (motor seconds, deliveries) without every run behind them.
RUNS_KEPT = 256
#: The model thread sleeps at most this long when nothing is due.
_IDLE = 0.5
#: A model step lands this far past an event, so rounding never hides the crossing.
_PAST = 1e-6


class SpiralFault(StrEnum):
    #: Turns half a revolution, then sticks: the home switch never closes again.
    JAMMED = "jammed"
    #: Power goes on but nothing turns: the home switch never opens.
    MOTOR_MISSING = "motor_missing"
    #: Each product catches at the end of the spiral and falls only after a further push.
    HANG = "hang"
    #: Not a lasting fault: setting it takes every product out of the spiral (stock 0).
    EMPTY = "empty"


class BeamFault(StrEnum):
    STUCK_BLOCKED = "stuck_blocked"
    #: Products fall but the beam never reports them.
    STUCK_CLEAR = "stuck_clear"


@dataclass(frozen=True)
class MotorRun:
    """One stretch of power on one motor."""

    slot: str
    started: float
    seconds: float


@dataclass
class _Spiral:
    stock: int
    #: Revolutions turned so far; whole numbers are the home position.
    position: float = 0.0
    #: Position at which the front product reaches the end of the spiral.
    next_edge: float = 1.0
    fault: SpiralFault | None = None
    powered_since: float | None = None
    delivered: int = 0
    #: Seconds of every finished run, added up as each ends.
    motor_seconds: float = 0.0
    #: The longest single stretch of power so far (a motor left running shows here).
    longest_run: float = 0.0


class _Line(MockPin):  # type: ignore[misc]
    """A mock pin that keeps only its latest changes: gpiozero's keeps every one it ever had
    (for its own tests' assertions), which a kiosk selling for weeks would carry along."""

    def _change_state(self, value: bool) -> bool:
        changed = bool(super()._change_state(value))
        if len(self.states) > PIN_HISTORY:
            del self.states[:-PIN_HISTORY]
        return changed


class _MotorLine(_Line):
    """A motor, row or column output: the model hears every change while the driver waits."""

    def __init__(self, factory: Any, info: Any, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        super().__init__(factory, info)

    def _change_state(self, value: bool) -> bool:
        changed = super()._change_state(value)
        if changed:
            self._on_change()
        return changed

    def _set_function(self, value: str) -> None:
        super()._set_function(value)
        if value == "input":  # released: the line floats and the motor stops
            self._on_change()


class _SensorLine(_Line):
    """A switch or beam input: the level the machine puts on it wins over the pull resistor."""

    def __init__(self, factory: Any, info: Any) -> None:
        self.level = False
        super().__init__(factory, info)

    def put(self, level: bool) -> None:
        self.level = level
        if self._function != "input" or self._state == level:
            return
        if level:
            self.drive_high()
        else:
            self.drive_low()

    def _set_pull(self, value: str) -> None:
        super()._set_pull(value)
        self.put(self.level)

    def _call_when_changed(self) -> None:
        # The driver may drop its callback on its own thread between gpiozero's check and call.
        ref = self._when_changed
        method = None if ref is None else ref()
        if method is not None:
            method(self._last_change, self._state)


class VendingSimulator:
    """A mechanical model of the machine behind a :class:`Layout`, on its own ``MockFactory``.

    ``revolution``: seconds per spiral turn; ``stock``: products per slot at start;
    ``fall_time``: seconds from leaving the spiral to cutting the beam, for ``drop_pulse``
    seconds; ``home_dwell``: fraction of a turn the home switch stays closed after the start;
    ``hang_extra``: fraction of a turn a hanging product needs beyond the end of the spiral.
    """

    def __init__(
        self,
        layout: Layout | None = None,
        *,
        revolution: float = 1.2,
        stock: int = 8,
        fall_time: float = 0.15,
        drop_pulse: float = 0.03,
        home_dwell: float = 0.08,
        hang_extra: float = 0.2,
        bank: PinBank | None = None,
    ) -> None:
        if revolution <= 0 or fall_time < 0 or drop_pulse <= 0 or stock < 0:
            raise ValueError("revolution and drop_pulse must be positive, stock and fall_time >= 0")
        if not 0 < home_dwell < 0.5 or not 0 <= hang_extra < 1:
            raise ValueError("home_dwell must be in (0, 0.5) and hang_extra in [0, 1)")
        self.layout = layout or default_layout()
        self.factory = MockFactory()
        self.revolution, self.fall_time, self.drop_pulse = revolution, fall_time, drop_pulse
        self.home_dwell, self.hang_extra = home_dwell, hang_extra
        #: Where the motor outputs' levels are mirrored, to outlive this process (see pin_bank).
        self.bank = bank
        self._lock = threading.RLock()
        self._spirals = {code: _Spiral(stock) for code in self.layout.slots}
        self._beam_fault: BeamFault | None = None
        self._falls: list[float] = []
        self._runs: deque[MotorRun] = deque(maxlen=RUNS_KEPT)
        self._overlaps: deque[frozenset[str]] = deque(maxlen=RUNS_KEPT)
        self._overlap_count = 0
        self._running: frozenset[str] = frozenset()
        # A row's shared home line reports the spiral last driven in that row.
        self._sharing: dict[str, list[str]] = {}
        for code, wiring in self.layout.slots.items():
            self._sharing.setdefault(wiring.home, []).append(code)
        self._selected = {pin: codes[0] for pin, codes in self._sharing.items()}
        self._last = time.monotonic()
        self._closed = False
        self._lines = {pin: self.factory.pin(pin, pin_class=_MotorLine, on_change=self._changed)
                       for pin in self.layout.outputs}
        self._sensors = {pin: self.factory.pin(pin, pin_class=_SensorLine)
                         for pin in (*self._sharing, self.layout.drop_beam.pin)}
        self._kick = threading.Event()
        self._update()
        self._thread = threading.Thread(target=self._run, name="vending-simulator", daemon=True)
        self._thread.start()

    # --- observing and steering ---------------------------------------------------------------

    def stock(self, slot: str) -> int:
        return self._spiral(slot).stock

    def stocks(self) -> dict[str, int]:
        with self._lock:
            return {code: s.stock for code, s in self._spirals.items()}

    def restock(self, slot: str, count: int) -> None:
        """Put ``count`` products in the spiral (replacing what it held)."""
        if count < 0:
            raise ValueError(f"stock cannot be negative, got {count}")
        with self._lock:
            self._spiral(slot).stock = count

    def delivered(self, slot: str) -> int:
        """Products that fell out of this spiral into the bin, seen by the beam or not."""
        return self._spiral(slot).delivered

    def runs(self, slot: str | None = None) -> list[MotorRun]:
        """The latest ``RUNS_KEPT`` finished motor runs, oldest first; only ``slot``'s when
        given."""
        with self._lock:
            code = None if slot is None else self._code(slot)
            return [run for run in self._runs if code is None or run.slot == code]

    def motor_seconds(self, slot: str) -> float:
        """Total seconds the slot's motor has had power, including a run in progress."""
        with self._lock:
            spiral = self._spiral(slot)
            now = time.monotonic()
            running = 0.0 if spiral.powered_since is None else now - spiral.powered_since
            return running + spiral.motor_seconds

    def running(self) -> frozenset[str]:
        """The slots whose motor has power right now."""
        with self._lock:
            return self._running

    @property
    def overlaps(self) -> list[frozenset[str]]:
        """Moments two or more motors had power at once (never, with a correct driver): the
        latest ``RUNS_KEPT``; :meth:`snapshot` counts every one."""
        with self._lock:
            return list(self._overlaps)

    def set_fault(self, slot: str, fault: SpiralFault | str) -> None:
        """Inject a :class:`SpiralFault` (by value: "jammed", "hang" ...) until cleared."""
        fault = _named(SpiralFault, fault)
        with self._lock:
            spiral = self._spiral(slot)
            if fault is SpiralFault.EMPTY:
                spiral.stock = 0
            else:
                spiral.fault = fault
        self._changed()

    def clear_fault(self, slot: str) -> None:
        with self._lock:
            self._spiral(slot).fault = None
        self._changed()

    def faults(self) -> dict[str, str]:
        with self._lock:
            return {code: s.fault.value for code, s in self._spirals.items() if s.fault}

    @property
    def beam_fault(self) -> BeamFault | None:
        return self._beam_fault

    def set_beam_fault(self, fault: BeamFault | str | None) -> None:
        with self._lock:
            self._beam_fault = None if fault is None else _named(BeamFault, fault)
        self._changed()

    def snapshot(self) -> dict[str, object]:
        """Everything a dev panel shows, as plain data."""
        with self._lock:
            return {
                "beam_fault": None if self._beam_fault is None else self._beam_fault.value,
                "running": sorted(self._running),
                "overlaps": self._overlap_count,
                "slots": {
                    code: {"stock": s.stock, "delivered": s.delivered,
                           "fault": None if s.fault is None else s.fault.value,
                           "position": round(s.position, 3),
                           "motor_seconds": round(self.motor_seconds(code), 3),
                           "longest_run_s": round(s.longest_run, 3)}
                    for code, s in self._spirals.items()
                },
            }

    def close(self) -> None:
        """Stop the model; the pins keep their last levels. Idempotent."""
        self._closed = True
        self._kick.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)

    def __enter__(self) -> VendingSimulator:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def _code(self, slot: str) -> str:
        code = slot.strip().upper()
        if code not in self._spirals:
            raise ValueError(f"no slot {slot!r}; slots: {', '.join(self._spirals)}")
        return code

    def _spiral(self, slot: str) -> _Spiral:
        return self._spirals[self._code(slot)]

    # --- the model ----------------------------------------------------------------------------

    def _changed(self) -> None:
        # Called on the driver's thread when it switches a motor: answer before it reads back.
        self._mirror()
        if self._closed:
            return
        try:
            self._update(time.monotonic())  # stamped now: the model thread may hold the lock
        except Exception:  # a model bug must not look like a GPIO failure to the driver
            log.exception("vending simulator: update failed")
        self._kick.set()

    def _mirror(self) -> None:
        """Put every motor output's level in the bank, as the wires would hold it."""
        bank, lines = self.bank, getattr(self, "_lines", None)
        if bank is None or lines is None:
            return
        for pin, line in lines.items():
            bank.set(pin, line.function == "output" and bool(line.state))

    def _run(self) -> None:
        while not self._closed:
            try:
                due = self._update()
            except Exception:
                log.exception("vending simulator: update failed")
                due = None
            wait = _IDLE if due is None else min(_IDLE, max(0.0, due - time.monotonic()))
            self._kick.wait(wait)
            self._kick.clear()

    def _update(self, at: float | None = None) -> float | None:
        """Bring the machine up to now, set the inputs, and say when something happens next."""
        with self._lock:
            now = max(self._last, time.monotonic() if at is None else at)
            # Step from event to event, so a late wake-up still puts every edge on the inputs.
            for _ in range(1000):
                due = self._next_due(self._last)
                if due is None or due + _PAST >= now:
                    break
                self._turn_spirals(due + _PAST)
                self._set_inputs(due + _PAST)
            self._turn_spirals(now)
            self._apply_power(now)
            self._set_inputs(now)
            return self._next_due(now)

    def _turn_spirals(self, at: float) -> None:
        elapsed, self._last = at - self._last, at
        for spiral in self._spirals.values():
            if spiral.powered_since is None:
                continue
            target = min(spiral.position + elapsed / self.revolution, self._reach(spiral))
            while target >= (release := self._release_at(spiral)):
                if spiral.stock > 0:
                    spiral.stock -= 1
                    spiral.delivered += 1
                    self._falls.append(at - (target - release) * self.revolution + self.fall_time)
                spiral.next_edge += 1.0
            spiral.position = target

    def _reach(self, spiral: _Spiral) -> float:
        """How far the spiral can turn: a missing motor not at all, a jammed one half a turn."""
        if spiral.fault is SpiralFault.MOTOR_MISSING:
            return spiral.position
        if spiral.fault is SpiralFault.JAMMED:
            return max(spiral.position, math.floor(spiral.position) + 0.5)
        return math.inf

    def _release_at(self, spiral: _Spiral) -> float:
        return spiral.next_edge + (self.hang_extra if spiral.fault is SpiralFault.HANG else 0.0)

    def _apply_power(self, now: float) -> None:
        running = frozenset(
            code for code, wiring in self.layout.slots.items()
            if all(self._active(pin) for pin in wiring.motor)
        )
        for code, spiral in self._spirals.items():
            if code in running and spiral.powered_since is None:
                spiral.powered_since = now
                self._selected[self.layout.slots[code].home] = code
            elif code not in running and spiral.powered_since is not None:
                seconds = now - spiral.powered_since
                self._runs.append(MotorRun(code, spiral.powered_since, seconds))
                spiral.motor_seconds += seconds
                spiral.longest_run = max(spiral.longest_run, seconds)
                spiral.powered_since = None
        if len(running) > 1 and running != self._running:
            self._overlaps.append(running)
            self._overlap_count += 1
        self._running = running

    def _active(self, pin: str) -> bool:
        line = self._lines[pin]
        return line.function == "output" and bool(line.state) == self.layout.outputs[pin]

    def _input_level(self, pin: str, at: float) -> bool:
        beam = self.layout.drop_beam
        if pin == beam.pin:
            self._falls = [fall for fall in self._falls if fall + self.drop_pulse > at]
            falling = any(fall <= at for fall in self._falls)
            fault = self._beam_fault
            blocked = fault is BeamFault.STUCK_BLOCKED or (
                fault is not BeamFault.STUCK_CLEAR and falling)
            return blocked == beam.blocked_high
        spiral = self._spirals[self._selected[pin]]
        closed = spiral.position % 1.0 < self.home_dwell
        # A closed switch pulls its line to the opposite of the pull resistor.
        return not closed if self.layout.home_pull_up else closed

    def _set_inputs(self, at: float) -> None:
        for pin, line in self._sensors.items():
            line.put(self._input_level(pin, at))

    def _next_due(self, after: float) -> float | None:
        due = [t for fall in self._falls for t in (fall, fall + self.drop_pulse) if t > after]
        for spiral in self._spirals.values():
            if spiral.powered_since is None:
                continue
            turn, reach = math.floor(spiral.position), self._reach(spiral)
            for mark in (turn + self.home_dwell, turn + 1.0, self._release_at(spiral)):
                if spiral.position < mark <= reach:
                    due.append(after + (mark - spiral.position) * self.revolution)
        return min(due, default=None)


_Fault = TypeVar("_Fault", SpiralFault, BeamFault)


def _named(kind: type[_Fault], value: _Fault | str) -> _Fault:
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"no such fault {value!r}; one of: {', '.join(kind)}") from None


def attach(url: DeviceUrl, state_dir: Path) -> Attached:
    """The real driver on a simulator's mock pins, for ``sim://?revolution=1.2&stock=8``.

    ``fall_time`` (default 0.15 s) is how long a product falls to the drop beam.
    Also takes ``layout=PATH`` (default: the demo layout) and the driver's timing overrides.
    Every start is a freshly stocked machine; only the motor outputs' levels are kept in
    ``state_dir`` (:data:`pin_bank.FILE_NAME`), as real lines keep them when the kiosk dies.
    """
    unknown = sorted(set(url.params) - {"revolution", "fall_time", "stock", "layout",
                                        *TIMING_KEYS})
    if unknown:
        raise DeviceUrlError(f"unknown parameter {', '.join(unknown)} in {url.raw!r}; known: "
                             f"revolution, fall_time, stock, layout, {', '.join(TIMING_KEYS)}")
    seconds: dict[str, float] = {}
    for key, default in (("revolution", "1.2"), ("fall_time", "0.15")):
        try:
            seconds[key] = float(url.param(key, default))
        except ValueError:
            raise DeviceUrlError(f"{key}={url.params[key]!r} in {url.raw!r} is not "
                                 "a number of seconds") from None
    revolution, fall_time = seconds["revolution"], seconds["fall_time"]
    if not 0 <= fall_time < 60:
        raise DeviceUrlError(f"fall_time={fall_time:g} in {url.raw!r} must be 0 to 60 seconds")
    layout_path = url.params.get("layout")
    layout = load_layout(Path(layout_path)) if layout_path else default_layout()
    layout = override_timing(layout, url.params, url.raw)
    if not 0 < revolution < layout.timing.turn_limit:
        raise DeviceUrlError(f"revolution={revolution:g} in {url.raw!r} must be positive and "
                             f"shorter than turn_limit ({layout.timing.turn_limit:g} s)")
    simulator = VendingSimulator(layout, revolution=revolution, fall_time=fall_time,
                                 stock=url.int_param("stock", 8),
                                 bank=PinBank(state_dir / FILE_NAME, list(layout.outputs)))
    driver = GpioSpiralMechanism(layout, pin_factory=simulator.factory, description=url.raw)
    return Attached(driver, simulator)


_COMMANDS = ("vend SLOT | test SLOT | stock | restock SLOT N | fault SLOT|beam NAME | "
             "clear SLOT|beam | health | quit")


def console(argv: list[str], *, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """``kiosk simulate vending``: simulator and real driver in this process, commands on stdin.

    Mock pins cannot cross processes, so both run here. One answer line per command; 0 on
    ``quit`` or end of input.
    """
    parser = argparse.ArgumentParser(prog="kiosk simulate vending", epilog=_COMMANDS)
    parser.add_argument("--revolution", type=float, default=1.2, help="seconds per turn")
    parser.add_argument("--stock", type=int, default=8, help="products per slot")
    parser.add_argument("--layout", type=Path, help="a layout file (default: the demo layout)")
    args = parser.parse_args(argv)
    try:
        layout = load_layout(args.layout) if args.layout else default_layout()
    except LayoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_serve(layout, args, stdin or sys.stdin, stdout or sys.stdout))


async def _serve(layout: Layout, args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    with VendingSimulator(layout, revolution=args.revolution, stock=args.stock) as simulator:
        driver = GpioSpiralMechanism(layout, pin_factory=simulator.factory,
                                     description="kiosk simulate vending")
        await driver.open()
        print(f"vending simulator: {len(layout.slots)} slots; {_COMMANDS}", file=sys.stderr)
        try:
            while line := await asyncio.to_thread(stdin.readline):
                words = line.split()
                if words == ["quit"]:
                    print("bye", file=stdout, flush=True)
                    break
                if words:
                    try:
                        answer = await _answer(words, simulator, driver)
                    except (DeviceError, ValueError) as exc:
                        answer = f"error: {exc}"
                    print(answer, file=stdout, flush=True)
        finally:
            await driver.close()
    return 0


async def _answer(words: list[str], sim: VendingSimulator, driver: GpioSpiralMechanism) -> str:
    match words:
        case ["vend", slot]:
            r = await driver.dispense(slot)
            return (f"{r.slot} {r.outcome} nudges={r.nudges} motor={r.motor_seconds:.2f}s "
                    f"stock={sim.stock(slot)}")
        case ["test", slot]:
            r = await driver.test_slot(slot)
            timings = " ".join(f"{k}={v}" for k, v in r.detail.items())
            return f"{r.slot} {r.outcome} motor={r.motor_seconds:.2f}s {timings}".rstrip()
        case ["stock"]:
            return " ".join(f"{code}={n}" for code, n in sim.stocks().items())
        case ["restock", slot, count]:
            if not count.isdigit():
                return f"error: restock needs a number of products, got {count!r}"
            sim.restock(slot, int(count))
            return f"{slot.upper()} stock={sim.stock(slot)}"
        case ["fault", "beam", name]:
            sim.set_beam_fault(name)
            return f"beam fault={name}"
        case ["fault", slot, name]:
            sim.set_fault(slot, name)
            return f"{slot.upper()} fault={name} stock={sim.stock(slot)}"
        case ["clear", "beam"]:
            sim.set_beam_fault(None)
            return "beam ok"
        case ["clear", slot]:
            sim.clear_fault(slot)
            return f"{slot.upper()} ok"
        case ["health"]:
            return f"{driver.health.state}: {driver.health.reason}"
    return f"error: unknown command {' '.join(words)!r}; commands: {_COMMANDS}"

"""Spiral vending on GPIO: motor outputs, home (cycle) switches and a drop beam, via gpiozero.

One vend is one revolution of a spiral. The home switch opens as the spiral leaves its rest
position and closes when it is back; the infrared beam across the delivery bin says whether a
product really fell. Input edges arrive on gpiozero's threads: they are time-stamped there and
handed to the event loop, so a drop pulse of a few milliseconds is never missed and the timings
do not depend on how busy the loop is. A drop is latched there too, and every run of a motor
is bounded by a :class:`MotorGuard` on a thread of its own (home, the limits, the beam during
a nudge): a loop that is held up cannot keep a motor running.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import math
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from gpiozero import DigitalInputDevice, DigitalOutputDevice
from gpiozero.pins import Factory

from drivers.base import (
    DeviceError,
    DeviceRejected,
    DeviceUnavailable,
    DispenseOutcome,
    DispenseResult,
    HealthState,
    VendingMechanism,
)
from drivers.registry import DeviceUrl, DeviceUrlError
from drivers.vending.layout import (
    BEAM_GRACE,
    TIMING_KEYS,
    Layout,
    SlotWiring,
    load_layout,
    override_timing,
)
from drivers.vending.motor_guard import Bounds, MotorGuard

log = logging.getLogger(__name__)

#: Re-read the pins this often even without a callback, in case an edge was lost.
_POLL = 0.05
#: This many vends in a row without a drop, from at least two slots, make the beam suspect.
_SUSPECT_MISSES = 3
_BEAM_GRACE = BEAM_GRACE
_BLOCKED = "the drop beam is blocked: empty the delivery bin or clean the beam"

_live: weakref.WeakSet[GpioSpiralMechanism] = weakref.WeakSet()


@atexit.register
def _stop_motors_at_exit() -> None:
    # Runs before gpiozero's own exit handler (registered earlier) releases the pins.
    for mechanism in list(_live):
        mechanism._all_motors_off()


class _Closed(DeviceError):
    """The mechanism was closed while a vend was waiting on it."""


@dataclass
class _Run:
    """One vend in progress: what the motor did and what the sensors saw."""

    slot: SlotWiring
    #: When the motor first started; a drop seen from here on counts.
    started: float
    motor_seconds: float = 0.0
    #: Seconds per revolution of this slot: what a nudge's fraction is a fraction of.
    revolution: float = 0.0
    nudges: int = 0
    detail: dict[str, object] = field(default_factory=dict)


class GpioSpiralMechanism(VendingMechanism):
    """Spiral motors on GPIO outputs; home switches and the drop beam on GPIO inputs.

    Build it from a :class:`Layout` (or a URL, :meth:`from_url`); ``pin_factory`` is gpiozero's
    (``None``: the Pi's own pins; the simulator passes a ``MockFactory``). :meth:`open` claims
    the pins. Events: ``motor_started``, ``left_home``, ``returned_home``, ``product_dropped``
    (the moment the beam fires), ``nudge``, ``motor_stopped``, ``vend_finished``, ``beam_blocked``.
    """

    def __init__(
        self,
        layout: Layout,
        *,
        pin_factory: Factory | None = None,
        description: str | None = None,
        claim_retry: float = 1.0,
    ) -> None:
        super().__init__(description or f"gpio-spiral://?layout={layout.source}")
        self.layout = layout
        self._pin_factory = pin_factory
        self._claim_retry = claim_retry
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._retrying: asyncio.Task[None] | None = None
        self._closed = False
        self._outputs: dict[str, Any] = {}
        self._inputs: dict[str, Any] = {}
        self._edges: dict[str, deque[tuple[float, bool]]] = {}
        self._edges_lock = threading.Lock()
        self._turning: str | None = None
        #: The run of a motor now under way, told of every input edge on its thread.
        self._guard: MotorGuard | None = None
        #: When the vend under way began, and the first beam cut since (latched on the
        #: callback thread, so neither a lost deque entry nor a late loop can lose it).
        self._vend_since: float | None = None
        self._drop_latched: float | None = None
        self._drop_announced = False
        self._revolution: dict[str, float] = {}
        self._off_home: set[str] = set()
        self._misses: list[str] = []
        self._slot_faults: dict[str, str] = {}

    @classmethod
    def from_url(cls, url: DeviceUrl) -> GpioSpiralMechanism:
        """``gpio-spiral://?layout=PATH`` plus optional timing overrides (``&turn_limit=6``)."""
        unknown = sorted(set(url.params) - {"layout", *TIMING_KEYS})
        if unknown:
            raise DeviceUrlError(
                f"unknown parameter {', '.join(unknown)} in {url.raw!r}; "
                f"known: layout, {', '.join(TIMING_KEYS)}"
            )
        path = url.params.get("layout") or url.path
        if not path:
            raise DeviceUrlError(
                f"{url.raw!r} names no layout file, e.g. gpio-spiral://?layout=/etc/kiosk/slots.toml"
            )
        return cls(override_timing(load_layout(Path(path)), url.params, url.raw),
                   description=url.raw)

    # --- lifecycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Claim the pins; when they cannot be claimed, stay offline and keep trying."""
        self._loop = asyncio.get_running_loop()
        self._closed = False
        if self._outputs or self._retrying is not None:
            return
        if not self._claim():
            self._retrying = asyncio.create_task(self._keep_claiming())

    async def close(self) -> None:
        """Switch every motor off and release the pins. Idempotent; never raises."""
        self._closed = True
        if self._retrying is not None:
            self._retrying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retrying
            self._retrying = None
        self._all_motors_off()
        self._release()
        self._wake.set()  # a vend waiting on the pins gives up at once
        self._set_health(HealthState.OFFLINE, "closed", self._detail())

    def slots(self) -> frozenset[str]:
        return frozenset(self.layout.slots)

    def _claim(self) -> bool:
        try:
            self._build_devices()
        except Exception as exc:  # gpiozero raises many kinds: no pin factory, pin in use, EPERM
            self._release()
            self._set_health(HealthState.OFFLINE, f"cannot claim the GPIO pins: {exc}",
                             self._detail())
            return False
        _live.add(self)
        self._settle_health(beam_blocked=self._beam_level())
        return True

    async def _keep_claiming(self) -> None:
        delay = self._claim_retry
        while not self._closed:
            await asyncio.sleep(delay)
            if self._claim():
                break
            delay = min(delay * 2, 30.0)
        self._retrying = None

    def _build_devices(self) -> None:
        factory = self._pin_factory
        for pin, active_high in self.layout.outputs.items():
            self._outputs[pin] = DigitalOutputDevice(
                pin, active_high=active_high, initial_value=False, pin_factory=factory)
        for pin in self.layout.home_pins:
            # What gpiozero's Button is, minus its hold thread: that thread sleeps a whole
            # hold_time while the switch is closed (at home, nearly always), stalling close().
            self._watch(pin, DigitalInputDevice(pin, pull_up=self.layout.home_pull_up,
                                                bounce_time=self.layout.home_debounce or None,
                                                pin_factory=factory))
        beam = self.layout.drop_beam
        # No debounce on the beam: a falling product cuts it for only a few milliseconds.
        self._watch(beam.pin, DigitalInputDevice(
            beam.pin, pull_up=beam.pull_up,
            active_state=beam.blocked_high if beam.pull_up is None else None,
            pin_factory=factory))

    def _watch(self, pin: str, device: Any) -> None:
        self._inputs[pin] = device
        self._edges[pin] = deque(maxlen=64)
        device.when_activated = partial(self._edge, pin, True)
        device.when_deactivated = partial(self._edge, pin, False)

    def _release(self) -> None:
        for device in [*self._outputs.values(), *self._inputs.values()]:
            try:
                device.close()
            except Exception:  # releasing must go on for the other pins
                log.exception("vending: could not release %r", device)
        self._outputs.clear()
        self._inputs.clear()
        _live.discard(self)

    # --- pins and edges -----------------------------------------------------------------------

    def _edge(self, pin: str, active: bool) -> None:
        # On gpiozero's (or the simulator's) thread: time-stamp it here, look at it on the loop.
        at = time.monotonic()
        with self._edges_lock:
            self._edges[pin].append((at, active))
            since = self._vend_since
            if (active and pin == self.layout.drop_beam.pin and since is not None
                    and at > since and self._drop_latched is None):
                self._drop_latched = at
        guard = self._guard
        if guard is not None:
            guard.edge(pin, active, at)
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
                loop.call_soon_threadsafe(self._edge_seen, pin, active)

    def _edge_seen(self, pin: str, active: bool) -> None:
        self._wake.set()
        if pin != self.layout.drop_beam.pin:
            return
        if active and self._turning is not None:
            self._announce_drop(self._turning)
        elif active and self._loop is not None:
            # Cut with no vend under way: a product falling late passes within the grace; a
            # beam still cut after it (a full bin, a bag left in it, a pulled cable) takes the
            # kiosk out of service now, before a customer pays, not at the next vend.
            self._loop.call_later(_BEAM_GRACE, self._check_idle_beam)
        elif not active and self.health.reason == _BLOCKED:
            self._settle_health(beam_blocked=False)

    def _check_idle_beam(self) -> None:
        if (self._closed or not self._inputs or self._lock.locked()
                or not self._beam_level() or self.health.reason == _BLOCKED):
            return
        log.warning("vending: %s", _BLOCKED)
        self._settle_health(beam_blocked=True)
        self._emit("beam_blocked", slot=None)

    def _edges_since(self, pin: str, since: float) -> list[tuple[float, bool]]:
        with self._edges_lock:
            return [(at, active) for at, active in self._edges[pin] if at > since]

    def _level(self, pin: str) -> bool | None:
        device = self._inputs.get(pin)
        return None if device is None else bool(device.is_active)

    def _beam_level(self) -> bool:
        return self._level(self.layout.drop_beam.pin) is True

    def _beam_clear_at(self) -> float | None:
        return None if self._beam_level() else time.monotonic()

    def _dropped(self, run: _Run) -> float | None:
        beam = self.layout.drop_beam.pin
        at = self._drop_latched
        if at is None:
            at = next((at for at, active in self._edges_since(beam, run.started) if active),
                      None)
        if at is None and self._beam_level():
            at = time.monotonic()
        if at is not None:  # the loop may read the edge before its callback comes round
            self._announce_drop(run.slot.code)
        return at

    def _announce_drop(self, slot: str) -> None:
        if not self._drop_announced:
            self._drop_announced = True
            self._emit("product_dropped", slot=slot)

    async def _wait(self, ready: Callable[[], float | None], deadline: float) -> float | None:
        """The time ``ready`` reports, as soon as it reports one; None at the deadline."""
        while True:
            self._wake.clear()
            if self._closed:
                raise _Closed("vending", "closed in the middle of a vend")
            found = ready()
            if found is not None:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, _POLL)):
                    await self._wake.wait()

    def _all_motors_off(self) -> None:
        self._switch_off(*self._outputs)

    def _switch_off(self, *pins: str) -> None:
        for pin in pins:
            output = self._outputs.get(pin)
            try:
                if output is not None:
                    output.off()
            except Exception:  # one failing output must not keep the others on
                log.exception("vending: could not switch off %s", pin)

    @contextlib.contextmanager
    def _powered(self, run: _Run, bounds: Bounds) -> Iterator[MotorGuard]:
        """Run the slot's motor, guarded by ``bounds``, for the body of the ``with`` at most;
        off on every way out. The guard's clock starts when the motor is on, not before."""
        power, *select = run.slot.motor
        self._all_motors_off()  # whatever happened before, never two motors at once
        guard = MotorGuard(bounds, partial(self._switch_off, power, *select), self._wake_loop)
        self._guard = guard
        try:
            # Select the column first so the motor starts in one step when the row switches on.
            for pin in (*select, power):
                self._outputs[pin].on()
            guard.arm(switch_open=bounds.home is not None and self._level(bounds.home) is False)
            self._emit("motor_started", slot=run.slot.code, nudge=run.nudges)
            yield guard
        finally:
            guard.stop()
            self._guard = None
            self._switch_off(power, *select)
            seconds = guard.powered_seconds()
            run.motor_seconds += seconds
            self._emit("motor_stopped", slot=run.slot.code, seconds=round(seconds, 3),
                       why=guard.why)

    def _wake_loop(self) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
                loop.call_soon_threadsafe(self._wake.set)

    async def _until_stopped(self, guard: MotorGuard) -> None:
        """Wait for the guard to have stopped the motor (it does so by itself, in time)."""
        assert guard.powered_at is not None
        # The guard stops the motor at its limit; the margin only covers a guard that died.
        await self._wait(lambda: guard.stopped_at, guard.powered_at + guard.bounds.limit + 2)

    # --- vending ------------------------------------------------------------------------------

    async def dispense(self, slot: str) -> DispenseResult:
        """One revolution, then up to ``timing.nudges`` partial turns until the beam sees a drop."""
        return await self._vend(slot, self.layout.timing.nudges, "vend")

    async def test_slot(self, slot: str) -> DispenseResult:
        """One revolution and no nudges; ``detail`` has left_home_s, returned_home_s, dropped_s."""
        return await self._vend(slot, 0, "test")

    async def _vend(self, slot: str, nudges: int, purpose: str) -> DispenseResult:
        wiring = self._slot(slot)
        async with self._lock:
            if self._closed or not self._outputs:
                raise DeviceUnavailable("vending", f"not ready: {self.health.reason}")
            # The product of the vend before may still be falling through the beam: let it pass.
            grace = time.monotonic() + min(_BEAM_GRACE, self.layout.timing.drop_limit)
            try:
                clear = await self._wait(self._beam_clear_at, grace)
            except _Closed:
                raise DeviceUnavailable("vending", "closed before the motor started") from None
            if clear is None:
                self._settle_health(beam_blocked=True)
                self._emit("beam_blocked", slot=wiring.code)
                return DispenseResult(wiring.code, DispenseOutcome.BEAM_BLOCKED,
                                      detail={"reason": _BLOCKED})
            run = _Run(wiring, time.monotonic())
            self._turning, self._drop_announced = wiring.code, False
            with self._edges_lock:
                self._vend_since, self._drop_latched = run.started, None
            try:
                outcome = await self._turn_and_nudge(run, nudges)
            except _Closed:
                if self._dropped(run) is None:
                    raise DeviceError("vending", f"closed while vending {wiring.code}: "
                                                 "whether a product fell is unknown") from None
                outcome = DispenseOutcome.DELIVERED
            finally:
                self._all_motors_off()
                self._turning = None
                with self._edges_lock:
                    self._vend_since = None
        dropped = self._dropped(run)
        if dropped is not None:
            run.detail["dropped_s"] = round(dropped - run.started, 3)
        result = DispenseResult(wiring.code, outcome, run.nudges, round(run.motor_seconds, 3),
                                run.detail)
        self._record(result, purpose)
        return result

    async def _turn_and_nudge(self, run: _Run, nudges: int) -> DispenseOutcome:
        timing = self.layout.timing
        fault = await self._turn(run)
        drop = partial(self._dropped, run)
        if fault is DispenseOutcome.MOTOR_MISSING:
            seen = drop()  # the spiral never left home: nothing can be in flight
        else:
            seen = await self._wait(drop, time.monotonic() + timing.drop_limit)
        if seen is not None:
            if fault is not None:
                run.detail["fault"] = fault.value
            return DispenseOutcome.DELIVERED
        if fault is not None:
            return fault
        while run.nudges < nudges:
            run.nudges += 1
            self._emit("nudge", slot=run.slot.code, number=run.nudges)
            self._off_home.add(run.slot.code)
            # The guard stops the nudge as soon as the product falls: more turning only
            # pushes the next one.
            bounds = Bounds(limit=timing.nudge_fraction * run.revolution,
                            beam=self.layout.drop_beam.pin)
            with self._powered(run, bounds) as guard:
                await self._until_stopped(guard)
            if await self._wait(drop, time.monotonic() + timing.drop_limit) is not None:
                return DispenseOutcome.DELIVERED
        return DispenseOutcome.NOT_DROPPED

    async def _turn(self, run: _Run) -> DispenseOutcome | None:
        """One revolution, home to home. Returns the fault, if the switch said there was one."""
        timing, code, home = self.layout.timing, run.slot.code, run.slot.home
        # A nudge or a jam leaves a spiral between stops, and a motor switched off late lets it
        # coast past its switch: the next turn is then not a full revolution. Nudges and jams
        # are remembered rather than read (a matrix row's shared switch may report another
        # motor); a coasting spiral is found with its switch open at the start.
        from_home = code not in self._off_home
        self._off_home.add(code)
        # Resting with the switch open (a nudge, a jam, coasting): the first close is home.
        bounds = Bounds(limit=timing.turn_limit, start_limit=timing.start_limit, home=home)
        with self._powered(run, bounds) as guard:
            started_open = guard.started_open
            await self._wait(lambda: guard.left_at or guard.stopped_at, math.inf)
            powered = guard.powered_at
            assert powered is not None
            if guard.left_at is None:
                await self._until_stopped(guard)
                return DispenseOutcome.MOTOR_MISSING
            run.detail["left_home_s"] = round(guard.left_at - powered, 3)
            self._emit("left_home", slot=code, seconds=run.detail["left_home_s"])
            await self._until_stopped(guard)
            back = guard.home_at
            if back is None:
                return DispenseOutcome.JAMMED
            run.detail["returned_home_s"] = round(back - powered, 3)
            self._emit("returned_home", slot=code, seconds=run.detail["returned_home_s"])
        self._off_home.discard(code)
        if from_home and not started_open:
            self._revolution[code] = back - powered
        else:
            run.detail["started_off_home"] = True
        run.revolution = self._revolution.get(code, back - powered)
        run.detail["revolution_s"] = round(run.revolution, 3)
        return None

    def _slot(self, slot: str) -> SlotWiring:
        wiring = self.layout.slots.get(slot.strip().upper())
        if wiring is None:
            raise DeviceRejected("vending", f"no slot {slot!r} in {self.layout.source}; "
                                            f"slots: {', '.join(self.layout.slots)}")
        return wiring

    # --- health -------------------------------------------------------------------------------

    def _record(self, result: DispenseResult, purpose: str) -> None:
        code, outcome = result.slot, result.outcome
        if outcome in (DispenseOutcome.JAMMED, DispenseOutcome.MOTOR_MISSING):
            self._slot_faults[code] = outcome.value
        elif "fault" in result.detail:
            self._slot_faults[code] = str(result.detail["fault"])
        else:
            self._slot_faults.pop(code, None)
        if result.delivered:
            self._misses.clear()
        elif outcome is DispenseOutcome.NOT_DROPPED and purpose == "vend":
            self._misses = [*self._misses, code][-_SUSPECT_MISSES:]
        self._settle_health(beam_blocked=False)
        self._emit("vend_finished", slot=code, outcome=outcome.value, nudges=result.nudges,
                   motor_seconds=result.motor_seconds, purpose=purpose)
        log.info("vending %s %s: %s after %d nudges, motor %.2f s", purpose, code,
                 outcome.value, result.nudges, result.motor_seconds)

    def _settle_health(self, beam_blocked: bool) -> None:
        if beam_blocked:
            self._set_health(HealthState.DEGRADED, _BLOCKED, self._detail())
        elif len(self._misses) >= _SUSPECT_MISSES and len(set(self._misses)) > 1:
            self._set_health(HealthState.DEGRADED,
                             f"the drop beam saw nothing on the last {len(self._misses)} vends "
                             f"({', '.join(self._misses)}): check the beam and the stock",
                             self._detail())
        else:
            self._set_health(HealthState.OK, f"{len(self.layout.slots)} slots ready",
                             self._detail())

    def _detail(self) -> dict[str, object]:
        factory = self._pin_factory
        return {
            "layout": self.layout.source,
            "wiring": self.layout.wiring,
            "slots": len(self.layout.slots),
            "pins": "default" if factory is None else type(factory).__name__,
            "slot_faults": dict(self._slot_faults),
        }

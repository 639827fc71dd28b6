"""The motor guard: one powered run of a spiral motor, bounded on a thread of its own.

The event loop decides what a vend does next, but it is not what stops a motor: a loop held up
by a slow disk, a long computation or a bug would let a motor run on, pushing out products for
free and burning a stalled motor. So every run of a motor is armed with a guard whose own
thread switches it off at the first of (edges reach it on the input's callback thread):

- its deadline (the turn limit, a nudge's fraction of a revolution), whatever the loop does;
- the start limit, if the spiral has not left home by then (a dead motor);
- home: the switch closing again after the spiral left it (or the first close, for a spiral
  that started off home), so a late loop cannot make it turn a second revolution;
- the drop beam, for a nudge: once the product falls, more turning only pushes the next one.

The loop learns afterwards what happened and when, from the times the guard kept.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Bounds:
    """When a run must end, in seconds after the motor was switched on."""

    #: The whole run: a turn's limit, or a nudge's fraction of a revolution.
    limit: float
    #: The spiral must have left home by then (a full turn from home only).
    start_limit: float | None = None
    #: The home switch's pin: stop when the spiral is back home.
    home: str | None = None
    #: The drop beam's pin: stop when it is cut.
    beam: str | None = None


class MotorGuard:
    """Switches ``switch_off`` at the first bound reached; thread-safe; trips once."""

    def __init__(self, bounds: Bounds, switch_off: Callable[[], None],
                 on_stop: Callable[[], None]) -> None:
        self.bounds = bounds
        self._switch_off = switch_off
        self._on_stop = on_stop
        self._changed = threading.Condition()
        self.powered_at: float | None = None
        #: The spiral rested off home when the motor came on: its first close is home.
        self.started_open = False
        #: When the home switch opened (or the run began, for a spiral resting off home).
        self.left_at: float | None = None
        self.home_at: float | None = None
        self.stopped_at: float | None = None
        #: Why the motor was stopped: "home", "drop", "limit", "start_limit" or "ended".
        self.why = ""
        self._thread: threading.Thread | None = None

    def arm(self, switch_open: bool = False) -> None:
        """The motor has just been switched on: start the clock. ``switch_open``: the home
        switch reads open now (read after switching on: a row's shared line shows the
        spiral being driven only from then on)."""
        with self._changed:
            self.powered_at = time.monotonic()
            # An opening seen already means it started at home and has left it.
            if switch_open and self.left_at is None:
                self.started_open = True
                self.left_at = self.powered_at
        self._thread = threading.Thread(target=self._watch, name="motor guard", daemon=True)
        self._thread.start()

    def edge(self, pin: str, active: bool, at: float) -> None:
        """An input changed (called on the input's callback thread, stamped there). The
        guard's own thread switches the motor off: the callback may come from inside the
        device layer (a simulator's model), which must not be re-entered from it."""
        bounds = self.bounds
        with self._changed:
            if self.why:
                return
            if pin == bounds.home:
                if not active and self.left_at is None:
                    self.left_at = at
                elif active and self.left_at is not None and self.home_at is None:
                    self.home_at = at
                    self._claim("home")
            elif pin == bounds.beam and active:
                self._claim("drop")  # the drop itself is latched by the mechanism

    def stop(self) -> None:
        """The vend is done with the motor (or gives up): off now, if not already."""
        with self._changed:
            self._claim("ended")
            thread = self._thread
        if thread is None:
            self._switch_off()
            return
        thread.join(timeout=5)
        if thread.is_alive():  # never expected: then at least switch it off from here
            self._switch_off()

    def powered_seconds(self) -> float:
        if self.powered_at is None:
            return 0.0
        end = self.stopped_at if self.stopped_at is not None else time.monotonic()
        return max(0.0, end - self.powered_at)

    def _watch(self) -> None:
        bounds = self.bounds
        with self._changed:
            while not self.why:
                assert self.powered_at is not None
                now = time.monotonic()
                due = self.powered_at + bounds.limit
                if bounds.start_limit is not None and self.left_at is None:
                    start_due = self.powered_at + bounds.start_limit
                    if now >= start_due:
                        self._claim("start_limit")
                        break
                    due = min(due, start_due)
                if now >= due:
                    self._claim("limit")
                    break
                self._changed.wait(due - now)
        try:
            self._switch_off()
        finally:
            with self._changed:
                self.stopped_at = time.monotonic()
                self._changed.notify_all()
            self._on_stop()

    def _claim(self, why: str) -> None:
        # With the condition held: the first reason wins; the thread is woken to act on it.
        if not self.why:
            self.why = why
            self._changed.notify_all()

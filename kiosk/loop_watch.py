"""The kiosk watches its own event loop: how late it runs, and what held it up.

A ticker on the loop asks to be woken every :data:`TICK_SECONDS` and records how late it woke
(the lag): whatever the loop was doing instead is time in which a motor could not be stopped nor
a drop recorded. The lags of the last :data:`WINDOW_SECONDS` give the p99 and the maximum that
``/readyz`` and the diagnostics page show.

A late tick only says, afterwards, that the loop was held up. A watchdog thread sees it while it
happens: the ticker stamps a heartbeat, and once the heartbeat is overdue by more than the
threshold the thread takes the stack of the loop's thread, so the log names the function that
blocked. One warning per episode, and one line when the loop runs again.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import sys
import threading
import time
import traceback
from array import array
from dataclasses import asdict, dataclass

log = logging.getLogger(__name__)

#: How often the ticker asks to be woken; a lag is measured against this.
TICK_SECONDS = 0.05
#: How far back the figures look.
WINDOW_SECONDS = 300.0
#: How often the watchdog thread looks at the heartbeat.
WATCHDOG_SECONDS = 0.05
#: Innermost frames of the blocked loop's stack written to the log.
STACK_FRAMES = 25


@dataclass(frozen=True)
class LoopLag:
    """The event loop's lag over the window, in the units ``/readyz`` reports."""

    lag_p99_ms: float
    lag_max_ms: float
    window_s: int
    #: Ticks that woke later than the threshold: each is a time the loop was blocked.
    blocked_episodes: int
    threshold_ms: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


class LoopWatch:
    """Measures the loop's lag and logs what blocks it; ``start`` and ``stop`` it on the loop."""

    def __init__(self, threshold: float, *, tick: float = TICK_SECONDS,
                 window: float = WINDOW_SECONDS) -> None:
        if threshold <= 0 or tick <= 0 or window <= 0:
            raise ValueError("the threshold, the tick and the window must be > 0 seconds")
        self.threshold = threshold
        self.tick = tick
        self.window = window
        # A ring of the last lags and when they were taken, allocated once: a tick only
        # stores two floats. A tick sleeps at least `tick`, so the ring holds the whole window.
        self._size = math.ceil(window / tick) + 1
        self._lags = array("d", [0.0]) * self._size
        self._stamps = array("d", [-math.inf]) * self._size
        self._next = 0
        #: When the ticker last ran (time.monotonic); it is due again `tick` later.
        self._beat = time.monotonic()
        #: The heartbeat of the episode the watchdog has warned about, while it lasts.
        self._flagged: float | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._timer: asyncio.TimerHandle | None = None
        self._watchdog: threading.Thread | None = None

    def start(self) -> None:
        """Start the ticker on the running loop and the watchdog thread beside it."""
        if self._loop is not None:
            raise RuntimeError("the loop watch is already running")
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stopping.clear()
        self._beat = time.monotonic()
        self._timer = self._loop.call_later(self.tick, self._tick)
        self._watchdog = threading.Thread(target=self._watch, name="loop watchdog", daemon=True)
        self._watchdog.start()

    def stop(self) -> None:
        """Stop the ticker and the watchdog; the figures stay readable."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._stopping.set()
        if self._watchdog is not None:
            self._watchdog.join(timeout=1.0)
            self._watchdog = None
        self._loop = None

    def figures(self) -> LoopLag:
        """The p99 and maximum lag of the window, and how often the loop was blocked in it."""
        # Oldest first, the ring's stamps rise: the window is its tail.
        cut = self._next
        stamps = self._stamps[cut:] + self._stamps[:cut]
        first = bisect.bisect_left(stamps, time.monotonic() - self.window)
        lags = sorted((self._lags[cut:] + self._lags[:cut])[first:])
        p99 = lags[math.ceil(0.99 * len(lags)) - 1] if lags else 0.0
        return LoopLag(
            lag_p99_ms=round(p99 * 1000, 2),
            lag_max_ms=round(lags[-1] * 1000, 2) if lags else 0.0,
            window_s=round(self.window),
            blocked_episodes=len(lags) - bisect.bisect_right(lags, self.threshold),
            threshold_ms=round(self.threshold * 1000, 2),
        )

    # --- on the loop ------------------------------------------------------------------------

    def _tick(self) -> None:
        now = time.monotonic()
        beat = self._beat
        # The loop may run a timer up to its clock resolution early.
        lag = max(0.0, now - beat - self.tick)
        index = self._next
        self._lags[index] = lag
        self._stamps[index] = now
        self._next = index + 1 if index + 1 < self._size else 0
        if lag > self.threshold:
            self._late(beat, lag, now)
        else:
            self._beat = now
        if self._loop is not None:
            self._timer = self._loop.call_later(self.tick, self._tick)

    def _late(self, beat: float, lag: float, now: float) -> None:
        with self._lock:
            seen = self._flagged == beat
            self._beat = now
        if not seen:
            # Over and done between two looks of the watchdog: no stack to show.
            log.warning("event loop blocked for %.0f ms (too briefly for the watchdog to see "
                        "what it was running)", lag * 1000)

    # --- on the watchdog thread -------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stopping.wait(WATCHDOG_SECONDS):
            try:
                self._look()
            except Exception:  # a watchdog that dies would stay silent for good
                log.exception("the event loop's watchdog failed to look")

    def _look(self) -> None:
        beat = self._beat
        flagged = self._flagged
        if flagged is not None:
            if beat != flagged:
                log.info("event loop running again after being blocked for %.0f ms",
                         max(0.0, beat - flagged - self.tick) * 1000)
                self._flagged = None
            return
        overdue = time.monotonic() - beat - self.tick
        if overdue <= self.threshold:
            return
        with self._lock:
            if self._beat != beat:
                return  # it ran meanwhile; a late tick speaks for itself
            self._flagged = beat
        frame = sys._current_frames().get(self._loop_thread)
        stack = ("".join(traceback.format_stack(frame, limit=STACK_FRAMES)).rstrip()
                 if frame is not None else "  (its thread has no stack)")
        log.warning("event loop blocked for at least %.0f ms; it was running:\n%s",
                    overdue * 1000, stack)

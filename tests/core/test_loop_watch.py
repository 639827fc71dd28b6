"""The loop watch: how late the event loop runs, and one warning naming whatever blocked it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterator

import pytest

from kiosk import loop_watch
from kiosk.loop_watch import TICK_SECONDS, LoopWatch

LOGGER = "kiosk.loop_watch"


@contextlib.contextmanager
def watching(threshold: float = 0.25, window: float = 300.0) -> Iterator[LoopWatch]:
    watch = LoopWatch(threshold, window=window)
    watch.start()
    try:
        yield watch
    finally:
        watch.stop()


def a_disk_that_takes(seconds: float) -> None:
    """What a synchronous commit on a slow SD card does to the loop."""
    time.sleep(seconds)


async def block_the_loop(seconds: float) -> None:
    asyncio.get_running_loop().call_soon(a_disk_that_takes, seconds)
    await asyncio.sleep(0)  # the block runs here
    await asyncio.sleep(0.3)  # and the loop is back for a few ticks


def records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == LOGGER]


async def test_a_synchronous_block_shows_in_the_p99_and_the_maximum() -> None:
    with watching(threshold=0.2) as watch:
        await asyncio.sleep(0.2)
        await block_the_loop(0.3)
        lag = watch.figures()
    # The block may begin up to one tick before the ticker was due.
    assert lag.lag_max_ms >= (0.3 - TICK_SECONDS) * 1000
    assert lag.lag_p99_ms == lag.lag_max_ms  # fewer than 100 ticks: the worst is the p99
    assert lag.blocked_episodes == 1
    assert (lag.window_s, lag.threshold_ms) == (300, 200.0)


async def test_a_long_block_logs_one_warning_with_the_blocker_then_one_line_when_it_is_over(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    with watching(threshold=0.25) as watch:
        await asyncio.sleep(0.1)
        await block_the_loop(1.0)
        lag = watch.figures()
    warning, back = records(caplog)
    assert warning.levelno == logging.WARNING
    assert "event loop blocked for at least" in warning.getMessage()
    assert "a_disk_that_takes" in warning.getMessage()
    assert back.levelno == logging.INFO
    assert "running again after being blocked for" in back.getMessage()
    lasted = float(back.getMessage().split("blocked for ")[1].split(" ms")[0])
    assert 1000 - TICK_SECONDS * 1000 <= lasted <= lag.lag_max_ms + 1
    assert lag.blocked_episodes == 1


async def test_a_loop_that_keeps_up_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    with watching(threshold=0.25) as watch:
        await asyncio.sleep(0.6)
        lag = watch.figures()
    assert records(caplog) == []
    assert lag.blocked_episodes == 0 and 0 <= lag.lag_p99_ms <= lag.lag_max_ms < 250


async def test_a_stall_between_two_looks_of_the_watchdog_is_still_logged_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loop_watch, "WATCHDOG_SECONDS", 30.0)  # it never looks in time
    caplog.set_level(logging.INFO, logger=LOGGER)
    with watching(threshold=0.25):
        await block_the_loop(0.4)
    (warning,) = records(caplog)
    assert warning.levelno == logging.WARNING
    assert "too briefly for the watchdog" in warning.getMessage()


async def test_the_window_forgets_old_lags() -> None:
    with watching(threshold=0.2, window=1.0) as watch:
        await block_the_loop(0.3)
        assert watch.figures().lag_max_ms >= (0.3 - TICK_SECONDS) * 1000
        await asyncio.sleep(1.2)
        lag = watch.figures()
    assert lag.lag_max_ms < 200 and lag.blocked_episodes == 0
    assert lag.window_s == 1


async def test_stopping_ends_the_ticker_and_the_watchdog_thread() -> None:
    with watching() as watch:
        await asyncio.sleep(0.15)
    ticks = watch.figures()
    await asyncio.sleep(0.15)
    assert watch.figures() == ticks
    assert "loop watchdog" not in [thread.name for thread in threading.enumerate()]


def test_figures_before_the_first_tick_are_zero() -> None:
    lag = LoopWatch(0.25).figures().as_dict()
    assert lag == {"lag_p99_ms": 0.0, "lag_max_ms": 0.0, "window_s": 300,
                   "blocked_episodes": 0, "threshold_ms": 250.0}

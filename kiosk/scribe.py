"""The scribe: the one thread that writes the sale ledger, in order, off the event loop.

A commit with synchronous=FULL waits for the disk: a few milliseconds on this machine, 2-20 ms
and a tail of 100 ms or more on a Pi's SD card, four times a sale. The event loop must not
wait that long: it is what hears a technician, answers the touchscreen and keeps the card
reader's session alive. So the sale engine hands each write to the scribe and awaits it. The
scribe is one thread, so writes are committed in the order they were handed over, and the
engine awaits each before its next physical step: a transition is still durable before the
motor starts, but the loop goes on with everything else meanwhile.

The scribe's thread has a database connection of its own (see :meth:`Database.ledger_engine`),
so a flood of technician requests holding every pooled connection cannot keep a sale from
being recorded.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class Scribe:
    """One worker thread; ``await scribe(work, *args)`` runs ``work`` there and returns its
    result (or raises what it raised)."""

    def __init__(self, name: str = "ledger scribe") -> None:
        self._name = name
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name,
                                        initializer=self._claim)
        self._thread: int | None = None

    def _claim(self) -> None:
        self._thread = threading.get_ident()

    def here(self) -> bool:
        """Whether the caller runs on the scribe's own thread."""
        return threading.get_ident() == self._thread

    async def __call__(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self.here():  # already on the scribe (a write that reads): no queueing behind itself
            return work(*args, **kwargs)
        # Cancelling the awaiting task does not stop a write already begun: the ledger then
        # holds what the thread committed, which is what recovery goes by.
        return await asyncio.wrap_future(self.submit(work, *args, **kwargs))

    def submit(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Queue ``work`` from any thread without waiting for it."""
        return self._pool.submit(partial(work, *args, **kwargs))

    def close(self) -> None:
        """Finish what was handed over, then end the thread."""
        self._pool.shutdown(wait=True)

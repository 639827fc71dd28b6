"""How often logins are tried: a few in a row from one address, then one every few seconds;
and all addresses together no more often than the kiosk can spare argon2 work for.

Checked before a login does anything else (no hashing, no database), and refused with 429, a
``Retry-After`` header and the code ``rate_limited``. Refusals are not audited one by one (a
flood would fill the audit log): a warning is logged once per address and episode instead.
Memory is bounded: the addresses that tried last are kept, the oldest forgotten (an address
forgotten gets a fresh burst, which the cap on all addresses still bounds).
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request

from kiosk.api.errors import ApiError

log = logging.getLogger(__name__)

#: Tries in a row from one address: a technician who mistypes their secret a few times still
#: reaches the lockout's own answer (after five failures) rather than this one.
BURST = 5
#: ... then one more try every this many seconds: 300 an hour from one address.
REFILL_SECONDS = 12.0
#: Addresses remembered.
ADDRESSES_KEPT = 4096
#: Tries in a row from all addresses together ...
ALL_BURST = 10
#: ... then one a second: a verification costs about 0.15 s of CPU here and several times
#: that on a Pi, so a storm from any number of addresses takes at most about half a core.
ALL_REFILL_SECONDS = 1.0


@dataclass
class _Bucket:
    """Tries that may be made now (a fraction: one refills over ``refill`` seconds)."""

    tokens: float
    at: float
    #: Refusing since the last try let through: a warning was logged for this episode.
    refusing: bool = False

    def wait(self, now: float, burst: int, refill: float) -> float:
        """Seconds until a try may be made; 0 if one may be made now."""
        self.tokens = min(float(burst), self.tokens + (now - self.at) / refill)
        self.at = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) * refill


class LoginLimit:
    """Token buckets: one per client address and one for all of them."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._addresses: OrderedDict[str, _Bucket] = OrderedDict()
        self._all = _Bucket(float(ALL_BURST), clock())

    def admit(self, address: str) -> None:
        """Take a try for ``address``, or raise a 429 ``ApiError`` saying when to try again."""
        now = self._clock()
        bucket = self._addresses.pop(address, None) or _Bucket(float(BURST), now)
        self._addresses[address] = bucket  # the newest last
        while len(self._addresses) > ADDRESSES_KEPT:
            self._addresses.popitem(last=False)
        own = bucket.wait(now, BURST, REFILL_SECONDS)
        everyone = self._all.wait(now, ALL_BURST, ALL_REFILL_SECONDS)
        if own == 0 and everyone == 0:
            bucket.tokens -= 1
            self._all.tokens -= 1
            bucket.refusing = self._all.refusing = False
            return
        # Nothing is taken from a bucket that had a try left: an address refused because of
        # everyone else keeps its own tries for when the storm is over.
        if own > 0:
            if not bucket.refusing:
                log.warning("login attempts from %s refused: more than %d in a row; not logged "
                            "again until one from there is let through", address, BURST)
            bucket.refusing = True
            message = "too many login attempts from this address"
        else:
            if not self._all.refusing:
                log.warning("login attempts refused: more than %d in a row from all addresses "
                            "together (from %s now); not logged again until one is let "
                            "through", ALL_BURST, address)
            self._all.refusing = True
            message = "too many login attempts on this kiosk"
        seconds = max(1, math.ceil(max(own, everyone)))
        raise ApiError(429, "rate_limited", f"{message}; try again in {seconds} s",
                       headers={"Retry-After": str(seconds)})


def limit_of(request: Request) -> LoginLimit:
    """The app's login limit, made at its first login."""
    state = request.app.state
    limit: LoginLimit | None = getattr(state, "login_limit", None)
    if limit is None:
        limit = state.login_limit = LoginLimit()
    return limit


async def admit(request: Request) -> None:
    """Dependency of the login route. Asynchronous though it never waits: FastAPI would run a
    plain function in a worker thread, and the buckets are the event loop's alone."""
    address = request.client.host if request.client else "unknown"
    limit_of(request).admit(address)

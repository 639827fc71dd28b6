"""Deadlines for the card driver's waits on the Qibixx interface; every wait has one."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from drivers.registry import DeviceUrl, DeviceUrlError


@dataclass(frozen=True)
class ReaderTiming:
    """Deadlines and retry pacing in seconds; each is also a URL parameter of the same name."""

    #: An answer the interface gives at once: the version line, ``d,STATUS,IDLE`` after
    #: ``D,READER,1`` or ``D,END``, ``d,STATUS,VEND`` after ``D,REQ``.
    reply_timeout: float = 3.0
    #: ``d,STATUS,INIT`` after ``D,2`` or a reader reset: the interface first sets the reader up
    #: over MDB, which takes a few polls.
    startup_timeout: float = 10.0
    #: After ``D,REQ,-1``, how long a result that crossed the cancel may still arrive. The next
    #: vend request waits this long so that it cannot take a late answer for its own.
    settle: float = 0.5
    #: First and longest pause between reconnect attempts (exponential backoff between them).
    retry_initial: float = 0.25
    retry_max: float = 10.0

    @classmethod
    def from_url(cls, url: DeviceUrl) -> ReaderTiming:
        """Read the timing parameters of a device URL; absent ones keep their defaults."""
        defaults = cls()
        return cls(
            **{f.name: seconds_param(url, f.name, getattr(defaults, f.name)) for f in fields(cls)}
        )

    @classmethod
    def parameter_names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls))


def seconds_param(url: DeviceUrl, key: str, default: float) -> float:
    """A duration in seconds from a URL parameter; the error names the parameter and the URL."""
    raw = url.params.get(key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise DeviceUrlError(
            f"parameter {key}={raw!r} in {url.raw!r} is not a number of seconds"
        ) from None
    if not math.isfinite(value) or value < 0:
        raise DeviceUrlError(f"parameter {key}={raw!r} in {url.raw!r} must be 0 or more seconds")
    return value

"""Device URLs, and the table from a URL's scheme to the code that builds the device.

``qibixx:///dev/ttyACM0?baud=115200`` names a driver and where its device is;
``sim://`` names the device's simulator, to which the *real* driver is then connected.
Targets are imported only when used, so a kiosk without a fingerprint reader never imports
the fingerprint code.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qsl, urlsplit

from drivers.base import Device, DeviceKind, DeviceUnavailable, Simulator

#: URL scheme -> "module:callable", per kind of device. A driver target is a Device class
#: with a ``from_url(url)`` class method; a ``sim`` target is an :class:`Attach` function.
SCHEMES: Mapping[DeviceKind, Mapping[str, str]] = {
    DeviceKind.VENDING: {
        "gpio-spiral": "drivers.vending.gpio_spiral:GpioSpiralMechanism",
        "sim": "simulators.vending:attach",
    },
    DeviceKind.CARD: {
        "qibixx": "drivers.card.qibixx:QibixxCardReader",
        "sim": "simulators.card:attach",
    },
    DeviceKind.FINGERPRINT: {
        "r30x": "drivers.fingerprint.r30x:R30xFingerprintReader",
        "sim": "simulators.fingerprint:attach",
    },
}


class DeviceUrlError(ValueError):
    """A device URL that cannot name any device."""


@dataclass(frozen=True)
class DeviceUrl:
    """A parsed device URL: ``scheme://[host]/path?key=value``."""

    raw: str
    scheme: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)

    def param(self, key: str, default: str) -> str:
        return self.params.get(key, default)

    def int_param(self, key: str, default: int) -> int:
        """An integer parameter; hex with ``0x`` is accepted (module addresses are hex)."""
        value = self.params.get(key)
        if value is None:
            return default
        try:
            return int(value, 0)
        except ValueError:
            raise DeviceUrlError(
                f"parameter {key}={value!r} in {self.raw!r} is not a whole number"
            ) from None

    def __str__(self) -> str:
        return self.raw


def parse_device_url(raw: str, kind: DeviceKind) -> DeviceUrl:
    """Parse and check a device URL for ``kind``; the error says what is wrong and what would do."""
    text = raw.strip()
    if "://" not in text:
        raise DeviceUrlError(
            f"{raw!r} is not a device URL; expected scheme://path, "
            f"e.g. {_example(kind)}"
        )
    try:
        parts = urlsplit(text)
        params = dict(
            parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
        )
    except ValueError as exc:
        raise DeviceUrlError(f"{raw!r} is malformed: {exc}") from None
    scheme = parts.scheme.lower()
    known = SCHEMES[kind]
    if scheme not in known:
        raise DeviceUrlError(
            f"unknown scheme {scheme!r} for the {kind} device; known: {', '.join(sorted(known))}"
        )
    # "r30x:///dev/ttyUSB0" has an empty host and the device path; "r30x://dev/ttyUSB0" is a
    # common slip that would silently open "/ttyUSB0", so put the host back in front.
    path = parts.path if not parts.netloc else f"/{parts.netloc}{parts.path}"
    if scheme != "sim" and kind is not DeviceKind.VENDING and not path:
        raise DeviceUrlError(f"{raw!r} names no serial port, e.g. {_example(kind)}")
    return DeviceUrl(raw=text, scheme=scheme, path=path, params=params)


def _example(kind: DeviceKind) -> str:
    return {
        DeviceKind.VENDING: "gpio-spiral://?layout=slots.toml",
        DeviceKind.CARD: "qibixx:///dev/ttyACM0",
        DeviceKind.FINGERPRINT: "r30x:///dev/serial0?baud=57600",
    }[kind]


@dataclass
class Attached:
    """A built driver, and the simulator standing in for its hardware when the URL was sim://."""

    driver: Device
    simulator: Simulator | None = None


class Attach(Protocol):
    """A simulator module's ``attach``: start the simulator and build the real driver on it."""

    def __call__(self, url: DeviceUrl, state_dir: Path) -> Attached: ...


def check(kind: DeviceKind, url: DeviceUrl) -> None:
    """Check a real device's URL (its parameters, its layout file) without touching hardware.

    Drivers validate when constructed and talk to the device only in ``open()``, so building
    one and dropping it is a dry run. ``sim://`` URLs are checked when their simulator starts.
    Raises :class:`DeviceUrlError` (or another ValueError) saying what is wrong.
    """
    if url.scheme == "sim":
        return
    try:
        build(kind, url, Path("."))
    except DeviceUnavailable:
        return  # a driver that is not installed is reported offline at start-up, not here


def build(kind: DeviceKind, url: DeviceUrl, state_dir: Path) -> Attached:
    """Build (not open) the device a URL names. ``state_dir`` is where simulators keep state.

    Raises :class:`DeviceUnavailable` when the code for the scheme is not installed.
    """
    target = SCHEMES[kind][url.scheme]
    module_name, _, attr = target.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise DeviceUnavailable(
            str(kind), f"no driver for {url.scheme}:// is installed ({exc})"
        ) from None
    if url.scheme == "sim":
        attached: Attached = factory(url, state_dir)
        return attached
    driver: Device = factory.from_url(url)
    return Attached(driver)

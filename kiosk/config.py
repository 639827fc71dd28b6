"""Settings: ``KIOSK_*`` environment variables over an optional TOML file named by ``KIOSK_CONFIG``.

With nothing configured the kiosk runs for a developer: every device simulated, the database
under ./var, demo products. A production configuration names real devices.
"""

from __future__ import annotations

import os
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from drivers.base import DeviceKind
from drivers.registry import DeviceUrl, check, parse_device_url
from drivers.vending.layout import default_layout, load_layout, override_timing

Network = IPv4Network | IPv6Network
Seconds = Annotated[float, Field(gt=0, le=3600)]

LOOPBACK: tuple[Network, ...] = (ip_network("127.0.0.0/8"), ip_network("::1/128"))


class ConfigError(Exception):
    """A setting that stops the start-up; the message is one line naming the key."""


class Settings(BaseSettings):
    """Everything the kiosk can be told. Every field is ``KIOSK_<NAME>`` or ``name`` in TOML."""

    model_config = SettingsConfigDict(env_prefix="KIOSK_", extra="forbid", frozen=True)

    environment: Literal["development", "production"] = "development"
    database: Path = Path("var/kiosk.db")
    #: Where simulators keep what a real device keeps across power cycles (fingerprint flash).
    state_dir: Path = Path("var")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)

    vending: Annotated[DeviceUrl, NoDecode] = Field(default="sim://", validate_default=True)
    card: Annotated[DeviceUrl, NoDecode] = Field(default="sim://", validate_default=True)
    fingerprint: Annotated[DeviceUrl, NoDecode] = Field(default="sim://", validate_default=True)

    #: Networks whose browsers may use the customer API besides the kiosk's own (loopback).
    trusted_networks: Annotated[tuple[Network, ...], NoDecode] = ()
    #: Networks from which technicians may reach the maintenance page besides loopback.
    technician_networks: Annotated[tuple[Network, ...], NoDecode] = ()
    #: Host names the kiosk answers to besides its addresses and localhost (kiosk.local ...).
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    #: Web origins other than the kiosk's own allowed to call the API from a browser.
    allowed_origins: Annotated[tuple[str, ...], NoDecode] = ()

    #: How long a technician stays logged in on the maintenance page.
    session_hours: Annotated[float, Field(gt=0, le=24 * 7)] = 8.0
    #: The currency prices are in (ISO 4217); money is always integer cents of it.
    currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")
    #: How long a customer has to present a card or a finger before the sale is cancelled.
    payment_timeout: Seconds = 60.0
    #: How long a whole vend may take before its outcome is treated as unknown.
    dispense_timeout: Seconds = 60.0
    #: Deadline for a reader to confirm a capture, a void or a cancel.
    settle_timeout: Seconds = 10.0
    #: An event loop held up longer than this is logged with what held it (and counted).
    loop_lag_warning: Seconds = 0.25

    @field_validator("vending", "card", "fingerprint", mode="before")
    @classmethod
    def _device_url(cls, value: object, info: Any) -> DeviceUrl:
        if isinstance(value, DeviceUrl):
            return value
        if not isinstance(value, str):
            raise ValueError("must be a device URL string")
        kind = DeviceKind(info.field_name)
        try:
            url = parse_device_url(value, kind)
            check(kind, url)
        except ValueError as exc:  # DeviceUrlError, or a driver's own (a layout file's) error
            raise ValueError(str(exc)) from None
        return url

    @field_validator("dispense_timeout")
    @classmethod
    def _dispense_timeout_outlasts_a_vend(cls, value: float, info: ValidationInfo) -> float:
        # Shorter than a vend the layout allows, every slow but good vend would end "outcome
        # unknown": money returned, slot flagged, though the customer has the product.
        vending = info.data.get("vending")
        longest = _longest_vend(vending) if isinstance(vending, DeviceUrl) else None
        if longest is not None and value <= longest:
            raise ValueError(
                f"{value:g} s is shorter than one vend may take with the vending timing of "
                f"{vending.raw if isinstance(vending, DeviceUrl) else ''} ({longest:g} s: a turn, "
                "the wait for the drop and every nudge); make it longer, or the timing shorter"
            )
        return value

    @field_validator("trusted_networks", "technician_networks", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        # An environment variable reads naturally as "192.168.1.0/24,10.0.0.0/8".
        parts = value.split(",") if isinstance(value, str) else value
        if not isinstance(parts, list | tuple):
            raise ValueError("must be a list of networks like 192.168.1.0/24")
        networks = []
        for part in parts:
            text = str(part).strip()
            if not text:
                continue
            try:
                networks.append(ip_network(text))
            except ValueError:
                raise ValueError(f"{text!r} is not a network like 192.168.1.0/24") from None
        return tuple(networks)

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _hosts(cls, value: object) -> object:
        parts = value.split(",") if isinstance(value, str) else value
        if not isinstance(parts, list | tuple):
            raise ValueError("must be a list of host names like kiosk.local")
        return tuple(str(part).strip().lower() for part in parts if str(part).strip())

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        parts = value.split(",") if isinstance(value, str) else value
        if not isinstance(parts, list | tuple):
            raise ValueError("must be a list of origins like https://kiosk.example")
        origins = tuple(str(part).strip().rstrip("/") for part in parts if str(part).strip())
        for origin in origins:
            if not origin.startswith(("http://", "https://")) or origin.count("/") != 2:
                raise ValueError(f"{origin!r} is not an origin like https://kiosk.example")
        return origins

    @model_validator(mode="after")
    def _production_uses_hardware(self) -> Settings:
        if self.environment == "production":
            for kind in DeviceKind:
                url: DeviceUrl = getattr(self, kind.value)
                if url.scheme == "sim":
                    raise ValueError(
                        f"{kind.value} is sim:// but environment is production; "
                        "name the real device"
                    )
        return self

    def device_url(self, kind: DeviceKind) -> DeviceUrl:
        url: DeviceUrl = getattr(self, kind.value)
        return url

    @property
    def simulated(self) -> bool:
        return any(self.device_url(kind).scheme == "sim" for kind in DeviceKind)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("KIOSK_CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)


def _longest_vend(url: DeviceUrl) -> float | None:
    """The longest one vend may take with this vending URL's layout and timing, if known."""
    if url.scheme not in ("sim", "gpio-spiral"):
        return None
    path = url.params.get("layout") or (url.path if url.scheme == "gpio-spiral" else "")
    try:
        layout = load_layout(Path(path)) if path else default_layout()
        return override_timing(layout, url.params, url.raw).timing.longest_vend
    except ValueError:
        return None  # the device URL's own check (or the simulator) says what is wrong


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, turning any problem into a :class:`ConfigError` of one line."""
    config_file = os.environ.get("KIOSK_CONFIG")
    if config_file and not Path(config_file).is_file():
        raise ConfigError(f"KIOSK_CONFIG: {config_file} is not a readable file")
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_first_problem(exc)) from None
    except ValueError as exc:  # a TOML syntax error surfaces as a ValueError subclass
        raise ConfigError(f"KIOSK_CONFIG: {config_file}: {exc}") from None


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors()[0]
    field = str(error["loc"][0]) if error["loc"] else ""
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"{field}: unknown setting (see the README for the settings there are)"
    key = f"KIOSK_{field.upper()} ({field})" if field else "configuration"
    value = error.get("input")
    shown = f" (got {value!r})" if isinstance(value, str | int | float) and field else ""
    more = f"; and {len(exc.errors()) - 1} more problem(s)" if len(exc.errors()) > 1 else ""
    return f"{key}: {message}{shown}{more}"

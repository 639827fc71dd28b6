"""The slot layout: which GPIO pins turn which spiral, how it reports home, and the time limits.

A layout is a TOML file named by ``gpio-spiral://?layout=PATH``. It is checked completely when
it is loaded, so a wiring mistake stops the kiosk at start-up with the file and the key to fix
instead of turning the wrong motor later. :data:`DEFAULT_LAYOUT_TOML` is the demo kiosk's
layout (12 slots A1..C4 on a row/column matrix) and doubles as the annotated example.

Motors are wired ``direct`` (one output per motor: ``slots.A1 = { motor = "GPIO5", home =
"GPIO6" }``) or as a ``matrix`` (``motors.rows`` and ``motors.columns`` name output pins; a slot
picks one row and one column, and its motor runs while both are active). Home switches belong
to a slot (``home``) or, in a matrix, to a whole row (``home_switches.rows``): the row's line
then reports the motor being driven in that row.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any, Literal, NoReturn, cast

from gpiozero.pins.pi import PiBoardInfo

Wiring = Literal["direct", "matrix"]
Pull = Literal["up", "down", "none"]

#: The settings in ``[timing]``; the same names override them in the device URL.
TIMING_KEYS = ("start_limit", "turn_limit", "drop_limit", "nudges", "nudge_fraction")
#: Seconds a blocked beam gets to clear before a vend is refused (a product still falling).
BEAM_GRACE = 0.5

_SLOT_CODE = re.compile(r"^[A-Z0-9]{1,8}$")


class LayoutError(ValueError):
    """A layout that cannot describe a mechanism. The message names the file and the key."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        super().__init__(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")
        self.source = source
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class Timing:
    """How long each step of a vend may take, and how to nudge a product that hangs."""

    #: Seconds from motor start until the home switch must have opened (else: motor missing).
    start_limit: float = 1.0
    #: Seconds from motor start until the spiral must be home again (else: jammed).
    turn_limit: float = 8.0
    #: Seconds to wait for the drop beam after a turn or a nudge.
    drop_limit: float = 3.0
    #: Extra partial turns when no product was seen to drop.
    nudges: int = 3
    #: Length of one nudge, as a fraction of the slot's last measured revolution.
    nudge_fraction: float = 0.25

    @property
    def longest_vend(self) -> float:
        """Seconds one vend may take at most: a product still falling from the vend before,
        a whole turn, the wait for the drop, then every nudge with its own wait. A revolution
        is at most ``turn_limit``, so a nudge is at most that fraction of it."""
        grace = min(BEAM_GRACE, self.drop_limit)
        nudge = self.nudge_fraction * self.turn_limit + self.drop_limit
        return grace + self.turn_limit + self.drop_limit + self.nudges * nudge


@dataclass(frozen=True)
class DropBeam:
    """The infrared beam across the delivery bin."""

    pin: str
    #: The internal resistor on the line: "none" when the sensor drives it both ways.
    pull: Pull
    #: True when the line reads high while something interrupts the beam.
    blocked_high: bool

    @property
    def pull_up(self) -> bool | None:
        """The value for gpiozero's ``pull_up`` argument."""
        return {"up": True, "down": False, "none": None}[self.pull]


@dataclass(frozen=True)
class SlotWiring:
    """The pins of one slot's motor and home switch."""

    code: str
    #: Outputs that must all be active for the motor to run. The first one switches the power
    #: (the motor itself, or the matrix row); the others (the column) only select.
    motor: tuple[str, ...]
    #: The home switch input; a matrix row's shared switch appears in several slots.
    home: str


@dataclass(frozen=True)
class Layout:
    """A validated slot layout: build it with :func:`load_layout` or :func:`parse_layout`."""

    #: Where the layout came from, for error messages: a file path or "built-in demo layout".
    source: str
    wiring: Wiring
    slots: Mapping[str, SlotWiring]
    #: Every motor, row and column output pin, and whether it is active high.
    outputs: Mapping[str, bool]
    #: True when home switches close to ground (pressed = low, internal pull-up).
    home_pull_up: bool
    home_debounce: float
    drop_beam: DropBeam
    timing: Timing

    @property
    def home_pins(self) -> tuple[str, ...]:
        """Every home switch input, once, in layout order."""
        return tuple(dict.fromkeys(slot.home for slot in self.slots.values()))

    def with_timing(self, **changes: float) -> Layout:
        """This layout with some timing settings replaced, checked like the file's own."""
        values = {key: getattr(self.timing, key) for key in TIMING_KEYS} | changes
        return replace(self, timing=_timing(_Reader(self.source), values, prefix=""))


def load_layout(path: Path) -> Layout:
    """Read and check a layout file; :class:`LayoutError` says what to fix and where."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LayoutError(str(path), "", f"cannot read the layout file ({exc.strerror})") from None
    return parse_layout(text, str(path))


def parse_layout(text: str, source: str) -> Layout:
    """Check a layout given as TOML text; ``source`` names it in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LayoutError(source, "", f"not valid TOML ({exc})") from None
    r = _Reader(source)
    r.known(data, "", {"motors", "home_switches", "drop_beam", "timing", "slots"})
    motors = r.table(data, "motors", required=True)
    homes = r.table(data, "home_switches")
    wiring = cast(Wiring, r.choice(motors, "motors.wiring", ("direct", "matrix")))
    if wiring == "direct":
        r.known(motors, "motors", {"wiring", "active_high"})
        r.known(homes, "home_switches", {"pull_up", "debounce"})
        slots, outputs = _direct_slots(r, data, r.boolean(motors, "motors.active_high", True))
    else:
        r.known(motors, "motors",
                {"wiring", "rows", "columns", "row_active_high", "column_active_high"})
        r.known(homes, "home_switches", {"pull_up", "debounce", "rows"})
        slots, outputs = _matrix_slots(r, data, motors, homes)
    return Layout(
        source=source,
        wiring=wiring,
        slots=slots,
        outputs=outputs,
        home_pull_up=r.boolean(homes, "home_switches.pull_up", True),
        home_debounce=r.number(homes, "home_switches.debounce", 0.005, 0.0, 0.1),
        drop_beam=_drop_beam(r, r.table(data, "drop_beam", required=True)),
        timing=_timing(r, r.table(data, "timing"), prefix="timing."),
    )


def override_timing(layout: Layout, params: Mapping[str, str], source: str) -> Layout:
    """Apply ``start_limit=...`` style URL parameters; other parameters are left alone."""
    changes: dict[str, float] = {}
    for key in TIMING_KEYS:
        if key in params:
            try:
                changes[key] = float(params[key])
            except ValueError:
                raise LayoutError(source, key, f"expected a number, got {params[key]!r}") from None
    try:
        return layout.with_timing(**changes)
    except LayoutError as exc:
        raise LayoutError(source, exc.key, exc.problem) from None


@cache
def default_layout() -> Layout:
    """The demo kiosk's 12 slots A1..C4; the simulator runs on it."""
    return parse_layout(DEFAULT_LAYOUT_TOML, "built-in demo layout")


# --- reading the parts ------------------------------------------------------------------------


def _direct_slots(
    r: _Reader, data: Mapping[str, Any], active_high: bool
) -> tuple[dict[str, SlotWiring], dict[str, bool]]:
    slots: dict[str, SlotWiring] = {}
    outputs: dict[str, bool] = {}
    for code, key, entry in r.slot_entries(data):
        r.known(entry, key, {"motor", "home"})
        motor = r.pin(entry, f"{key}.motor", "every slot needs the output pin that runs its motor")
        home = r.pin(entry, f"{key}.home", "every slot needs the input pin of its home switch")
        outputs[motor] = active_high
        slots[code] = SlotWiring(code, (motor,), home)
    return slots, outputs


def _matrix_slots(
    r: _Reader, data: Mapping[str, Any], motors: Mapping[str, Any], homes: Mapping[str, Any]
) -> tuple[dict[str, SlotWiring], dict[str, bool]]:
    rows = r.pin_table(motors, "motors.rows")
    columns = r.pin_table(motors, "motors.columns")
    row_homes = r.pin_table(homes, "home_switches.rows", required=False)
    for name in row_homes:
        if name not in rows:
            r.fail(f"home_switches.rows.{name}", f"there is no row {name!r} in motors.rows")
    outputs = dict.fromkeys(rows.values(), r.boolean(motors, "motors.row_active_high", True))
    outputs |= dict.fromkeys(columns.values(), r.boolean(motors, "motors.column_active_high", True))
    slots: dict[str, SlotWiring] = {}
    motor_of: dict[tuple[str, str], str] = {}
    for code, key, entry in r.slot_entries(data):
        r.known(entry, key, {"row", "column", "home"})
        row = r.name(entry, f"{key}.row", rows, "motors.rows")
        column = r.name(entry, f"{key}.column", columns, "motors.columns")
        if (row, column) in motor_of:
            r.fail(key, f"row {row} column {column} is already slot {motor_of[row, column]}; "
                        "one motor cannot turn two slots")
        motor_of[row, column] = code
        if "home" in entry and row in row_homes:
            r.fail(f"{key}.home", f"row {row} already has home_switches.rows.{row}; "
                                  "give a slot its own home switch or share the row's, not both")
        if row in row_homes:
            home = row_homes[row]
        else:
            home = r.pin(entry, f"{key}.home",
                         f"give the slot its own home switch pin, or add home_switches.rows.{row}")
        slots[code] = SlotWiring(code, (rows[row], columns[column]), home)
    return slots, outputs


def _drop_beam(r: _Reader, beam: Mapping[str, Any]) -> DropBeam:
    r.known(beam, "drop_beam", {"pin", "blocked", "pull"})
    pin = r.pin(beam, "drop_beam.pin", "the delivery bin's drop beam needs an input pin")
    blocked = r.choice(beam, "drop_beam.blocked", ("low", "high"))
    pull = r.choice(beam, "drop_beam.pull", ("up", "down", "none"))
    # gpiozero ties the active level to the pull: a pulled-up line can only be active low.
    if (pull, blocked) in {("up", "high"), ("down", "low")}:
        r.fail("drop_beam.pull", f"a pull-{pull} line idles {blocked}, so it cannot also read "
                                 f"{blocked} while blocked; use pull = \"none\" if the sensor "
                                 "drives the line itself")
    return DropBeam(pin, cast(Pull, pull), blocked == "high")


def _timing(r: _Reader, table: Mapping[str, Any], prefix: str) -> Timing:
    r.known(table, prefix.rstrip("."), set(TIMING_KEYS))
    d = Timing()
    timing = Timing(
        start_limit=r.number(table, f"{prefix}start_limit", d.start_limit, 0.01, 60.0),
        turn_limit=r.number(table, f"{prefix}turn_limit", d.turn_limit, 0.01, 120.0),
        drop_limit=r.number(table, f"{prefix}drop_limit", d.drop_limit, 0.01, 60.0),
        nudges=int(r.number(table, f"{prefix}nudges", d.nudges, 0, 10, whole=True)),
        nudge_fraction=r.number(table, f"{prefix}nudge_fraction", d.nudge_fraction, 0.05, 1.0),
    )
    if timing.start_limit >= timing.turn_limit:
        r.fail(f"{prefix}start_limit", f"{timing.start_limit} s must be shorter than "
                                       f"{prefix}turn_limit ({timing.turn_limit} s)")
    return timing


@cache
def _header() -> PiBoardInfo:
    # Every 40-pin Raspberry Pi has the same J8 header, so any such revision names the pins.
    return PiBoardInfo.from_revision(0xA02082)


class _Reader:
    """Typed access to the TOML tree; every failure names the source file and the key."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.pin_users: dict[str, str] = {}

    def fail(self, key: str, problem: str) -> NoReturn:
        raise LayoutError(self.source, key, problem)

    def known(self, table: Mapping[str, Any], key: str, allowed: set[str]) -> None:
        for name in table:
            if name not in allowed:
                where = f"{key}.{name}" if key else name
                self.fail(where, f"unknown key; expected one of {', '.join(sorted(allowed))}")

    def table(self, data: Mapping[str, Any], key: str, required: bool = False) -> dict[str, Any]:
        value = data.get(key.rsplit(".", 1)[-1])
        if value is None and not required:
            return {}
        if not isinstance(value, dict):
            self.fail(key, "missing table" if value is None else "expected a table")
        return value

    def number(self, table: Mapping[str, Any], key: str, default: float,
               low: float, high: float, whole: bool = False) -> float:
        value = table.get(key.rsplit(".", 1)[-1], default)
        kind = "a whole number" if whole else "a number"
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
            or (whole and value != int(value))
        ):
            self.fail(key, f"expected {kind} from {low:g} to {high:g}, got {value!r}")
        return float(value)

    def boolean(self, table: Mapping[str, Any], key: str, default: bool) -> bool:
        value = table.get(key.rsplit(".", 1)[-1], default)
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {value!r}")
        return value

    def choice(self, table: Mapping[str, Any], key: str, options: tuple[str, ...]) -> str:
        value = table.get(key.rsplit(".", 1)[-1], options[0])
        if value not in options:
            self.fail(key, f"expected one of {', '.join(map(repr, options))}, got {value!r}")
        return str(value)

    def pin(self, table: Mapping[str, Any], key: str, missing: str) -> str:
        """A GPIO pin by any name gpiozero knows (GPIO17, BCM17, BOARD11, 17), claimed once."""
        value = table.get(key.rsplit(".", 1)[-1])
        if value is None:
            self.fail(key, f"missing: {missing}")
        found = []
        if isinstance(value, str | int) and not isinstance(value, bool):
            name = value.strip().upper() if isinstance(value, str) else value
            found = [info for _, info in _header().find_pin(name)]
        if not found or not re.fullmatch(r"GPIO\d+", found[0].name):
            what = f"the {found[0].name} pin, not a GPIO" if found else "an unknown pin"
            self.fail(key, f"{value!r} is {what}; use a GPIO name such as \"GPIO17\" (BCM "
                           "numbering) or \"BOARD11\" (pin 11 of the 40-pin header)")
        gpio = str(found[0].name)
        if gpio in self.pin_users:
            self.fail(key, f"pin {gpio} is already used by {self.pin_users[gpio]}")
        self.pin_users[gpio] = key
        return gpio

    def pin_table(
        self, table: Mapping[str, Any], key: str, required: bool = True
    ) -> dict[str, str]:
        entries = self.table(table, key, required)
        if required and not entries:
            self.fail(key, "a matrix needs at least one entry here")
        return {str(name): self.pin(entries, f"{key}.{name}", "") for name in entries}

    def name(self, table: Mapping[str, Any], key: str, names: Mapping[str, str], where: str) -> str:
        value = table.get(key.rsplit(".", 1)[-1])
        if value is None:
            self.fail(key, f"missing: every slot needs its motor's {key.rsplit('.', 1)[-1]}")
        if str(value) not in names:
            self.fail(key, f"{value!r} is not in {where} ({', '.join(names)})")
        return str(value)

    def slot_entries(self, data: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
        slots = self.table(data, "slots", required=True)
        if not slots:
            self.fail("slots", "no slots: add one entry per spiral, e.g. A1 = { ... }")
        entries: dict[str, tuple[str, str, dict[str, Any]]] = {}
        for written, entry in slots.items():
            key = f"slots.{written}"
            code = written.strip().upper()
            if not _SLOT_CODE.match(code):
                self.fail(key, "a slot code is 1 to 8 letters and digits, e.g. A1")
            if code in entries:
                self.fail(key, f"slot {code} is already defined as {entries[code][1]}")
            if not isinstance(entry, dict):
                self.fail(key, "expected a table, e.g. { motor = \"GPIO5\", home = \"GPIO6\" }")
            entries[code] = (code, key, entry)
        return list(entries.values())


DEFAULT_LAYOUT_TOML = """\
# The demo kiosk: three trays (rows A-C) of four spirals, motors on a row/column matrix.
# Pins use BCM names (GPIO17); BOARD11 (header pin 11) works too. GPIO14/15 stay free for the
# fingerprint reader's UART (/dev/serial0); GPIO2/3 have fixed pull-ups (I2C).

[motors]
wiring = "matrix"            # or "direct": one output per motor, slots.X1 = { motor, home }
rows = { A = "GPIO5", B = "GPIO6", C = "GPIO13" }
columns = { 1 = "GPIO16", 2 = "GPIO19", 3 = "GPIO20", 4 = "GPIO21" }
row_active_high = true       # false for relay boards that switch on a low input
column_active_high = true

[home_switches]
pull_up = true               # a switch closes to ground while its spiral rests at home
debounce = 0.005             # seconds
rows = { A = "GPIO17", B = "GPIO27", C = "GPIO22" }   # one switch line per row

[drop_beam]
pin = "GPIO4"
blocked = "low"              # open-collector receivers pull the line low while the beam is cut
pull = "up"

[timing]                     # seconds; each can be overridden in the URL (?turn_limit=6)
start_limit = 1.0            # home switch must open this soon after the motor starts
turn_limit = 8.0             # spiral must be home again this soon after the motor starts
drop_limit = 3.0             # drop beam must see the product this soon after a turn
nudges = 3                   # extra partial turns when nothing dropped
nudge_fraction = 0.25        # of a revolution

[slots]
A1 = { row = "A", column = "1" }
A2 = { row = "A", column = "2" }
A3 = { row = "A", column = "3" }
A4 = { row = "A", column = "4" }
B1 = { row = "B", column = "1" }
B2 = { row = "B", column = "2" }
B3 = { row = "B", column = "3" }
B4 = { row = "B", column = "4" }
C1 = { row = "C", column = "1" }
C2 = { row = "C", column = "2" }
C3 = { row = "C", column = "3" }
C4 = { row = "C", column = "4" }
"""

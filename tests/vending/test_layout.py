"""Layout files: a wiring mistake stops start-up with the file and the key to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.base import DeviceKind, DispenseOutcome
from drivers.registry import DeviceUrlError, parse_device_url
from drivers.vending.gpio_spiral import GpioSpiralMechanism
from drivers.vending.layout import (
    DEFAULT_LAYOUT_TOML,
    LayoutError,
    default_layout,
    load_layout,
    parse_layout,
)
from simulators.vending import VendingSimulator

from .conftest import FAST, REVOLUTION

DIRECT = """
[motors]
wiring = "direct"
active_high = false
[drop_beam]
pin = "GPIO4"
[slots]
A1 = { motor = "GPIO5", home = "GPIO6" }
A2 = { motor = "GPIO13", home = "GPIO19" }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "slots.toml"
    path.write_text(text)
    return path


def layout_error(tmp_path: Path, text: str) -> LayoutError:
    path = write(tmp_path, text)
    with pytest.raises(LayoutError) as caught:
        load_layout(path)
    assert str(path) in str(caught.value)
    return caught.value


def test_the_demo_layout_has_twelve_slots_on_a_matrix() -> None:
    layout = default_layout()
    assert layout.wiring == "matrix"
    assert sorted(layout.slots) == [f"{row}{n}" for row in "ABC" for n in range(1, 5)]
    assert layout.slots["B3"].motor == ("GPIO6", "GPIO20")
    assert layout.slots["B3"].home == layout.slots["B1"].home == "GPIO27"


def test_a_direct_layout_names_one_motor_and_one_home_switch_per_slot(tmp_path: Path) -> None:
    layout = load_layout(write(tmp_path, DIRECT))
    assert layout.slots["A2"].motor == ("GPIO13",)
    assert layout.outputs == {"GPIO5": False, "GPIO13": False}
    assert layout.timing.turn_limit == 8.0


def test_an_unknown_pin_names_the_file_and_the_key(tmp_path: Path) -> None:
    error = layout_error(tmp_path, DIRECT.replace('"GPIO13"', '"GPIO99"'))
    assert error.key == "slots.A2.motor"
    assert "'GPIO99' is an unknown pin" in error.problem


def test_a_power_pin_is_not_a_gpio(tmp_path: Path) -> None:
    error = layout_error(tmp_path, DIRECT.replace('"GPIO13"', '"BOARD1"'))
    assert "3V3 pin, not a GPIO" in error.problem


def test_a_pin_used_twice_is_refused_even_under_another_name(tmp_path: Path) -> None:
    # BOARD29 is header pin 29, which is GPIO5, the motor of A1.
    error = layout_error(tmp_path, DIRECT.replace('home = "GPIO19"', 'home = "BOARD29"'))
    assert error.key == "slots.A2.home"
    assert error.problem == "pin GPIO5 is already used by slots.A1.motor"


def test_a_slot_without_a_motor_is_refused(tmp_path: Path) -> None:
    error = layout_error(tmp_path, DIRECT.replace('motor = "GPIO13", ', ""))
    assert error.key == "slots.A2.motor"
    assert error.problem.startswith("missing")


def test_a_matrix_slot_without_a_column_is_refused(tmp_path: Path) -> None:
    text = DEFAULT_LAYOUT_TOML.replace('C4 = { row = "C", column = "4" }', 'C4 = { row = "C" }')
    assert layout_error(tmp_path, text).key == "slots.C4.column"


def test_two_slots_on_one_matrix_motor_are_refused(tmp_path: Path) -> None:
    text = DEFAULT_LAYOUT_TOML.replace('C4 = { row = "C", column = "4" }',
                                         'C4 = { row = "C", column = "3" }')
    error = layout_error(tmp_path, text)
    assert error.key == "slots.C4"
    assert "already slot C3" in error.problem


def test_a_slot_cannot_have_its_own_home_switch_and_its_rows(tmp_path: Path) -> None:
    text = DEFAULT_LAYOUT_TOML.replace('C4 = { row = "C", column = "4" }',
                                         'C4 = { row = "C", column = "4", home = "GPIO23" }')
    assert layout_error(tmp_path, text).key == "slots.C4.home"


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ('turn_limit = "fast"', "timing.turn_limit"),
        ("turn_limit = -1", "timing.turn_limit"),
        ("nudges = 2.5", "timing.nudges"),
        ("nudge_fraction = true", "timing.nudge_fraction"),
        ("start_limit = 9.0", "timing.start_limit"),
        ("turn_limit = inf", "timing.turn_limit"),
    ],
)
def test_a_bad_number_names_its_key(tmp_path: Path, setting: str, key: str) -> None:
    assert layout_error(tmp_path, f"{DIRECT}\n[timing]\n{setting}\n").key == key


def test_a_misspelt_key_is_refused_not_ignored(tmp_path: Path) -> None:
    error = layout_error(tmp_path, DIRECT.replace("motor = \"GPIO13\"", "motr = \"GPIO13\""))
    assert error.key == "slots.A2.motr"
    assert "unknown key" in error.problem


def test_a_beam_cannot_be_pulled_up_and_blocked_high(tmp_path: Path) -> None:
    text = DIRECT.replace('pin = "GPIO4"', 'pin = "GPIO4"\nblocked = "high"')
    error = layout_error(tmp_path, text)
    assert error.key == "drop_beam.pull"


def test_broken_toml_and_a_missing_file_name_the_file(tmp_path: Path) -> None:
    assert "not valid TOML" in layout_error(tmp_path, "[motors\n").problem
    with pytest.raises(LayoutError, match=r"nowhere\.toml: cannot read the layout file"):
        load_layout(tmp_path / "nowhere.toml")


async def test_a_matrix_with_a_home_switch_per_slot_vends(tmp_path: Path) -> None:
    layout = parse_layout(
        """
        [motors]
        wiring = "matrix"
        rows = { A = "GPIO5", B = "GPIO6" }
        columns = { 1 = "GPIO16", 2 = "GPIO19" }
        [drop_beam]
        pin = "GPIO4"
        [slots]
        A1 = { row = "A", column = "1", home = "GPIO17" }
        A2 = { row = "A", column = "2", home = "GPIO27" }
        B2 = { row = "B", column = "2", home = "GPIO22" }
        """,
        "per-slot-homes.toml",
    ).with_timing(**FAST)
    with VendingSimulator(layout, revolution=REVOLUTION, fall_time=0.01) as sim:
        mechanism = GpioSpiralMechanism(layout, pin_factory=sim.factory)
        await mechanism.open()
        results = [await mechanism.dispense(slot) for slot in ("A2", "B2", "A1")]
        await mechanism.close()
    assert [r.outcome for r in results] == [DispenseOutcome.DELIVERED] * 3
    assert sim.stocks() == {"A1": 7, "A2": 7, "B2": 7}


async def test_a_direct_layout_with_active_low_relays_vends(tmp_path: Path) -> None:
    layout = load_layout(write(tmp_path, DIRECT)).with_timing(**FAST)
    with VendingSimulator(layout, revolution=REVOLUTION, fall_time=0.01) as sim:
        mechanism = GpioSpiralMechanism(layout, pin_factory=sim.factory)
        await mechanism.open()
        result = await mechanism.dispense("A2")
        idle_level = sim.factory.pin("GPIO13").state
        await mechanism.close()
    assert result.delivered
    assert idle_level is True  # an active-low relay is off while its input is high
    assert sim.runs("A1") == []


def test_from_url_reads_the_layout_and_applies_timing_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, DIRECT)
    url = parse_device_url(f"gpio-spiral://?layout={path}&turn_limit=6&nudges=2",
                           DeviceKind.VENDING)
    mechanism = GpioSpiralMechanism.from_url(url)
    assert mechanism.layout.timing.turn_limit == 6.0
    assert mechanism.layout.timing.nudges == 2
    assert mechanism.slots() == {"A1", "A2"}
    assert mechanism.description == str(url)


def test_from_url_accepts_the_layout_as_the_path(tmp_path: Path) -> None:
    path = write(tmp_path, DIRECT)
    url = parse_device_url(f"gpio-spiral://{path}", DeviceKind.VENDING)
    assert GpioSpiralMechanism.from_url(url).layout.source == str(path)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "names no layout file"),
        ("?layout={path}&turn_limt=6", "unknown parameter turn_limt"),
        ("?layout={path}&turn_limit=soon", "turn_limit: expected a number"),
        ("?layout={path}&start_limit=10", "start_limit: 10.0 s must be shorter"),
    ],
)
def test_from_url_refuses_what_it_cannot_use(tmp_path: Path, query: str, message: str) -> None:
    url = parse_device_url("gpio-spiral://" + query.format(path=write(tmp_path, DIRECT)),
                           DeviceKind.VENDING)
    with pytest.raises((DeviceUrlError, LayoutError), match=message):
        GpioSpiralMechanism.from_url(url)

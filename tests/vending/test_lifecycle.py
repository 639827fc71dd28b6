"""Opening, closing and the sim:// and console entry points around the vending driver."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from gpiozero import DigitalOutputDevice

from drivers.base import DeviceError, DeviceKind, HealthState
from drivers.registry import DeviceUrlError, build, parse_device_url
from drivers.vending.gpio_spiral import GpioSpiralMechanism
from drivers.vending.layout import DEFAULT_LAYOUT_TOML, default_layout
from simulators.vending import VendingSimulator, attach, console

from .conftest import FAST, motor_started


async def test_health_is_ok_once_the_pins_are_claimed(
    mechanism: GpioSpiralMechanism,
) -> None:
    assert mechanism.health.state is HealthState.OK
    assert mechanism.health.detail["pins"] == "MockFactory"


async def test_a_busy_pin_leaves_the_mechanism_offline_until_it_is_freed(
    simulator: VendingSimulator,
) -> None:
    squatter = DigitalOutputDevice("GPIO5", pin_factory=simulator.factory)
    mechanism = GpioSpiralMechanism(simulator.layout.with_timing(**FAST),
                                    pin_factory=simulator.factory, claim_retry=0.02)
    await mechanism.open()
    assert mechanism.health.state is HealthState.OFFLINE
    assert "cannot claim the GPIO pins" in mechanism.health.reason

    squatter.close()
    for _ in range(100):
        if mechanism.health.ok:
            break
        await asyncio.sleep(0.01)
    assert mechanism.health.ok
    assert (await mechanism.dispense("A1")).delivered
    await mechanism.close()


async def test_close_switches_off_releases_the_pins_and_can_be_repeated(
    simulator: VendingSimulator,
) -> None:
    first = GpioSpiralMechanism(simulator.layout, pin_factory=simulator.factory)
    await first.open()
    await first.close()
    await first.close()
    assert first.health.state is HealthState.OFFLINE

    second = GpioSpiralMechanism(simulator.layout, pin_factory=simulator.factory)
    await second.open()
    assert second.health.ok
    await second.close()


async def test_closing_in_the_middle_of_a_vend_stops_the_motor_and_says_the_outcome_is_unknown(
) -> None:
    with VendingSimulator(revolution=2.0) as simulator:
        mechanism = GpioSpiralMechanism(simulator.layout, pin_factory=simulator.factory)
        await mechanism.open()
        started = motor_started(mechanism)
        vend = asyncio.create_task(mechanism.dispense("B4"))
        await started.wait()

        await mechanism.close()

        assert simulator.running() == frozenset()
        with pytest.raises(DeviceError, match="whether a product fell is unknown"):
            await vend


def test_the_registry_builds_the_driver_from_a_gpio_spiral_url(tmp_path: Path) -> None:
    layout = tmp_path / "slots.toml"
    layout.write_text(DEFAULT_LAYOUT_TOML)
    url = parse_device_url(f"gpio-spiral://?layout={layout}", DeviceKind.VENDING)

    attached = build(DeviceKind.VENDING, url, tmp_path)

    assert isinstance(attached.driver, GpioSpiralMechanism)
    assert attached.simulator is None
    assert attached.driver.slots() == default_layout().slots.keys()


def test_the_simulator_counts_stock_and_restocks() -> None:
    with VendingSimulator(stock=3) as simulator:
        assert simulator.stocks()["C4"] == 3
        simulator.restock("c4", 10)
        assert simulator.stock("C4") == 10
        with pytest.raises(ValueError, match="no slot 'Q1'"):
            simulator.restock("Q1", 1)
        with pytest.raises(ValueError):
            simulator.set_fault("A1", "on_fire")
        simulator.set_fault("A1", "jammed")
        assert simulator.faults() == {"A1": "jammed"}
        simulator.clear_fault("A1")
        assert simulator.snapshot()["slots"]["A1"]["fault"] is None  # type: ignore[index]


async def test_sim_url_attaches_the_real_driver_to_a_fresh_simulator(tmp_path: Path) -> None:
    url = parse_device_url("sim://?revolution=0.2&stock=2&start_limit=0.2&turn_limit=0.8",
                           DeviceKind.VENDING)
    attached = build(DeviceKind.VENDING, url, tmp_path)
    driver, simulator = attached.driver, attached.simulator
    assert isinstance(driver, GpioSpiralMechanism)
    assert isinstance(simulator, VendingSimulator)
    try:
        await driver.open()
        assert (await driver.dispense("A1")).delivered
        assert simulator.stocks()["A1"] == 1
        assert driver.layout.timing.turn_limit == 0.8
    finally:
        await driver.close()
        simulator.close()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?speed=2", "unknown parameter speed"),
        ("?revolution=slow", "revolution='slow'"),
        ("?revolution=9", "shorter than turn_limit"),
    ],
)
def test_sim_url_refuses_what_it_cannot_use(tmp_path: Path, query: str, message: str) -> None:
    with pytest.raises(DeviceUrlError, match=message):
        attach(parse_device_url(f"sim://{query}", DeviceKind.VENDING), tmp_path)


def test_the_console_answers_one_line_per_command() -> None:
    commands = ["stock", "vend A1", "restock A1 2", "fault A2 jammed", "clear A2",
                "fault beam stuck_blocked", "clear beam", "test B1", "health", "vend Z9",
                "dance"]
    out = io.StringIO()

    code = console(["--revolution", "0.2", "--stock", "4"],
                   stdin=io.StringIO("\n".join([*commands, "quit", "vend A1"]) + "\n"),
                   stdout=out)

    lines = out.getvalue().splitlines()
    assert code == 0
    assert len(lines) == len(commands) + 1
    assert lines[0].startswith("A1=4 A2=4")
    assert lines[1].startswith("A1 delivered nudges=0")
    assert lines[1].endswith("stock=3")
    assert lines[2] == "A1 stock=2"
    assert lines[7].startswith("B1 delivered")
    assert "left_home_s=" in lines[7]
    assert lines[8].startswith("ok:")
    assert lines[9].startswith("error: vending: no slot 'Z9'")
    assert lines[10].startswith("error: unknown command 'dance'")
    assert lines[11] == "bye"


def test_the_console_ends_cleanly_at_end_of_input() -> None:
    out = io.StringIO()
    assert console(["--revolution", "0.05"], stdin=io.StringIO("stock\n"), stdout=out) == 0
    assert len(out.getvalue().splitlines()) == 1

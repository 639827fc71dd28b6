"""The real GPIO spiral driver against the mechanical simulator, one fault at a time."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from drivers.base import (
    DeviceEvent,
    DeviceRejected,
    DeviceUnavailable,
    DispenseOutcome,
    HealthState,
)
from drivers.vending.gpio_spiral import GpioSpiralMechanism
from simulators.vending import BeamFault, SpiralFault, VendingSimulator
from tests.waiting import eventually

from .conftest import FAST, REVOLUTION, SLACK, motor_started


async def test_a_vend_turns_one_revolution_and_delivers_one_product(
    mechanism: GpioSpiralMechanism, simulator: VendingSimulator
) -> None:
    result = await mechanism.dispense("B2")

    assert result.outcome is DispenseOutcome.DELIVERED
    assert result.nudges == 0
    assert simulator.stock("B2") == 7
    assert simulator.delivered("B2") == 1
    [run] = simulator.runs()
    assert run.slot == "B2"
    assert run.seconds == pytest.approx(REVOLUTION, abs=SLACK)
    assert result.motor_seconds == pytest.approx(run.seconds, abs=SLACK)


async def test_a_long_run_lists_the_latest_motor_runs_and_keeps_the_totals(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("simulators.vending.RUNS_KEPT", 2)
    with VendingSimulator(revolution=REVOLUTION, fall_time=0.01, drop_pulse=0.005) as simulator:
        driver = GpioSpiralMechanism(simulator.layout.with_timing(**FAST),
                                     pin_factory=simulator.factory)
        await driver.open()
        try:
            results = [await driver.dispense("A1") for _ in range(3)]
        finally:
            await driver.close()
        kept = simulator.runs("A1")
        assert len(kept) == 2
        total = simulator.motor_seconds("A1")
        assert total > sum(run.seconds for run in kept)  # the first run still counts
        assert total == pytest.approx(sum(r.motor_seconds for r in results), abs=3 * SLACK)
        assert simulator.delivered("A1") == 3

async def test_a_vend_reports_each_step_as_an_event(mechanism: GpioSpiralMechanism) -> None:
    events: list[DeviceEvent] = []
    mechanism.on_event(events.append)

    await mechanism.dispense("A1")

    names = [event.name for event in events]
    # The drop is announced the moment the beam fires, which a busy loop may hear early.
    names.remove("product_dropped")
    assert names == ["motor_started", "left_home", "returned_home", "motor_stopped",
                     "vend_finished"]
    assert events[-1].detail["outcome"] == "delivered"


async def test_a_hanging_product_is_delivered_by_one_nudge(
    mechanism: GpioSpiralMechanism, simulator: VendingSimulator
) -> None:
    simulator.set_fault("C4", SpiralFault.HANG)

    result = await mechanism.dispense("C4")

    assert result.outcome is DispenseOutcome.DELIVERED
    assert result.nudges == 1
    assert simulator.stock("C4") == 7
    _turn, nudge = simulator.runs("C4")
    assert nudge.seconds == pytest.approx(REVOLUTION * FAST["nudge_fraction"], abs=SLACK)


async def test_a_jammed_spiral_stops_its_motor_at_the_turn_limit(
    mechanism: GpioSpiralMechanism, simulator: VendingSimulator
) -> None:
    simulator.set_fault("A3", SpiralFault.JAMMED)

    result = await mechanism.dispense("A3")

    assert result.outcome is DispenseOutcome.JAMMED
    assert simulator.running() == frozenset()
    [run] = simulator.runs("A3")
    # About the limit: never much less, a little more when the loop is busy.
    assert FAST["turn_limit"] - SLACK < run.seconds < FAST["turn_limit"] + 0.15
    assert simulator.stock("A3") == 8
    assert mechanism.health.detail["slot_faults"] == {"A3": "jammed"}


async def test_a_missing_motor_is_reported_when_home_never_opens(
    mechanism: GpioSpiralMechanism, simulator: VendingSimulator
) -> None:
    simulator.set_fault("B1", SpiralFault.MOTOR_MISSING)

    result = await mechanism.dispense("B1")

    assert result.outcome is DispenseOutcome.MOTOR_MISSING
    assert simulator.running() == frozenset()
    [run] = simulator.runs("B1")
    assert FAST["start_limit"] - SLACK < run.seconds < FAST["start_limit"] + 0.15
    assert simulator.stock("B1") == 8


async def test_an_empty_spiral_is_nudged_then_reported_not_dropped(
    mechanism: GpioSpiralMechanism, simulator: VendingSimulator
) -> None:
    simulator.set_fault("A2", SpiralFault.EMPTY)

    result = await mechanism.dispense("A2")

    assert result.outcome is DispenseOutcome.NOT_DROPPED
    assert result.nudges == FAST["nudges"]
    assert len(simulator.runs("A2")) == 1 + FAST["nudges"]
    assert simulator.stock("A2") == 0
    assert simulator.delivered("A2") == 0


async def test_a_blocked_beam_refuses_the_vend_without_moving_a_motor(
    mechanism: GpioSpiralMechanism, simulator: VendingSimulator
) -> None:
    simulator.set_beam_fault(BeamFault.STUCK_BLOCKED)

    result = await mechanism.dispense("A1")

    assert result.outcome is DispenseOutcome.BEAM_BLOCKED
    assert simulator.runs() == []
    assert mechanism.health.state is HealthState.DEGRADED
    assert "blocked" in mechanism.health.reason


async def test_health_recovers_when_the_blocked_beam_clears(
    mechanism: GpioSpiralMechanism, simulator: VendingSimulator
) -> None:
    simulator.set_beam_fault(BeamFault.STUCK_BLOCKED)
    await mechanism.dispense("A1")

    simulator.set_beam_fault(None)
    await asyncio.sleep(0.01)

    assert mechanism.health.state is HealthState.OK
    assert (await mechanism.dispense("A1")).delivered


async def test_a_beam_stuck_clear_reports_not_dropped_though_the_product_fell(
    mechanism: GpioSpiralMechanism, simulator: VendingSimulator
) -> None:
    simulator.set_beam_fault(BeamFault.STUCK_CLEAR)

    result = await mechanism.dispense("C1")

    assert result.outcome is DispenseOutcome.NOT_DROPPED
    # The physical truth: products left the spiral (one, or more if a nudge ran long), unseen.
    assert simulator.delivered("C1") >= 1
    assert simulator.stock("C1") == 8 - simulator.delivered("C1")


async def test_a_spiral_resting_off_home_stops_at_the_first_home_it_reaches() -> None:
    # The nudges leave the spiral past its home switch. However briefly the switch then closes
    # on the way round (a fast spiral, a busy loop), that close is home: one more would push
    # out a second product for the price of one.
    with VendingSimulator(revolution=REVOLUTION, home_dwell=0.0001, fall_time=0.01,
                          drop_pulse=0.005) as simulator:
        mechanism = GpioSpiralMechanism(simulator.layout.with_timing(**FAST),
                                        pin_factory=simulator.factory)
        await mechanism.open()
        simulator.set_fault("B1", SpiralFault.EMPTY)
        assert (await mechanism.dispense("B1")).outcome is DispenseOutcome.NOT_DROPPED
        simulator.restock("B1", 5)

        result = await mechanism.dispense("B1")

        assert result.outcome is DispenseOutcome.DELIVERED
        assert simulator.delivered("B1") == 1 and simulator.stock("B1") == 4
        assert simulator.runs("B1")[-1].seconds < REVOLUTION
        await mechanism.close()


async def test_a_turn_from_past_home_does_not_shorten_the_nudges(
    mechanism: GpioSpiralMechanism, simulator: VendingSimulator
) -> None:
    # A busy loop switches the motor off late: the spiral coasts on past its home switch.
    coasting = [True]

    def busy(event: DeviceEvent) -> None:
        if event.name == "returned_home" and coasting[0]:
            time.sleep(0.3 * REVOLUTION)

    mechanism.on_event(busy)
    assert (await mechanism.dispense("A2")).delivered
    coasting[0] = False
    simulator.set_fault("A2", SpiralFault.HANG)

    # Back home after 0.7 of a turn: that is no revolution to size a nudge by.
    result = await mechanism.dispense("A2")

    assert result.outcome is DispenseOutcome.DELIVERED and result.nudges == 1
    assert simulator.delivered("A2") == 2


async def test_a_drop_seen_before_the_spiral_jams_counts_as_delivered(
    mechanism: GpioSpiralMechanism, simulator: VendingSimulator
) -> None:
    simulator.set_fault("B3", SpiralFault.JAMMED)
    started = motor_started(mechanism)

    async def product_falls_while_turning() -> None:
        await started.wait()
        simulator.set_beam_fault(BeamFault.STUCK_BLOCKED)
        await asyncio.sleep(0.01)
        simulator.set_beam_fault(None)

    result, _ = await asyncio.gather(mechanism.dispense("B3"), product_falls_while_turning())

    assert result.outcome is DispenseOutcome.DELIVERED
    assert result.detail["fault"] == "jammed"
    assert mechanism.health.detail["slot_faults"] == {"B3": "jammed"}


async def test_cancelling_a_vend_mid_turn_switches_the_motor_off() -> None:
    with VendingSimulator(revolution=2.0) as simulator:
        mechanism = GpioSpiralMechanism(simulator.layout.with_timing(turn_limit=5.0),
                                        pin_factory=simulator.factory)
        await mechanism.open()
        started = motor_started(mechanism)
        vend = asyncio.create_task(mechanism.dispense("A4"))
        await started.wait()
        await asyncio.sleep(0.05)
        assert simulator.running() == {"A4"}

        vend.cancel()
        with pytest.raises(asyncio.CancelledError):
            await vend

        assert simulator.running() == frozenset()
        [run] = simulator.runs("A4")
        assert run.seconds < 0.5
        simulator.revolution = REVOLUTION  # the next vend is not held up by the cancelled one
        assert (await mechanism.dispense("A1")).delivered
        await mechanism.close()


async def test_concurrent_vends_never_run_two_motors_at_once(
    mechanism: GpioSpiralMechanism, simulator: VendingSimulator
) -> None:
    # A1/A2 share a matrix row, A1/B1 a column: a second motor would show up as an overlap.
    results = await asyncio.gather(*(mechanism.dispense(slot) for slot in ("A1", "A2", "B1")))

    assert [result.outcome for result in results] == [DispenseOutcome.DELIVERED] * 3
    assert simulator.overlaps == []
    runs = sorted(simulator.runs(), key=lambda run: run.started)
    for before, after in itertools.pairwise(runs):
        assert after.started >= before.started + before.seconds


async def test_test_slot_turns_once_and_reports_its_timings(
    mechanism: GpioSpiralMechanism, simulator: VendingSimulator
) -> None:
    result = await mechanism.test_slot("C2")

    assert result.outcome is DispenseOutcome.DELIVERED
    assert result.nudges == 0
    detail = result.detail
    assert 0 < float(detail["left_home_s"]) < float(detail["returned_home_s"])  # type: ignore[arg-type]
    assert detail["returned_home_s"] == pytest.approx(REVOLUTION, abs=SLACK)
    assert float(detail["dropped_s"]) >= float(detail["returned_home_s"])  # type: ignore[arg-type]
    assert simulator.stock("C2") == 7


async def test_test_slot_on_an_empty_spiral_does_not_nudge(
    mechanism: GpioSpiralMechanism, simulator: VendingSimulator
) -> None:
    simulator.restock("C3", 0)

    result = await mechanism.test_slot("C3")

    assert result.outcome is DispenseOutcome.NOT_DROPPED
    assert len(simulator.runs("C3")) == 1


async def test_an_unknown_slot_is_rejected_without_moving(
    mechanism: GpioSpiralMechanism, simulator: VendingSimulator
) -> None:
    with pytest.raises(DeviceRejected, match=r"no slot 'Z9'.*A1, A2"):
        await mechanism.dispense("Z9")
    assert simulator.runs() == []


async def test_slot_codes_are_read_case_insensitively(
    mechanism: GpioSpiralMechanism,
) -> None:
    assert (await mechanism.dispense(" b4 ")).slot == "B4"
    assert mechanism.slots() == {f"{row}{n}" for row in "ABC" for n in range(1, 5)}


async def test_vending_before_open_is_unavailable(simulator: VendingSimulator) -> None:
    mechanism = GpioSpiralMechanism(simulator.layout, pin_factory=simulator.factory)

    with pytest.raises(DeviceUnavailable, match="not opened yet"):
        await mechanism.dispense("A1")


async def test_several_misses_from_different_slots_make_the_beam_suspect(
    simulator: VendingSimulator,
) -> None:
    mechanism = GpioSpiralMechanism(simulator.layout.with_timing(**{**FAST, "nudges": 0}),
                                    pin_factory=simulator.factory)
    await mechanism.open()
    simulator.set_beam_fault(BeamFault.STUCK_CLEAR)
    for slot in ("A1", "A2", "A3"):
        await mechanism.dispense(slot)
    assert mechanism.health.state is HealthState.DEGRADED
    assert "A1, A2, A3" in mechanism.health.reason

    simulator.set_beam_fault(None)
    assert (await mechanism.dispense("A4")).delivered
    assert mechanism.health.ok
    await mechanism.close()


def heard(mechanism: GpioSpiralMechanism) -> list[DeviceEvent]:
    events: list[DeviceEvent] = []
    mechanism.on_event(events.append)
    return events


async def test_a_beam_blocked_while_idle_degrades_the_mechanism_before_anyone_pays(
    mechanism: GpioSpiralMechanism, simulator: VendingSimulator
) -> None:
    events = heard(mechanism)
    assert mechanism.health.state is HealthState.OK
    simulator.set_beam_fault(BeamFault.STUCK_BLOCKED)

    await eventually(lambda: mechanism.health.state is HealthState.DEGRADED)

    assert "blocked" in mechanism.health.reason
    assert [e.name for e in events].count("beam_blocked") == 1
    assert simulator.runs() == []
    simulator.set_beam_fault(None)
    await eventually(lambda: mechanism.health.state is HealthState.OK)
    assert (await mechanism.dispense("A1")).delivered


async def test_a_product_falling_after_its_vend_ended_is_not_a_blocked_beam(
    mechanism: GpioSpiralMechanism, simulator: VendingSimulator
) -> None:
    events = heard(mechanism)
    simulator.set_beam_fault(BeamFault.STUCK_BLOCKED)
    simulator.set_beam_fault(None)  # a cut of a moment, as a late product makes
    await asyncio.sleep(0.8)  # past the grace: a check that would wrongly fire has fired
    assert mechanism.health.state is HealthState.OK
    assert "beam_blocked" not in [e.name for e in events]

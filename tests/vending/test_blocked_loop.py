"""A motor stops on time whatever the event loop does.

Each test starts a vend, then blocks the event loop's thread on purpose (a synchronous sleep
longer than the turn limit, as a slow disk or a runaway computation would) and checks, from
the simulator's own record of each stretch of power, that the motor was switched off at home,
at its limit, or when the beam saw the product: on the driver's threads, not the loop. The
outcome is recorded once the loop is back.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from drivers.base import DispenseOutcome, DispenseResult
from drivers.vending.gpio_spiral import GpioSpiralMechanism
from simulators.vending import SpiralFault, VendingSimulator

from .conftest import FAST, REVOLUTION, SLACK, motor_started

#: Longer than the turn limit (0.8 s) and the whole vend: the loop is gone for all of it.
BLOCKED = 1.5


async def block_the_loop_once(started: asyncio.Event) -> None:
    await started.wait()
    time.sleep(BLOCKED)  # noqa: ASYNC251 -- on purpose: the loop held, nothing on it runs


async def vend_with_the_loop_blocked(mechanism: GpioSpiralMechanism,
                                     slot: str) -> tuple[DispenseResult, float]:
    began = time.monotonic()
    blocker = asyncio.ensure_future(block_the_loop_once(motor_started(mechanism)))
    result = await mechanism.dispense(slot)
    await blocker
    return result, time.monotonic() - began


async def test_the_motor_stops_at_home_while_the_loop_is_blocked(
    mechanism: GpioSpiralMechanism, simulator: VendingSimulator,
) -> None:
    result, took = await vend_with_the_loop_blocked(mechanism, "B2")

    assert took >= BLOCKED  # the loop really was held for longer than the whole vend
    [run] = simulator.runs("B2")
    assert run.seconds == pytest.approx(REVOLUTION, abs=SLACK)  # off at home, not at 1.5 s
    assert simulator.delivered("B2") == 1
    assert result.outcome is DispenseOutcome.DELIVERED
    assert result.motor_seconds == pytest.approx(run.seconds, abs=SLACK)


@pytest.mark.parametrize(("slot", "fault", "limit", "outcome"), [
    ("A2", SpiralFault.JAMMED, "turn_limit", DispenseOutcome.JAMMED),
    ("C1", SpiralFault.MOTOR_MISSING, "start_limit", DispenseOutcome.MOTOR_MISSING),
], ids=["a jammed spiral at the turn limit", "a dead motor at the start limit"])
async def test_a_stuck_spiral_is_switched_off_at_its_limit_while_the_loop_is_blocked(
    mechanism: GpioSpiralMechanism, simulator: VendingSimulator, slot: str, fault: SpiralFault,
    limit: str, outcome: DispenseOutcome,
) -> None:
    simulator.set_fault(slot, fault)

    result, _ = await vend_with_the_loop_blocked(mechanism, slot)

    [run] = simulator.runs(slot)
    assert run.seconds == pytest.approx(FAST[limit], abs=SLACK)
    assert result.outcome is outcome
    assert simulator.delivered(slot) == 0


async def test_a_nudge_stops_when_the_product_falls_while_the_loop_is_blocked(
    mechanism: GpioSpiralMechanism, simulator: VendingSimulator,
) -> None:
    simulator.set_fault("C4", SpiralFault.HANG)  # the turn leaves the product hanging

    nudged = asyncio.Event()
    mechanism.on_event(lambda e: nudged.set() if e.name == "nudge" else None)
    blocker = asyncio.ensure_future(block_the_loop_once(nudged))
    result = await mechanism.dispense("C4")
    await blocker

    assert result.outcome is DispenseOutcome.DELIVERED
    assert result.nudges == 1
    nudge = simulator.runs("C4")[-1]
    # The nudge stopped at the beam (hang_extra of a turn), before its quarter turn was up.
    assert nudge.seconds < FAST["nudge_fraction"] * REVOLUTION + SLACK
    assert simulator.delivered("C4") == 1


async def test_a_drop_during_a_blocked_loop_is_recorded_once_it_is_back(
    mechanism: GpioSpiralMechanism, simulator: VendingSimulator,
) -> None:
    dropped: list[float] = []
    mechanism.on_event(lambda e: dropped.append(time.monotonic())
                       if e.name == "product_dropped" else None)

    result, _ = await vend_with_the_loop_blocked(mechanism, "A1")

    assert result.outcome is DispenseOutcome.DELIVERED
    assert "dropped_s" in result.detail
    # The beam fired while the loop was held; the drop is stamped when it happened.
    assert result.detail["dropped_s"] < BLOCKED
    assert len(dropped) == 1

"""Sales through the real drivers and the device simulators: the customer's view, the card
provider's settlement report and the mechanism's physical stock must all agree."""

from __future__ import annotations

import asyncio

from kiosk.machine import Machine
from kiosk.models import Sale
from kiosk.states import PaymentMethod, SaleState
from tests.system.conftest import Simulated
from tests.waiting import eventually

CARD, ACCOUNT = PaymentMethod.CARD, PaymentMethod.ACCOUNT


async def until(state: SaleState, machine: Machine, sale_id: str) -> None:
    await eventually(lambda: machine.ledger.get(sale_id).state == state, within=5)


async def card_sale(machine: Machine, sims: Simulated, slot: str, outcome: str) -> Sale:
    sale = await machine.sales.start(slot, CARD)
    await until(SaleState.AUTHORIZING, machine, sale.id)
    await asyncio.to_thread(sims.card.present_card, outcome)
    return await machine.sales.wait(sale.id)


async def test_every_device_is_up_and_the_kiosk_sells(machine: Machine) -> None:
    status = machine.service.status()
    assert status.in_service, status.reasons
    assert set(status.payment_methods) == {CARD, ACCOUNT}


async def test_card_sale_is_captured_and_the_product_leaves_the_spiral(
    machine: Machine, sims: Simulated
) -> None:
    before = sims.vending.stock("A1")
    sale = await card_sale(machine, sims, "A1", "approved")
    assert sale.state == SaleState.COMPLETED, sale.reason
    report = sims.card.settlement().to_dict()
    assert report["totals"]["captured_cents"] == 120
    assert report["totals"]["reverted_cents"] == 0 and report["totals"]["open_sessions"] == 0
    assert sims.vending.stock("A1") == before - 1 and sims.vending.delivered("A1") == 1


async def test_declined_card_turns_no_motor(machine: Machine, sims: Simulated) -> None:
    sale = await card_sale(machine, sims, "A2", "declined")
    assert sale.state == SaleState.DECLINED
    assert sims.vending.runs() == []
    assert sims.card.settlement().to_dict()["totals"]["captured_cents"] == 0


async def test_jam_after_card_approval_is_reverted_at_the_reader(
    machine: Machine, sims: Simulated
) -> None:
    sims.vending.set_fault("B1", "jammed")
    before = machine.ledger.slot("B1")
    sale = await card_sale(machine, sims, "B1", "approved")
    assert sale.state == SaleState.VOIDED, sale.reason
    totals = sims.card.settlement().to_dict()["totals"]
    assert totals["captured_cents"] == 0 and totals["reverted_cents"] == 150
    assert totals["open_sessions"] == 0
    after = machine.ledger.slot("B1")
    assert before is not None and after is not None
    assert after.stock == before.stock and "jammed" in after.fault
    assert sims.vending.running() == frozenset()  # the motor was switched off


async def test_product_that_hangs_is_delivered_on_a_nudge(
    machine: Machine, sims: Simulated
) -> None:
    sims.vending.set_fault("C1", "hang")
    sale = await card_sale(machine, sims, "C1", "approved")
    assert sale.state == SaleState.COMPLETED
    completed = machine.ledger.history(sale.id)[-1]
    assert completed.to_state == "completed" and completed.detail["nudges"] >= 1


async def test_empty_spiral_is_not_charged_and_stock_only_drops_when_seen(
    machine: Machine, sims: Simulated
) -> None:
    sims.vending.set_fault("A3", "empty")
    before = machine.ledger.slot("A3")
    sale = await card_sale(machine, sims, "A3", "approved")
    assert sale.state == SaleState.VOIDED
    after = machine.ledger.slot("A3")
    assert before is not None and after is not None and after.stock == before.stock
    assert sims.card.settlement().to_dict()["totals"]["captured_cents"] == 0


async def test_fingerprint_sale_by_a_demo_member(machine: Machine, sims: Simulated) -> None:
    sale = await machine.sales.start("A4", ACCOUNT)
    await until(SaleState.AUTHORIZING, machine, sale.id)
    await asyncio.to_thread(sims.fingerprint.place_finger, "alice")
    ended = await machine.sales.wait(sale.id)
    assert ended.state == SaleState.COMPLETED, ended.reason
    assert ended.member_id is not None
    assert machine.ledger.balance(ended.member_id) == 2000 - 180


async def test_jam_after_fingerprint_approval_credits_the_balance_back(
    machine: Machine, sims: Simulated
) -> None:
    sims.vending.set_fault("A4", "motor_missing")
    sale = await machine.sales.start("A4", ACCOUNT)
    await until(SaleState.AUTHORIZING, machine, sale.id)
    await asyncio.to_thread(sims.fingerprint.place_finger, "alice")
    ended = await machine.sales.wait(sale.id)
    assert ended.state == SaleState.VOIDED
    assert ended.member_id is not None and machine.ledger.balance(ended.member_id) == 2000


async def test_unknown_finger_is_declined(machine: Machine, sims: Simulated) -> None:
    sale = await machine.sales.start("A4", ACCOUNT)
    await until(SaleState.AUTHORIZING, machine, sale.id)
    await asyncio.to_thread(sims.fingerprint.place_finger, "mallory")
    assert (await machine.sales.wait(sale.id)).state == SaleState.DECLINED


async def test_customer_cancel_leaves_no_open_request_at_the_reader(
    machine: Machine, sims: Simulated
) -> None:
    sale = await machine.sales.start("A1", CARD)
    await until(SaleState.AUTHORIZING, machine, sale.id)
    cancelled = await machine.sales.cancel(sale.id)
    assert cancelled.state == SaleState.CANCELLED
    assert sims.card.reader_state != "vend"
    totals = sims.card.settlement().to_dict()["totals"]
    assert totals["open_sessions"] == 0 and totals["captured_cents"] == 0


async def test_card_reader_unplugged_and_replugged_comes_back_by_itself(
    machine: Machine, sims: Simulated
) -> None:
    await asyncio.to_thread(sims.card.unplug)
    await eventually(lambda: machine.hardware.card is None or not machine.hardware.card.health.ok,
                     within=5)
    assert machine.service.status().payment_methods == (ACCOUNT,)
    await asyncio.to_thread(sims.card.replug)
    await eventually(lambda: machine.hardware.card is not None and machine.hardware.card.health.ok,
                     within=15)
    sale = await card_sale(machine, sims, "A2", "approved")
    assert sale.state == SaleState.COMPLETED

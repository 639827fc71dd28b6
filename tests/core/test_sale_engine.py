"""The sale engine driving device doubles, with every step in a real SQLite file."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlmodel import select

from drivers.base import AuthorizationOutcome, DeviceTimeout, DeviceUnavailable, DispenseOutcome
from kiosk.config import Settings
from kiosk.ledger import SaleBusy, SlotUnavailable
from kiosk.machine import Machine
from kiosk.models import AccountEntry, Slot
from kiosk.sales import OutOfService, PaymentUnavailable, TooLate
from kiosk.states import PaymentMethod, SaleState
from tests.conftest import Doubles
from tests.waiting import eventually

CARD, ACCOUNT = PaymentMethod.CARD, PaymentMethod.ACCOUNT
ALICE = 1  # demo member on fingerprint page 1, balance 20.00


def states(machine: Machine, sale_id: str) -> list[str]:
    return [event.to_state for event in machine.ledger.history(sale_id)]


def stock(machine: Machine, code: str) -> int:
    slot = machine.ledger.slot(code)
    assert slot is not None
    return slot.stock


async def sell(machine: Machine, slot: str, method: PaymentMethod) -> str:
    sale = await machine.sales.start(slot, method)
    ended = await machine.sales.wait(sale.id)
    return ended.id


async def test_card_sale_is_captured_after_the_drop(machine: Machine, doubles: Doubles) -> None:
    before = stock(machine, "A1")
    sale_id = await sell(machine, "A1", CARD)
    assert states(machine, sale_id) == [
        "created", "authorizing", "authorized", "dispensing", "dispensed", "completed"]
    assert doubles.card.captured == ["ref-1"] and doubles.card.voided == []
    assert doubles.card.authorizations[0].amount_cents == 120
    assert machine.ledger.get(sale_id).reader_reference == "ref-1"
    assert stock(machine, "A1") == before - 1


async def test_declined_card_never_starts_the_motor(machine: Machine, doubles: Doubles) -> None:
    doubles.card.outcome = AuthorizationOutcome.DECLINED
    sale_id = await sell(machine, "A1", CARD)
    assert machine.ledger.get(sale_id).state == SaleState.DECLINED
    assert doubles.vending.dispensed == []


@pytest.mark.parametrize(
    "outcome", [AuthorizationOutcome.CANCELLED, AuthorizationOutcome.TIMED_OUT]
)
async def test_card_not_presented_or_cancelled_at_reader_cancels_the_sale(
    machine: Machine, doubles: Doubles, outcome: AuthorizationOutcome
) -> None:
    doubles.card.outcome = outcome
    sale_id = await sell(machine, "A1", CARD)
    sale = machine.ledger.get(sale_id)
    assert sale.state == SaleState.CANCELLED and sale.reason
    assert doubles.vending.dispensed == []


@pytest.mark.parametrize(
    "outcome", [DispenseOutcome.JAMMED, DispenseOutcome.NOT_DROPPED, DispenseOutcome.MOTOR_MISSING]
)
async def test_failed_vend_voids_the_card_payment_and_takes_the_slot_out_of_sale(
    machine: Machine, doubles: Doubles, outcome: DispenseOutcome
) -> None:
    doubles.vending.outcome = outcome
    before = stock(machine, "B1")
    sale_id = await sell(machine, "B1", CARD)
    sale = machine.ledger.get(sale_id)
    assert sale.state == SaleState.VOIDED
    assert states(machine, sale_id)[-2:] == ["dispense_failed", "voided"]
    assert doubles.card.captured == [] and doubles.card.voided == ["ref-1"]
    assert stock(machine, "B1") == before  # stock only goes down when a drop was seen
    slot = machine.ledger.slot("B1")
    assert slot is not None and slot.fault
    with pytest.raises(SlotUnavailable):
        await machine.sales.start("B1", CARD)


async def test_void_the_reader_cannot_confirm_goes_to_review(
    machine: Machine, doubles: Doubles
) -> None:
    doubles.vending.outcome = DispenseOutcome.JAMMED
    doubles.card.settle_error = DeviceTimeout("card", "no answer")
    sale_id = await sell(machine, "A1", CARD)
    sale = machine.ledger.get(sale_id)
    assert sale.state == SaleState.NEEDS_REVIEW
    assert "did not confirm the void" in sale.reason
    assert doubles.card.captured == []


async def test_capture_the_reader_cannot_confirm_goes_to_review(
    machine: Machine, doubles: Doubles
) -> None:
    doubles.card.settle_error = DeviceTimeout("card", "no answer")
    sale_id = await sell(machine, "A1", CARD)
    sale = machine.ledger.get(sale_id)
    assert sale.state == SaleState.NEEDS_REVIEW and "product delivered" in sale.reason


async def test_mechanism_that_breaks_mid_vend_voids_and_flags_for_review(
    machine: Machine, doubles: Doubles
) -> None:
    doubles.vending.error = RuntimeError("gpio lost")
    sale_id = await sell(machine, "A2", CARD)
    sale = machine.ledger.get(sale_id)
    assert sale.state == SaleState.NEEDS_REVIEW and "outcome unknown" in sale.reason
    assert doubles.card.voided == ["ref-1"] and doubles.card.captured == []
    slot = machine.ledger.slot("A2")
    assert slot is not None and "check stock" in slot.fault


async def test_mechanism_offline_before_the_motor_voids_without_review(
    machine: Machine, doubles: Doubles
) -> None:
    doubles.vending.error = DeviceUnavailable("vending", "pins not claimed")
    sale_id = await sell(machine, "A2", CARD)
    assert machine.ledger.get(sale_id).state == SaleState.VOIDED
    assert doubles.card.voided == ["ref-1"]


async def test_account_sale_debits_the_member_once(machine: Machine, doubles: Doubles) -> None:
    sale_id = await sell(machine, "A1", ACCOUNT)
    sale = machine.ledger.get(sale_id)
    assert sale.state == SaleState.COMPLETED and sale.member_id == ALICE
    assert machine.ledger.balance(ALICE) == 2000 - 120
    assert doubles.card.authorizations == []


async def test_failed_vend_credits_the_account_back(machine: Machine, doubles: Doubles) -> None:
    doubles.vending.outcome = DispenseOutcome.JAMMED
    sale_id = await sell(machine, "A1", ACCOUNT)
    assert machine.ledger.get(sale_id).state == SaleState.VOIDED
    assert machine.ledger.balance(ALICE) == 2000
    with machine.db.session() as session:
        entries = session.exec(select(AccountEntry).where(AccountEntry.sale_id == sale_id)).all()
    assert sorted(e.amount_cents for e in entries) == [-120, 120]


async def test_insufficient_balance_is_declined_without_a_debit(
    machine: Machine, doubles: Doubles
) -> None:
    doubles.fingerprint.page = 2  # Bob: 1.50
    sale_id = await sell(machine, "C4", ACCOUNT)  # 8.99
    sale = machine.ledger.get(sale_id)
    assert sale.state == SaleState.DECLINED and sale.reason == "insufficient balance"
    assert machine.ledger.balance(2) == 150
    assert doubles.vending.dispensed == []


async def test_unknown_finger_is_declined(machine: Machine, doubles: Doubles) -> None:
    doubles.fingerprint.page = None
    sale_id = await sell(machine, "A1", ACCOUNT)
    assert machine.ledger.get(sale_id).state == SaleState.DECLINED


async def test_no_finger_in_time_cancels(machine: Machine, doubles: Doubles) -> None:
    doubles.fingerprint.no_finger = True
    sale_id = await sell(machine, "A1", ACCOUNT)
    sale = machine.ledger.get(sale_id)
    assert sale.state == SaleState.CANCELLED and "in time" in sale.reason


async def test_customer_cancel_while_waiting_for_card_cancels_at_reader(
    machine: Machine, doubles: Doubles
) -> None:
    doubles.card.gate.close()
    sale = await machine.sales.start("A1", CARD)
    await doubles.card.gate.entered.wait()
    cancelled = await machine.sales.cancel(sale.id)
    assert cancelled.state == SaleState.CANCELLED
    assert doubles.card.cancels == 1
    again = await machine.sales.cancel(sale.id)  # a second press changes nothing
    assert again.state == SaleState.CANCELLED
    assert states(machine, sale.id).count("cancelled") == 1


async def test_waiting_for_payment_times_out(settings: Settings, doubles: Doubles) -> None:
    doubles.card.gate.close()  # the reader never answers
    impatient = settings.model_copy(update={"payment_timeout": 0.2, "settle_timeout": 0.1})
    machine = Machine(impatient, doubles.as_devices())
    await machine.start()
    try:
        sale_id = await sell(machine, "A1", CARD)
        sale = machine.ledger.get(sale_id)
        assert sale.state == SaleState.CANCELLED and "timed out" in sale.reason
        assert doubles.card.cancels == 1
    finally:
        await machine.stop()


async def test_cancel_during_the_vend_is_refused(machine: Machine, doubles: Doubles) -> None:
    doubles.vending.gate.close()
    sale = await machine.sales.start("A1", CARD)
    await doubles.vending.gate.entered.wait()
    with pytest.raises(TooLate):
        await machine.sales.cancel(sale.id)
    doubles.vending.gate.open()
    assert (await machine.sales.wait(sale.id)).state == SaleState.COMPLETED


async def test_concurrent_starts_exactly_one_wins(machine: Machine, doubles: Doubles) -> None:
    doubles.card.gate.close()
    results = await asyncio.gather(
        *(machine.sales.start(code, CARD) for code in ("A1", "A2", "A3", "A4", "B1", "B2")),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, SaleBusy) for r in results if r not in winners)
    doubles.card.gate.open()
    await machine.sales.wait(winners[0].id)
    assert len(doubles.vending.dispensed) == 1 and doubles.vending.most_running == 1


async def test_terminal_sale_ignores_late_cancel(machine: Machine) -> None:
    sale_id = await sell(machine, "A1", CARD)
    assert (await machine.sales.cancel(sale_id)).state == SaleState.COMPLETED
    assert states(machine, sale_id)[-1] == "completed"


async def test_sold_out_slot_is_refused(machine: Machine) -> None:
    with machine.db.session() as session:
        slot = session.exec(select(Slot).where(Slot.code == "C3")).one()
        slot.stock = 0
        session.add(slot)
        session.commit()
    with pytest.raises(SlotUnavailable, match="sold out"):
        await machine.sales.start("C3", CARD)


async def test_payment_method_whose_reader_is_offline_is_refused(
    machine: Machine, doubles: Doubles
) -> None:
    doubles.card._set_health(doubles.card.health.state.OFFLINE, "unplugged")
    with pytest.raises(PaymentUnavailable):
        await machine.sales.start("A1", CARD)
    sale_id = await sell(machine, "A1", ACCOUNT)
    assert machine.ledger.get(sale_id).state == SaleState.COMPLETED


async def test_out_of_service_refuses_every_sale(machine: Machine, doubles: Doubles) -> None:
    doubles.vending._set_health(doubles.vending.health.state.OFFLINE, "unplugged")
    with pytest.raises(OutOfService, match="vending mechanism offline"):
        await machine.sales.start("A1", CARD)


async def test_history_survives_reopening_the_database(machine: Machine) -> None:
    from kiosk.db import Database
    from kiosk.ledger import Ledger

    sale_id = await sell(machine, "A1", CARD)
    before = [(e.from_state, e.to_state, e.detail) for e in machine.ledger.history(sale_id)]
    machine.db.dispose()
    reopened = Ledger(Database(machine.settings.database))
    after = [(e.from_state, e.to_state, e.detail) for e in reopened.history(sale_id)]
    assert after == before and len(after) == 6
    sale = reopened.get(sale_id)
    assert sale.state == SaleState.COMPLETED
    assert sale.created_at.utcoffset() == timedelta(0)  # SQLite keeps no zone; we do


async def test_card_reader_is_disabled_while_out_of_service_and_back(
    machine: Machine, doubles: Doubles
) -> None:
    assert doubles.card.enabled
    doubles.vending._set_health(doubles.vending.health.state.OFFLINE, "unplugged")
    await asyncio.sleep(0.05)
    assert not doubles.card.enabled
    doubles.vending._set_health(doubles.vending.health.state.OK, "back")
    await asyncio.sleep(0.05)
    assert doubles.card.enabled


async def test_drop_is_durable_the_moment_the_beam_fires(
    machine: Machine, doubles: Doubles
) -> None:
    doubles.vending.drop_early = True
    doubles.vending.gate.close()  # the spiral is still finishing its turn
    before = stock(machine, "A1")
    sale = await machine.sales.start("A1", CARD)
    await doubles.vending.gate.entered.wait()
    # Recorded by the scribe while the spiral is still turning, not when the vend returns.
    await eventually(lambda: machine.ledger.get(sale.id).state == SaleState.DISPENSED)
    assert stock(machine, "A1") == before - 1
    doubles.vending.gate.open()
    assert (await machine.sales.wait(sale.id)).state == SaleState.COMPLETED
    assert stock(machine, "A1") == before - 1  # counted once
    assert states(machine, sale.id).count("dispensed") == 1


@pytest.mark.parametrize("after_the_drop", [DispenseOutcome.JAMMED, DispenseOutcome.NOT_DROPPED,
                                            "error"])
async def test_a_drop_the_beam_saw_is_charged_whatever_the_mechanism_says_next(
    machine: Machine, doubles: Doubles, after_the_drop: DispenseOutcome | str
) -> None:
    doubles.vending.drop_early = True
    if after_the_drop == "error":
        doubles.vending.error = DeviceTimeout("vending", "home switch lost")
    else:
        doubles.vending.outcome = DispenseOutcome(after_the_drop)
    sale_id = await sell(machine, "A1", CARD)
    assert machine.ledger.get(sale_id).state == SaleState.COMPLETED
    assert doubles.card.captured == ["ref-1"] and doubles.card.voided == []
    assert (await sell(machine, "A2", CARD))  # the kiosk goes on selling


async def test_a_broken_driver_call_settles_the_sale_and_the_kiosk_sells_on(
    machine: Machine, doubles: Doubles
) -> None:
    doubles.card.error = OSError("port vanished mid-read")
    sale_id = await sell(machine, "A1", CARD)
    sale = machine.ledger.get(sale_id)
    assert sale.state == SaleState.CANCELLED
    assert machine.service.status().in_service
    doubles.card.error = None
    assert machine.ledger.get(await sell(machine, "A1", CARD)).state == SaleState.COMPLETED


async def test_cancel_before_the_reader_was_asked_never_asks_it(
    machine: Machine, doubles: Doubles
) -> None:
    sale = await machine.sales.start("A1", CARD)
    cancelled = await machine.sales.cancel(sale.id)
    assert cancelled.state == SaleState.CANCELLED
    assert doubles.card.authorizations == [] and doubles.card.cancels == 0


async def test_a_device_that_fails_to_open_leaves_the_rest_running(
    settings: Settings, doubles: Doubles
) -> None:
    from tests.doubles import BrokenVending

    doubles.vending = BrokenVending()
    machine = Machine(settings, doubles.as_devices())
    await machine.start()
    try:
        health = machine.hardware.health(doubles.vending.kind)
        assert health.state == "offline" and "GPIO chip busy" in health.reason
        assert not machine.service.status().in_service
        assert machine.hardware.card is doubles.card
    finally:
        await machine.stop()


async def test_database_refusing_writes_takes_the_kiosk_out_and_back_into_service(
    settings: Settings, doubles: Doubles, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kiosk import machine as machine_module
    from kiosk.db import Database
    from kiosk.ledger import Ledger, NotRecorded

    Ledger(Database(settings.database)).open_sale("A1", CARD)  # left unfinished by a crash
    monkeypatch.setattr(machine_module, "DATABASE_RETRY_SECONDS", 0.05)
    refusing = {"on": True}
    real_commit = Ledger.commit

    def commit(self: Ledger, session: object) -> None:
        if refusing["on"]:
            self.db.write_error = "disk full"
            raise NotRecorded("disk full")
        real_commit(self, session)  # type: ignore[arg-type]

    monkeypatch.setattr(Ledger, "commit", commit)
    monkeypatch.setattr(Database, "probe_write", lambda self: None)
    kiosk = Machine(settings, doubles.as_devices())
    await kiosk.start()
    try:
        status = kiosk.service.status()
        assert not status.in_service and any("disk full" in r for r in status.reasons)
        refusing["on"] = False
        kiosk.db.write_error = ""
        async with asyncio.timeout(3):
            while not kiosk.service.status().in_service:
                await asyncio.sleep(0.02)
        assert kiosk.ledger.unfinished() == []
    finally:
        await kiosk.stop()


async def test_the_screens_hear_each_commit_once_and_no_unchanged_service_state(
    machine: Machine,
) -> None:
    async with machine.bus.subscribe() as queue:
        await sell(machine, "A1", CARD)
        await asyncio.sleep(0)  # the sale's last callbacks (catalog, service) have run
        heard = [queue.get_nowait() for _ in range(queue.qsize())]
    # Two steps share a commit (created + authorizing, authorized + dispensing): the screens
    # hear the state each commit left.
    assert [e.data["state"] for e in heard if e.topic == "sale"] == [
        "authorizing", "dispensing", "dispensed", "completed"]
    assert [e.topic for e in heard if e.topic not in ("sale", "device")] == ["catalog"]

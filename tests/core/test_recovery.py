"""Start-up recovery: every sale a crash left unfinished ends as DESIGN.md's table says."""

from __future__ import annotations

import pytest
from sqlmodel import select

from drivers.base import DeviceTimeout
from kiosk.config import Settings
from kiosk.db import Database
from kiosk.ledger import Ledger, debit
from kiosk.machine import Machine
from kiosk.models import AuditLog, Sale
from kiosk.states import PaymentMethod, SaleState
from kiosk.states import SaleState as S
from tests.conftest import Doubles
from tests.core.earlier import opened_created
from tests.doubles import OfflineCard

ALICE = 1
#: The recorded steps that lead to each state a crash can leave, after the sale was opened
#: (recorded as created and authorizing in one commit).
WALKS = {
    S.AUTHORIZING: [],
    S.AUTHORIZED: [S.AUTHORIZED],
    S.DISPENSING: [S.AUTHORIZED, S.DISPENSING],
    S.DISPENSED: [S.AUTHORIZED, S.DISPENSING, S.DISPENSED],
    S.DISPENSE_FAILED: [S.AUTHORIZED, S.DISPENSING, S.DISPENSE_FAILED],
}


def crashed_in(database: Database, state: SaleState, method: PaymentMethod) -> Sale:
    """A sale recorded up to ``state``, as a killed process would have left it."""
    ledger = Ledger(database)
    if state is S.CREATED:
        return ledger.get(opened_created(database, "A1", method))
    sale = ledger.open_sale("A1", method)
    for step in WALKS[state]:
        effect = None
        if step is S.AUTHORIZED:
            if method is PaymentMethod.ACCOUNT:
                effect = debit(ALICE)
            else:
                def effect(_session: object, s: Sale) -> None:
                    s.reader_reference = "ref-before-crash"
        sale, _ = ledger.move(sale.id, step, effect=effect)
    return sale


async def restart(settings: Settings, doubles: Doubles) -> Machine:
    machine = Machine(settings, doubles.as_devices())
    await machine.start()
    return machine


EXPECTED = {  # DESIGN.md, "Recovery at startup"
    S.CREATED: S.CANCELLED,
    S.AUTHORIZING: S.CANCELLED,
    S.AUTHORIZED: S.VOIDED,
    S.DISPENSING: S.NEEDS_REVIEW,
    S.DISPENSED: S.COMPLETED,
    S.DISPENSE_FAILED: S.VOIDED,
}


@pytest.mark.parametrize("found", list(EXPECTED), ids=str)
async def test_card_sale_recovers_as_the_table_says(
    settings: Settings, database: Database, doubles: Doubles, found: SaleState
) -> None:
    sale = crashed_in(database, found, PaymentMethod.CARD)
    machine = await restart(settings, doubles)
    try:
        ended = machine.ledger.get(sale.id)
        assert ended.state == EXPECTED[found]
        card = doubles.card
        delivered = found is S.DISPENSED
        assert card.captured == (["ref-before-crash"] if delivered else [])
        was_authorized = found in (S.AUTHORIZED, S.DISPENSING, S.DISPENSE_FAILED)
        assert card.voided == (["ref-before-crash"] if was_authorized else [])
        assert card.cancels == (1 if found in (S.CREATED, S.AUTHORIZING) else 0)
        last = machine.ledger.history(sale.id)[-1]
        assert last.from_state == found and last.detail == {"recovered_from": found.value}
        with machine.db.session() as session:
            audit = session.exec(select(AuditLog).where(AuditLog.target == sale.id)).one()
        assert audit.actor == "recovery"
        assert audit.before == {"state": found.value}
        assert audit.after is not None and audit.after["state"] == EXPECTED[found].value
        assert machine.service.status().in_service
    finally:
        await machine.stop()


@pytest.mark.parametrize("found", list(EXPECTED), ids=str)
async def test_account_sale_recovers_with_an_exact_balance(
    settings: Settings, database: Database, doubles: Doubles, found: SaleState
) -> None:
    sale = crashed_in(database, found, PaymentMethod.ACCOUNT)
    machine = await restart(settings, doubles)
    try:
        assert machine.ledger.get(sale.id).state == EXPECTED[found]
        charged = 120 if found is S.DISPENSED else 0
        assert machine.ledger.balance(ALICE) == 2000 - charged
        assert doubles.card.cancels == 0 and doubles.card.voided == []
    finally:
        await machine.stop()


async def test_interrupted_vend_flags_the_slot_for_a_stock_check(
    settings: Settings, database: Database, doubles: Doubles
) -> None:
    crashed_in(database, S.DISPENSING, PaymentMethod.CARD)
    machine = await restart(settings, doubles)
    try:
        slot = machine.ledger.slot("A1")
        assert slot is not None and "check stock" in slot.fault
        assert slot.stock == 8  # not counted as sold: nobody saw it drop
    finally:
        await machine.stop()


async def test_reader_offline_at_start_sends_authorized_card_sale_to_review(
    settings: Settings, database: Database, doubles: Doubles
) -> None:
    sale = crashed_in(database, S.AUTHORIZED, PaymentMethod.CARD)
    doubles.card = OfflineCard()
    doubles.card.settle_error = DeviceTimeout("card", "offline")
    machine = await restart(settings, doubles)
    try:
        ended = machine.ledger.get(sale.id)
        assert ended.state == S.NEEDS_REVIEW and "void" in ended.reason
        assert doubles.card.captured == []
    finally:
        await machine.stop()


async def test_delivered_sale_whose_capture_fails_goes_to_review_not_free(
    settings: Settings, database: Database, doubles: Doubles
) -> None:
    sale = crashed_in(database, S.DISPENSED, PaymentMethod.CARD)
    doubles.card.settle_error = DeviceTimeout("card", "no answer")
    machine = await restart(settings, doubles)
    try:
        ended = machine.ledger.get(sale.id)
        assert ended.state == S.NEEDS_REVIEW and "product delivered" in ended.reason
    finally:
        await machine.stop()


async def test_kiosk_is_not_in_service_until_recovery_has_run(
    settings: Settings, doubles: Doubles
) -> None:
    machine = Machine(settings, doubles.as_devices())
    assert not machine.service.status().in_service
    assert "recovering unfinished sales" in machine.service.status().reasons
    await machine.start()
    try:
        assert machine.service.status().in_service
    finally:
        await machine.stop()


async def test_a_device_failing_during_recovery_sends_the_sale_to_review_and_starts(
    settings: Settings, database: Database, doubles: Doubles
) -> None:
    sale = crashed_in(database, S.AUTHORIZED, PaymentMethod.CARD)
    later = Ledger(database)

    async def explode(_authorization: object) -> None:
        raise RuntimeError("driver bug")

    doubles.card.void = explode  # type: ignore[method-assign,assignment]
    machine = await restart(settings, doubles)
    try:
        ended = later.get(sale.id)
        assert ended.state == S.NEEDS_REVIEW and "driver bug" in ended.reason
        assert machine.service.status().in_service
    finally:
        await machine.stop()


async def test_a_ledger_refusing_even_the_review_keeps_the_kiosk_out_of_service_until_it_takes_it(
    settings: Settings, database: Database, doubles: Doubles
) -> None:
    sale = crashed_in(database, S.AUTHORIZED, PaymentMethod.CARD)
    refuse = ("CREATE TRIGGER refuse BEFORE INSERT ON sale_event "
              f"WHEN NEW.sale_id = '{sale.id}' BEGIN SELECT RAISE(ABORT, 'refused'); END")
    with database.engine.begin() as connection:
        connection.exec_driver_sql(refuse)

    async def explode(_authorization: object) -> None:
        raise RuntimeError("driver bug")

    doubles.card.void = explode  # type: ignore[method-assign,assignment]
    machine = await restart(settings, doubles)  # starts: it does not crash on the refusal
    try:
        status = machine.service.status()
        assert not status.in_service
        assert any("cannot be settled yet" in reason and "refused" in reason
                   for reason in status.reasons), status.reasons
        assert Ledger(database).get(sale.id).state == S.AUTHORIZED
        with database.engine.begin() as connection:
            connection.exec_driver_sql("DROP TRIGGER refuse")
        assert await machine._recover()
        assert Ledger(database).get(sale.id).state == S.NEEDS_REVIEW
        assert machine.service.status().in_service
    finally:
        await machine.stop()

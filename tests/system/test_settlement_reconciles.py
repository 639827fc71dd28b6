"""Two hundred mixed card sales through the simulators: the payment provider's settlement
report and the kiosk's ledger agree to the cent, and no card number lands anywhere."""

from __future__ import annotations

import asyncio
import random
import re
from collections import Counter
from pathlib import Path

import pytest
from sqlmodel import select

from kiosk.machine import Machine
from kiosk.models import Slot
from kiosk.states import PaymentMethod, SaleState
from tests.system.conftest import Simulated

CARD_NUMBER = re.compile(rb"(?<!\d)\d{13,19}(?!\d)")
OUTCOMES = ["approved"] * 12 + ["declined"] * 3 + ["insufficient_funds", "cancelled"] + ["jam"] * 2


def restock_if_empty(machine: Machine, sims: Simulated, code: str) -> None:
    """A technician's round: refill an empty slot and clear a fault, in both worlds."""
    with machine.db.session() as session:
        slot = session.exec(select(Slot).where(Slot.code == code)).one()
        if slot.stock == 0 or slot.fault:
            slot.stock, slot.fault = slot.capacity, ""
            session.add(slot)
            session.commit()
            sims.vending.restock(code, slot.capacity)
            sims.vending.clear_fault(code)


async def test_two_hundred_mixed_sales_reconcile_with_the_settlement_report(
    machine: Machine, sims: Simulated, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    # A card number on the line must be masked wherever the driver mentions it.
    await asyncio.to_thread(sims.card.send_garbage, b"d,STATUS,4111111111111111,%B4111\n")
    chance = random.Random(20261123)
    codes = sorted(sims.vending.stocks())
    tried: Counter[str] = Counter()
    for _ in range(200):
        code = chance.choice(codes)
        restock_if_empty(machine, sims, code)
        outcome = chance.choice(OUTCOMES)
        tried[outcome] += 1
        if outcome == "jam":
            sims.vending.set_fault(code, "jammed")
        await asyncio.to_thread(sims.card.set_auto, "approved" if outcome == "jam" else outcome,
                                0.0)
        sale = await machine.sales.start(code, PaymentMethod.CARD)
        ended = await machine.sales.wait(sale.id)
        assert SaleState(ended.state) in {SaleState.COMPLETED, SaleState.DECLINED,
                                          SaleState.CANCELLED, SaleState.VOIDED}, ended.reason
        if outcome == "jam":
            sims.vending.clear_fault(code)

    sales = machine.ledger.sales_since(None)
    completed = [s for s in sales if s.state == SaleState.COMPLETED]
    voided = [s for s in sales if s.state == SaleState.VOIDED]
    report = sims.card.settlement().to_dict()
    totals = report["totals"]
    assert len(sales) == 200 and tried["jam"] > 0 and voided
    assert totals["captured_cents"] == sum(s.price_cents for s in completed)
    assert totals["captured_count"] == len(completed)
    assert totals["reverted_cents"] == sum(s.price_cents for s in voided)
    assert totals["open_sessions"] == 0 and totals["open_cents"] == 0
    captured_refs = {t["reference"] for t in report["transactions"] if t["status"] == "captured"}
    assert len(captured_refs) == len(completed)
    delivered = sum(sims.vending.delivered(code) for code in codes)
    assert delivered == len(completed)  # every product that fell was paid for, and no other

    database = Path(machine.settings.database)
    for path in (database, database.with_name(database.name + "-wal")):
        if path.exists():
            assert not CARD_NUMBER.search(path.read_bytes()), f"card-like digits in {path}"
    assert not CARD_NUMBER.search(caplog.text.encode()), "card-like digits in the log"

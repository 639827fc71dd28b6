"""The soak test's own book: what every slot, account and the card provider must hold, kept
from what the test did and expected, and checked against the ledger, the machine and the
settlement report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.faults.processes import ledger_file, unfinished


@dataclass
class SlotBook:
    """One slot as the test expects it: in the ledger and in the machine."""

    price: int
    capacity: int
    #: The item number the card reader is told (the slot's row id).
    item: int
    #: What the ledger should say the slot holds.
    ledger_stock: int = 0
    #: What the machine's spiral really holds.
    machine_stock: int = 0
    #: Products that fell out of the spiral, seen by the beam or not.
    delivered: int = 0
    #: Of those, the ones the beam did not see (stuck clear): nobody paid for them.
    unseen: int = 0
    #: And the ones a spiral pushed out turning past home (see :meth:`Book.after_sale`).
    overrun: int = 0
    #: Seconds the slot's motor has run, and where the spiral rests (in turns).
    motor_seconds: float = 0.0
    position: float = 0.0


@dataclass
class Book:
    """The test's own account of everything."""

    slots: dict[str, SlotBook]
    #: Member name -> what the member's balance should be, what it was, and the member's id.
    balances: dict[str, int]
    opening: dict[str, int]
    member_ids: dict[str, int]
    top_ups: dict[str, int] = field(default_factory=dict)
    #: Sales started, and those the injected faults must have sent to review.
    sales: int = 0
    reviews: int = 0
    #: Vends since the last delivery in which the beam saw nothing (the mechanism degrades at 3).
    misses: int = 0

    def for_sale(self) -> list[str]:
        return sorted(code for code, slot in self.slots.items() if slot.ledger_stock > 0)

    def sold_out(self) -> list[str]:
        return sorted(code for code, slot in self.slots.items() if slot.ledger_stock == 0)

    def after_sale(self, machine: dict[str, Any], code: str, fell: int, recorded: float | None,
                   gave_up: bool, revolution: float, where: str) -> int:
        """Take the machine's counters after a sale from ``code``; the products it overran.

        ``fell``: the products that must have fallen; ``recorded``: the motor seconds on the
        kiosk's record of the vend (None: no vend recorded, which only a vend the kiosk
        ``gave_up`` on may leave with the motor having run). Every second a motor ran is within
        that record. A spiral may turn past home into the next product when the server pauses
        for a whole (fast) revolution before it switches the motor off: that overrun is
        allowed for when the recorded motor time covers the extra turns.
        """
        assert machine["overlaps"] == 0, f"{where}: two motors ran at once"
        slots = machine["slots"]
        others = {c: (s["delivered"], s["stock"], s["motor_seconds"])
                  for c, s in slots.items() if c in self.slots and c != code}
        booked = {c: (s.delivered, s.machine_stock, s.motor_seconds)
                  for c, s in self.slots.items() if c != code}
        assert others == booked, f"{where}: other slots moved: {differences(others, booked)}"
        slot, now = self.slots[code], slots[code]
        fallen: int = now["delivered"] - slot.delivered
        motor: float = now["motor_seconds"] - slot.motor_seconds
        if recorded is None:
            assert motor == 0 or (gave_up and fell == 0), f"{where}: motor ran {motor:.3f} s"
        else:  # the kiosk's clock runs from before the switch-on to after the switch-off
            assert motor <= recorded + 0.005, (
                f"{where}: the motor ran {motor:.3f} s, the kiosk recorded {recorded:.3f} s")
        overrun = fallen - fell
        assert overrun >= 0, f"{where}: {fallen} products fell, expected {fell}"
        assert overrun == 0 or (recorded is not None and motor >= overrun * revolution * 0.9), (
            f"{where}: {fallen} products fell, expected {fell}, in {motor:.3f} s of motor")
        assert now["stock"] == slot.machine_stock - fallen, f"{where}: stock {now['stock']}"
        slot.delivered, slot.machine_stock = now["delivered"], now["stock"]
        slot.motor_seconds, slot.position = now["motor_seconds"], now["position"]
        slot.overrun += overrun
        return overrun

    def reconcile(self, ledger: Path, report: dict[str, Any], machine: dict[str, Any],
                  members: dict[int, int], endings: dict[str, str], reviews: set[str],
                  where: str) -> None:
        """Everything at once: the ledger, the accounts, the stock and the card provider.

        ``members``: each member's balance as the maintenance API gives it; ``endings``: the
        state each sale ended in, as the screen was told; ``reviews``: the reasons a review is
        explained by.
        """
        assert unfinished(ledger) == [], f"{where}: sales left unfinished"
        with ledger_file(ledger) as db:
            sales = [dict(r) for r in db.execute("SELECT * FROM sale")]
            dispensed = {r[0] for r in db.execute(
                "SELECT DISTINCT sale_id FROM sale_event WHERE to_state = 'dispensed'")}
            per_sale = {r[0]: r[1] for r in db.execute(
                "SELECT sale_id, SUM(amount_cents) FROM account_entry "
                "WHERE sale_id IS NOT NULL GROUP BY sale_id")}
            entries = {r[0]: r[1] for r in db.execute(
                "SELECT member_id, SUM(amount_cents) FROM account_entry GROUP BY member_id")}
            stock = {r[0]: r[1] for r in db.execute("SELECT code, stock FROM slot")}
        assert len(sales) == self.sales, f"{where}: {len(sales)} sales in the ledger"
        assert {s["id"]: s["state"] for s in sales} == endings, f"{where}: not as announced"
        completed = [s for s in sales if s["state"] == "completed"]
        assert all(s["id"] in dispensed for s in completed), where
        in_review = [s for s in sales if s["state"] == "needs_review"]
        assert {s["reason"] for s in in_review} <= reviews, f"{where}: {in_review}"
        assert not any(s["id"] in dispensed for s in in_review), where
        assert len(in_review) == self.reviews, f"{where}: {len(in_review)} in review"

        # Card money: the provider captured exactly the completed card sales, per slot, and
        # gave back every other approval; nothing is held or pending.
        totals = report["totals"]
        assert totals["open_sessions"] == totals["open_cents"] == 0, f"{where}: {totals}"
        assert totals["pending_requests"] == 0, f"{where}: {totals}"
        cards = [s for s in completed if s["method"] == "card"]
        assert totals["captured_cents"] == sum(s["price_cents"] for s in cards), where
        assert totals["captured_count"] == len(cards), where
        items = {slot.item: code for code, slot in self.slots.items()}
        # Per item from the report's totals: its list holds only the latest requests.
        captured = Counter({items[int(item)]: count
                            for item, count in report["captured_by_item"].items()})
        assert captured == Counter(s["slot_code"] for s in cards), where
        given_back = [s for s in sales if s["method"] == "card" and s["reader_reference"]
                      and s["state"] != "completed"]
        assert totals["reverted_count"] == len(given_back), where
        assert totals["reverted_cents"] == sum(s["price_cents"] for s in given_back), where

        # Accounts: a completed sale took its price once, any other took nothing (or gave it
        # back); each balance is what the book says, and the sum of its entries.
        for s in sales:
            if s["method"] == "account":
                net = per_sale.get(s["id"], 0)
                assert net == (-s["price_cents"] if s["state"] == "completed" else 0), (
                    f"{where}: sale {s['id']} {s['state']} moved {net} cents")
        for name, member_id in self.member_ids.items():
            debits = sum(s["price_cents"] for s in completed if s["member_id"] == member_id)
            wanted = self.opening[name] + self.top_ups[name] - debits
            assert wanted == self.balances[name], f"{where}: {name}"
            assert members[member_id] == entries[member_id] == wanted, (
                f"{where}: {name} has {members[member_id]} (entries {entries[member_id]}), "
                f"expected {wanted}")

        # Stock: what fell out of each spiral is what the ledger saw drop plus what the stuck
        # beam missed and the overruns pushed out; the ledger holds what the restocks and the
        # drops leave, which is what the machine holds.
        for code, slot in self.slots.items():
            now = machine["slots"][code]
            seen = sum(1 for s in sales if s["slot_code"] == code and s["id"] in dispensed)
            assert now["delivered"] == seen + slot.unseen + slot.overrun == slot.delivered, (
                f"{where}: slot {code} delivered {now['delivered']}, the ledger saw {seen}, "
                f"the beam missed {slot.unseen}, overrun {slot.overrun}")
            assert stock[code] == slot.ledger_stock == now["stock"], (
                f"{where}: slot {code} holds {now['stock']}, the ledger says {stock[code]}, "
                f"the book {slot.ledger_stock}")


def differences(seen: dict[str, Any], wanted: dict[str, Any]) -> str:
    return ", ".join(f"{key}: {seen.get(key)} not {value}"
                     for key, value in wanted.items() if seen.get(key) != value)

"""Devices pulled out and noisy serial lines, seen from outside the kiosk's process.

The server runs as ``kiosk serve``; the card reader and the fingerprint module are simulators
in processes of their own, driven through their consoles, as a technician at the machine would
pull a cable or as a bad USB lead would mangle a line. The vending mechanism lives inside the
server (gpiozero mock pins cannot cross processes): its sensor and motor cables are pulled
through ``/api/sim/vending``.

What is checked is what the people around the machine see: ``/readyz`` and the catalog say
which way to pay is gone and why, the device comes back by itself, the card provider's
settlement report never shows a charge for a product that was not delivered (nor two charges,
nor the wrong amount), a member's balance is exact, and the ledger has no unfinished sale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.faults.conftest import KioskFactory
from tests.faults.processes import (
    CardReaderProcess,
    FingerprintProcess,
    KioskProcess,
    balances,
    ledger_file,
    sale_row,
    unfinished,
    wait_for,
    wait_for_state,
)

TERMINAL = ("completed", "declined", "cancelled", "voided", "needs_review")
#: A vend slow enough for a cable to be pulled while the spiral turns.
SLOW_SPIRALS = "revolution=2.5&start_limit=1&turn_limit=6&drop_limit=1&nudges=0"
#: Demo prices and opening balances (kiosk.demo).
PRICE = {"A1": 120, "A2": 130, "A3": 220, "A4": 180, "B1": 150, "B2": 140, "C1": 190}
ALICE, BOB = "Alice Demo", "Bob Demo"
#: Generous: a reconnect waits out a backoff of up to 0.5 s, on a machine that may be busy.
BACK = 20.0


# --- what a person can see ------------------------------------------------------------------


def device(c: httpx.Client, kind: str) -> dict[str, Any]:
    """One device's health as /readyz reports it (to loopback)."""
    devices: dict[str, dict[str, Any]] = c.get("/readyz").json()["devices"]
    return devices[kind]


def wait_for_device(c: httpx.Client, kind: str, state: str, timeout: float = BACK) -> None:
    wait_for(f"the {kind} reader {state}", lambda: device(c, kind)["state"] == state,
             timeout=timeout)


def payment_methods(c: httpx.Client) -> list[str]:
    methods: list[str] = c.get("/api/catalog").json()["payment_methods"]
    return methods


def start_sale(c: httpx.Client, slot: str, method: str) -> str:
    answer = c.post("/api/sales", json={"slot": slot, "method": method})
    assert answer.status_code == 201, answer.text
    sale_id: str = answer.json()["id"]
    return sale_id


def sale(c: httpx.Client, sale_id: str) -> dict[str, Any]:
    answer = c.get(f"/api/sales/{sale_id}")
    answer.raise_for_status()
    found: dict[str, Any] = answer.json()
    return found


def finish(c: httpx.Client, sale_id: str) -> dict[str, Any]:
    """Wait for the sale to end; the sale as the customer's screen shows it."""
    wait_for_state(c, sale_id, *TERMINAL, timeout=30)
    return sale(c, sale_id)


def card_sale(c: httpx.Client, reader: CardReaderProcess, slot: str) -> dict[str, Any]:
    """A customer buys from ``slot`` with a card that is approved."""
    sale_id = start_sale(c, slot, "card")
    wait_for_state(c, sale_id, "authorizing")
    reader.say("approve")
    return finish(c, sale_id)


def wait_for_card_request(reader: CardReaderProcess) -> None:
    """Until the reader itself has the vend request open and asks for a card."""
    wait_for("the reader asking for a card", lambda: "reader=vend" in reader.say("state"))


def account_sale(
    c: httpx.Client, reader: FingerprintProcess, finger: str, slot: str
) -> dict[str, Any]:
    """A member buys from ``slot`` with a finger on the reader, then lifts it."""
    sale_id = start_sale(c, slot, "account")
    wait_for_state(c, sale_id, "authorizing")
    reader.say(f"place {finger}")
    try:
        return finish(c, sale_id)
    finally:
        reader.say("lift")


# --- what the card provider and the ledger say ----------------------------------------------


def charges(report: dict[str, Any]) -> list[int]:
    """The amounts the card provider captured, oldest first."""
    return [t["authorized_cents"] for t in report["transactions"] if t["status"] == "captured"]


def assert_nothing_left_open(report: dict[str, Any]) -> None:
    """No money held and no request waiting on the reader."""
    totals = report["totals"]
    assert (totals["open_sessions"], totals["pending_requests"]) == (0, 0), report


def account_entries(database: Path, sale_id: str) -> list[int]:
    """The account entries a sale made, oldest first (a debit is negative)."""
    with ledger_file(database) as db:
        return [r["amount_cents"] for r in db.execute(
            "SELECT amount_cents FROM account_entry WHERE sale_id = ? ORDER BY id", (sale_id,))]


def assert_ledger_settled(kiosk: KioskProcess) -> None:
    assert unfinished(kiosk.database) == []


def protocol_errors(kiosk: KioskProcess, who: str) -> list[str]:
    """The server's log lines about protocol errors from ``who`` ("card" or "fingerprint")."""
    return [line for line in kiosk.log_text().splitlines()
            if f"{who} reader on" in line and "protocol error" in line]


# --- unplugged and plugged back in ----------------------------------------------------------


def test_an_unplugged_card_reader_leaves_paying_by_finger_and_comes_back_by_itself(
    kiosk_process: KioskFactory, card_reader: CardReaderProcess,
    fingerprint_reader: FingerprintProcess,
) -> None:
    kiosk = kiosk_process()
    assert kiosk.start() == "in service"
    with kiosk.client() as c:
        card_reader.say("fault unplug")
        wait_for_device(c, "card", "offline")
        ready = c.get("/readyz")
        assert ready.status_code == 200  # members can still pay
        assert payment_methods(c) == ["account"]
        assert device(c, "card")["reason"]  # says why, for the technician
        refused = c.post("/api/sales", json={"slot": "A1", "method": "card"})
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "payment_unavailable"
        paid = account_sale(c, fingerprint_reader, "alice", "A2")
        assert paid["state"] == "completed", paid

        # With the fingerprint reader gone too there is no way to pay: the kiosk says so.
        fingerprint_reader.say("fault unplug")
        wait_for("the kiosk out of service", lambda: c.get("/readyz").status_code == 503)
        message = c.get("/readyz").json()["error"]["message"]
        assert "no way to pay" in message and "card reader offline" in message, message
        catalog = c.get("/api/catalog").json()
        assert not catalog["in_service"] and catalog["payment_methods"] == []
        fingerprint_reader.say("fault replug")
        wait_for_device(c, "fingerprint", "ok")

        card_reader.say("fault replug")
        wait_for_device(c, "card", "ok")
        assert payment_methods(c) == ["card", "account"]
        bought = card_sale(c, card_reader, "A1")
        assert bought["state"] == "completed", bought
    report = card_reader.report()
    assert charges(report) == [PRICE["A1"]]
    assert_nothing_left_open(report)
    assert balances(kiosk.database)[ALICE] == 2000 - PRICE["A2"]
    assert_ledger_settled(kiosk)


def test_a_card_reader_unplugged_mid_sale_never_charges_the_customer(
    kiosk_process: KioskFactory, card_reader: CardReaderProcess,
) -> None:
    kiosk = kiosk_process(vending=f"sim://?{SLOW_SPIRALS}")
    assert kiosk.start() == "in service"
    with kiosk.client() as c:
        # Pulled while the reader asks for the card: the sale ends, nothing is held.
        waiting = start_sale(c, "A1", "card")
        wait_for_state(c, waiting, "authorizing")
        card_reader.say("fault unplug")
        ended = finish(c, waiting)
        assert ended["state"] == "cancelled" and "card reader" in ended["reason"], ended
        wait_for_device(c, "card", "offline")
        card_reader.say("fault replug")
        wait_for_device(c, "card", "ok")

        # Pulled after the approval, while the product is on its way: the kiosk cannot
        # confirm the charge, so the reader never makes it; the technician is told.
        vending = start_sale(c, "A2", "card")
        wait_for_state(c, vending, "authorizing")
        card_reader.say("approve")
        wait_for_state(c, vending, "dispensing")
        card_reader.say("fault unplug")
        assert sale(c, vending)["state"] == "dispensing", "the vend ended before the unplug"
        ended = finish(c, vending)
        assert ended["state"] == "needs_review", ended
        assert "capture" in ended["reason"], ended
        card_reader.say("fault replug")
        wait_for_device(c, "card", "ok")

        bought = card_sale(c, card_reader, "A3")
        assert bought["state"] == "completed", bought
    report = card_reader.report()
    assert [(t["status"], t["authorized_cents"]) for t in report["transactions"]] == [
        ("abandoned", 0), ("reverted", PRICE["A2"]), ("captured", PRICE["A3"])]
    assert charges(report) == [PRICE["A3"]]
    assert_nothing_left_open(report)
    assert_ledger_settled(kiosk)


def test_an_unplugged_fingerprint_reader_leaves_paying_by_card_and_never_debits_wrongly(
    kiosk_process: KioskFactory, card_reader: CardReaderProcess,
    fingerprint_reader: FingerprintProcess,
) -> None:
    kiosk = kiosk_process(vending=f"sim://?{SLOW_SPIRALS}")
    assert kiosk.start() == "in service"
    with kiosk.client() as c:
        fingerprint_reader.say("fault unplug")
        wait_for_device(c, "fingerprint", "offline")
        assert c.get("/readyz").status_code == 200
        assert payment_methods(c) == ["card"]
        assert device(c, "fingerprint")["reason"]
        fingerprint_reader.say("fault replug")
        wait_for_device(c, "fingerprint", "ok")
        assert payment_methods(c) == ["card", "account"]

        # Pulled while the kiosk waits for a finger: the sale ends, the balance is untouched.
        waiting = start_sale(c, "A1", "account")
        wait_for_state(c, waiting, "authorizing")
        fingerprint_reader.say("fault unplug")
        ended = finish(c, waiting)
        assert ended["state"] == "cancelled" and "fingerprint reader" in ended["reason"], ended
        assert account_entries(kiosk.database, waiting) == []
        fingerprint_reader.say("fault replug")
        wait_for_device(c, "fingerprint", "ok")

        # Pulled once the finger matched: the debit is already recorded, the vend goes on.
        vending = start_sale(c, "A4", "account")
        wait_for_state(c, vending, "authorizing")
        fingerprint_reader.say("place alice")
        wait_for_state(c, vending, "dispensing")
        fingerprint_reader.say("fault unplug")
        fingerprint_reader.say("lift")
        ended = finish(c, vending)
        assert ended["state"] == "completed", ended
        assert account_entries(kiosk.database, vending) == [-PRICE["A4"]]
        fingerprint_reader.say("fault replug")
        wait_for_device(c, "fingerprint", "ok")
        bought = account_sale(c, fingerprint_reader, "bob", "A1")
        assert bought["state"] == "completed", bought
    assert balances(kiosk.database) == {ALICE: 2000 - PRICE["A4"], BOB: 150 - PRICE["A1"]}
    assert card_reader.report()["transactions"] == []
    assert_ledger_settled(kiosk)


def test_a_vending_cable_pulled_mid_sale_gives_the_money_back_and_says_why(
    kiosk_process: KioskFactory, card_reader: CardReaderProcess,
    fingerprint_reader: FingerprintProcess,
) -> None:
    """The mechanism's cables are its drop beam and its motors; a pulled one looks like a
    beam that is always blocked, or a motor that does not turn."""
    kiosk = kiosk_process()
    assert kiosk.start() == "in service"
    with kiosk.client() as c:
        # The drop beam's cable comes out while a card customer waits for the reader.
        blocked = start_sale(c, "A1", "card")
        wait_for_state(c, blocked, "authorizing")
        c.post("/api/sim/vending/beam", json={"fault": "stuck_blocked"}).raise_for_status()
        card_reader.say("approve")
        ended = finish(c, blocked)
        # Either the approval came first (the vend is refused: voided), or the mechanism
        # noticed the cut beam first and the kiosk, out of service, cancelled the request.
        assert ended["state"] in ("voided", "cancelled"), ended
        ready = c.get("/readyz")
        assert ready.status_code == 503
        assert "beam" in ready.json()["error"]["message"]
        catalog = c.get("/api/catalog").json()
        assert not catalog["in_service"] and catalog["payment_methods"] == []
        out = c.post("/api/sales", json={"slot": "A2", "method": "card"})
        assert out.status_code == 503 and "beam" in out.json()["error"]["message"]

        # Plugged back in: the mechanism is ok again by itself, and sells.
        c.post("/api/sim/vending/beam", json={"fault": "none"}).raise_for_status()
        wait_for("the kiosk back in service", lambda: c.get("/readyz").status_code == 200,
                 timeout=BACK)
        # The kiosk switched the card reader off while it could not sell, and on again now.
        wait_for("the card reader enabled again", lambda: device(c, "card")["reason"] == "ready")
        bought = card_sale(c, card_reader, "A2")
        assert bought["state"] == "completed", bought

        # A motor's cable comes out while a member pays: credited back, only that slot stops.
        c.post("/api/sim/vending/fault",
               json={"slot": "A4", "fault": "motor_missing"}).raise_for_status()
        stalled = account_sale(c, fingerprint_reader, "alice", "A4")
        assert stalled["state"] == "voided", stalled
        assert account_entries(kiosk.database, stalled["id"]) == [-PRICE["A4"], PRICE["A4"]]
        slots = {s["code"]: s["stock_state"] for s in c.get("/api/catalog").json()["slots"]}
        assert slots["A4"] == "disabled" and slots["A3"] == "available"
        assert c.get("/readyz").status_code == 200
        c.post("/api/sim/vending/fault", json={"slot": "A4", "fault": "none"}).raise_for_status()
        bought = account_sale(c, fingerprint_reader, "alice", "A3")
        assert bought["state"] == "completed", bought
    report = card_reader.report()
    assert [t["status"] for t in report["transactions"]][-1] == "captured"
    assert charges(report) == [PRICE["A2"]]
    assert_nothing_left_open(report)
    assert balances(kiosk.database)[ALICE] == 2000 - PRICE["A3"]
    assert sale_row(kiosk.database, blocked)["state"] == ended["state"]
    assert_ledger_settled(kiosk)


# --- noise, cut lines and replays on the card line (Qibixx text lines) ------------------------


def test_noise_and_cut_lines_on_the_card_line_are_logged_and_the_reader_keeps_selling(
    kiosk_process: KioskFactory, card_reader: CardReaderProcess,
) -> None:
    kiosk = kiosk_process()
    assert kiosk.start() == "in service"
    with kiosk.client() as c:
        # While idle: noise, and the next line cut short (the reader's answer to the request).
        card_reader.say("fault garbage")
        wait_for("the noise read", lambda: len(protocol_errors(kiosk, "card")) >= 8)
        card_reader.say("fault truncated")
        card_reader.say("approve")  # the customer's card is ready before the request
        bought = finish(c, start_sale(c, "A1", "card"))
        assert bought["state"] == "completed", bought
        assert any("d,STAT'" in line for line in protocol_errors(kiosk, "card"))

        # In the middle of a sale: noise while the reader asks for the card.
        noisy = start_sale(c, "A2", "card")
        wait_for_card_request(card_reader)
        before = len(protocol_errors(kiosk, "card"))
        card_reader.say("fault garbage")
        wait_for("the noise read", lambda: len(protocol_errors(kiosk, "card")) > before)
        card_reader.say("approve")
        assert finish(c, noisy)["state"] == "completed"
        health = device(c, "card")
        assert health["state"] == "ok" and health["detail"]["protocol_errors"] >= 17
    report = card_reader.report()
    assert charges(report) == [PRICE["A1"], PRICE["A2"]]
    assert_nothing_left_open(report)
    log = kiosk.log_text()
    assert "4111111111111111" not in log and "<redacted>" in log  # no card data in the log
    assert_ledger_settled(kiosk)


def test_an_approval_cut_short_on_the_card_line_is_given_back_and_the_reader_keeps_selling(
    kiosk_process: KioskFactory, card_reader: CardReaderProcess,
) -> None:
    kiosk = kiosk_process()
    assert kiosk.start() == "in service"
    with kiosk.client() as c:
        lost = start_sale(c, "A1", "card")
        wait_for_card_request(card_reader)
        card_reader.say("fault truncated")
        card_reader.say("approve")  # the reader approves; the kiosk reads half a line
        wait_for("the cut line read", lambda: any(
            "d,STATUS,R" in line for line in protocol_errors(kiosk, "card")))
        assert sale(c, lost)["state"] == "authorizing"
        # Nothing happens on the screen, so the customer gives up.
        assert c.post(f"/api/sales/{lost}/cancel").status_code == 200
        assert finish(c, lost)["state"] == "cancelled"
        # The approval the kiosk never saw is not left holding the customer's money.
        wait_for("the lost approval given back", lambda: card_reader.report()[
            "transactions"][0]["status"] == "reverted", timeout=BACK)
        assert device(c, "card")["state"] == "ok"
        bought = card_sale(c, card_reader, "A2")
        assert bought["state"] == "completed", bought
    report = card_reader.report()
    assert charges(report) == [PRICE["A2"]]
    assert_nothing_left_open(report)
    assert_ledger_settled(kiosk)


def test_a_replayed_card_approval_never_charges_twice_nor_the_wrong_amount(
    kiosk_process: KioskFactory, card_reader: CardReaderProcess,
) -> None:
    kiosk = kiosk_process()
    assert kiosk.start() == "in service"
    with kiosk.client() as c:
        first = card_sale(c, card_reader, "A1")
        assert first["state"] == "completed", first
        # While idle, the 1.20 approval comes again: no request is open, it is voided.
        card_reader.say("fault replayed")
        wait_for("the stray approval noticed", lambda: "no vend request open" in kiosk.log_text())

        # While the next customer (1.30) is asked for a card, the old 1.20 approval comes
        # again: the kiosk must not sell the 1.30 product for it.
        stale = start_sale(c, "A2", "card")
        wait_for_card_request(card_reader)
        card_reader.say("fault replayed")
        ended = finish(c, stale)
        assert ended["state"] == "declined" and "1.20 instead of 1.30" in ended["reason"], ended

        # The approval of a sale in progress comes twice: charged once.
        twice = start_sale(c, "A2", "card")
        wait_for_card_request(card_reader)
        card_reader.say("approve")
        card_reader.say("fault replayed")
        assert finish(c, twice)["state"] == "completed"
        wait_for_device(c, "card", "ok")
        after = card_sale(c, card_reader, "A4")
        assert after["state"] == "completed", after
    report = card_reader.report()
    assert charges(report) == [PRICE["A1"], PRICE["A2"], PRICE["A4"]]
    assert_nothing_left_open(report)
    stale_request = report["transactions"][1]
    assert stale_request["requested_cents"] == PRICE["A2"]
    assert stale_request["status"] != "captured"
    assert_ledger_settled(kiosk)


# --- cut and replayed frames on the fingerprint line (R30x binary frames) --------------------


def test_cut_frames_on_the_fingerprint_line_are_logged_resynced_and_retried(
    kiosk_process: KioskFactory, fingerprint_reader: FingerprintProcess,
) -> None:
    kiosk = kiosk_process()
    assert kiosk.start() == "in service"
    with kiosk.client() as c:
        # While idle: the module's next answer will come with noise in front and cut short.
        fingerprint_reader.say("fault garbage")
        fingerprint_reader.say("fault truncated")
        bought = account_sale(c, fingerprint_reader, "alice", "A1")
        assert bought["state"] == "completed", bought
        errors = protocol_errors(kiosk, "fingerprint")
        assert any("short frame" in line and "resynchronising" in line for line in errors)
        assert any("garbage" in line for line in errors)

        # In the middle of a sale: the answer that says the finger is there comes cut short.
        noisy = start_sale(c, "A2", "account")
        wait_for_state(c, noisy, "authorizing")
        before = len(protocol_errors(kiosk, "fingerprint"))
        fingerprint_reader.say("fault truncated")
        fingerprint_reader.say("place bob")
        wait_for("the cut frame read", lambda: len(protocol_errors(kiosk, "fingerprint")) > before)
        ended = finish(c, noisy)
        fingerprint_reader.say("lift")
        assert ended["state"] == "completed", ended
        assert device(c, "fingerprint")["state"] == "ok"
    assert balances(kiosk.database) == {ALICE: 2000 - PRICE["A1"], BOB: 150 - PRICE["A2"]}
    assert_ledger_settled(kiosk)


def test_a_replayed_fingerprint_answer_never_charges_another_member(
    kiosk_process: KioskFactory, fingerprint_reader: FingerprintProcess,
) -> None:
    kiosk = kiosk_process()
    assert kiosk.start() == "in service"
    with kiosk.client() as c:
        alice = account_sale(c, fingerprint_reader, "alice", "A1")
        assert alice["state"] == "completed", alice
        # Every answer of Bob's sale comes after a stale copy of the last answer to the same
        # command: to the search, that is Alice's match. The kiosk must not take it for Bob's.
        fingerprint_reader.say("fault replayed 100")
        bob = account_sale(c, fingerprint_reader, "bob", "A1")
        assert bob["state"] == "cancelled" and "fingerprint reader" in bob["reason"], bob
        assert any("at once (a replayed frame?)" in line
                   for line in protocol_errors(kiosk, "fingerprint"))
        fingerprint_reader.say("fault clear")
        assert device(c, "fingerprint")["state"] == "ok"
        again = account_sale(c, fingerprint_reader, "bob", "A1")
        assert again["state"] == "completed", again
    assert account_entries(kiosk.database, bob["id"]) == []
    assert balances(kiosk.database) == {ALICE: 2000 - PRICE["A1"], BOB: 150 - PRICE["A1"]}
    assert_ledger_settled(kiosk)


def test_a_drop_beam_cut_while_idle_stops_sales_before_anyone_pays(
    kiosk_process: KioskFactory, card_reader: CardReaderProcess,
    fingerprint_reader: FingerprintProcess,
) -> None:
    kiosk = kiosk_process()
    assert kiosk.start() == "in service"
    with kiosk.client() as c:
        c.post("/api/sim/vending/beam", json={"fault": "stuck_blocked"}).raise_for_status()
        wait_for("the kiosk out of service", lambda: c.get("/readyz").status_code == 503)
        assert "drop beam is blocked" in c.get("/readyz").json()["error"]["message"]
        refused = c.post("/api/sales", json={"slot": "A1", "method": "card"})
        assert refused.status_code == 503, refused.text
        slots = {s["code"]: s["stock_state"] for s in c.get("/api/catalog").json()["slots"]}
        assert "disabled" not in slots.values()  # the beam is at fault, not a slot
        c.post("/api/sim/vending/beam", json={"fault": "none"}).raise_for_status()
        wait_for("the kiosk back in service", lambda: c.get("/readyz").status_code == 200,
                 timeout=BACK)
        wait_for("the card reader enabled again", lambda: device(c, "card")["reason"] == "ready")
        assert card_sale(c, card_reader, "A1")["state"] == "completed"
    assert card_reader.report()["totals"]["captured_count"] == 1
    assert_ledger_settled(kiosk)

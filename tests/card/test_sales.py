"""The Qibixx driver against the simulated interface: every way a card sale can go."""

from __future__ import annotations

import asyncio
import re

import pytest

from drivers.base import (
    Authorization,
    AuthorizationOutcome,
    DeviceEvent,
    DeviceKind,
    DeviceRejected,
)
from drivers.card.qibixx import QibixxCardReader
from drivers.registry import DeviceUrlError, parse_device_url
from simulators.card import CardSimulator, ReaderState, Settlement
from tests.waiting import eventually

APPROVED = AuthorizationOutcome.APPROVED
DECLINED = AuthorizationOutcome.DECLINED


async def test_approved_sale_is_captured_and_the_provider_settles_it(
    sim: CardSimulator, reader: QibixxCardReader
) -> None:
    sim.present_card("approved")
    auth = await reader.authorize(120, 10, timeout=2)
    assert auth.outcome is APPROVED and auth.amount_cents == 120
    await reader.capture(auth)
    report = sim.settlement()
    assert [t.status for t in report.transactions] == [Settlement.CAPTURED]
    assert report.captured_cents == 120 and report.open_sessions == 0
    assert sim.received[-2:] == ["D,REQ,1.20,10", "D,END"]
    assert sim.reader_state is ReaderState.ENABLED


async def test_failed_vend_is_voided_and_nobody_is_charged(
    sim: CardSimulator, reader: QibixxCardReader
) -> None:
    sim.present_card("approved")
    auth = await reader.authorize(250, 3, timeout=2)
    await reader.void(auth)
    report = sim.settlement()
    assert report.transactions[0].status is Settlement.REVERTED
    assert report.captured_cents == 0 and report.reverted_cents == 250
    assert sim.received[-1] == "D,END,-1"


async def test_declined_card_is_reported_declined(
    sim: CardSimulator, reader: QibixxCardReader
) -> None:
    sim.present_card("declined")
    auth = await reader.authorize(120, 10, timeout=2)
    assert auth.outcome is DECLINED and not auth.reference
    assert sim.settlement().transactions[0].status is Settlement.DECLINED


async def test_insufficient_funds_is_a_decline(
    sim: CardSimulator, reader: QibixxCardReader
) -> None:
    sim.present_card("insufficient_funds")
    auth = await reader.authorize(120, 10, timeout=2)
    assert auth.outcome is DECLINED
    (txn,) = sim.settlement().transactions
    assert txn.status is Settlement.DECLINED and txn.note == "insufficient funds"


async def test_customer_cancelling_at_the_reader_ends_the_request_uncharged(
    sim: CardSimulator, reader: QibixxCardReader
) -> None:
    sim.customer_cancels()
    auth = await reader.authorize(120, 10, timeout=2)
    # The interface answers d,STATUS,RESULT,-1 for a cancel as for a decline: it cannot tell.
    assert auth.outcome is DECLINED and "cancelled" in auth.reason
    report = sim.settlement()
    assert report.transactions[0].status is Settlement.CANCELLED
    assert report.captured_cents == 0 and report.open_sessions == 0


async def test_nobody_presenting_a_card_times_out_at_the_reader(
    sim: CardSimulator, reader: QibixxCardReader
) -> None:
    sim.reader_timeout = 0.2
    auth = await reader.authorize(120, 10, timeout=3)
    assert auth.outcome is DECLINED
    assert sim.settlement().transactions[0].status is Settlement.TIMED_OUT
    assert sim.reader_state is ReaderState.ENABLED


async def test_kiosk_deadline_cancels_the_request_at_the_reader(
    sim: CardSimulator, reader: QibixxCardReader, events: list[DeviceEvent]
) -> None:
    auth = await reader.authorize(120, 10, timeout=0.2)
    assert auth.outcome is AuthorizationOutcome.TIMED_OUT
    assert sim.received[-1] == "D,REQ,-1"
    assert sim.settlement().transactions[0].status is Settlement.ABANDONED
    assert [e.name for e in events] == ["card_requested", "timed_out"]
    # the next sale works: the driver waited out a possible late answer first
    sim.present_card("approved")
    assert (await reader.authorize(120, 10, timeout=2)).approved


async def test_cancelling_the_waiting_task_cancels_the_request_at_the_reader(
    sim: CardSimulator, reader: QibixxCardReader
) -> None:
    waiting = asyncio.create_task(reader.authorize(120, 10, timeout=10))
    await eventually(lambda: "D,REQ,1.20,10" in sim.received)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert sim.received[-1] == "D,REQ,-1"
    report = sim.settlement()
    assert report.open_sessions == 0 and report.pending_requests == 0
    assert report.transactions[0].status is Settlement.ABANDONED


async def test_cancel_wakes_a_waiting_authorize_which_returns_cancelled(
    sim: CardSimulator, reader: QibixxCardReader
) -> None:
    waiting = asyncio.create_task(reader.authorize(120, 10, timeout=10))
    await eventually(lambda: "D,REQ,1.20,10" in sim.received)
    await reader.cancel()
    auth = await waiting
    assert auth.outcome is AuthorizationOutcome.CANCELLED
    assert sim.settlement().transactions[0].status is Settlement.ABANDONED


async def test_an_approval_racing_the_kiosks_cancel_is_voided_not_left_open(
    sim: CardSimulator, reader: QibixxCardReader
) -> None:
    waiting = asyncio.create_task(reader.authorize(120, 10, timeout=10))
    await eventually(lambda: "D,REQ,1.20,10" in sim.received)
    sim.present_card("approved")  # the approval is on the wire...
    cancelling = asyncio.ensure_future(reader.cancel())  # ...as the kiosk cancels
    auth = await waiting
    await cancelling
    await eventually(lambda: sim.settlement().open_sessions == 0)
    # Which of the two lines the driver reads first is up to the event loop; either way the
    # approval is voided once, and the reader confirms it (no answer is mistaken for another).
    assert auth.outcome in (AuthorizationOutcome.CANCELLED, APPROVED)
    assert sim.settlement().transactions[0].status is Settlement.REVERTED
    await eventually(lambda: sim.sent[-1] == "d,STATUS,IDLE")
    assert sim.received.count("D,END,-1") == 1
    assert reader.health.ok and reader.health.detail["protocol_errors"] == 0


async def test_approval_for_another_amount_is_voided_and_reported_declined(
    sim: CardSimulator, reader: QibixxCardReader
) -> None:
    sim.approve_wrong_amount(difference_cents=50)
    auth = await reader.authorize(120, 10, timeout=2)
    assert auth.outcome is DECLINED and "1.70 instead of 1.20" in auth.reason
    (txn,) = sim.settlement().transactions
    assert txn.authorized_cents == 170 and txn.status is Settlement.REVERTED
    assert sim.received[-1] == "D,END,-1"


async def test_capture_of_a_reference_that_is_not_open_is_rejected(
    sim: CardSimulator, reader: QibixxCardReader
) -> None:
    stranger = Authorization(APPROVED, 120, "qbx-0000-0000-0000-0000")
    with pytest.raises(DeviceRejected, match="no such session"):
        await reader.capture(stranger)
    sim.present_card("approved")
    auth = await reader.authorize(120, 10, timeout=2)
    await reader.capture(auth)
    sent = len(sim.received)
    await reader.capture(auth)  # asked again: confirmed, and nothing is sent twice
    assert sim.received[sent:] == []
    with pytest.raises(DeviceRejected, match="already charged"):
        await reader.void(auth)
    assert sim.settlement().captured_cents == 120


async def test_a_second_request_while_a_session_is_open_is_refused(
    sim: CardSimulator, reader: QibixxCardReader
) -> None:
    sim.present_card("approved")
    auth = await reader.authorize(120, 10, timeout=2)
    with pytest.raises(DeviceRejected, match="still open"):
        await reader.authorize(200, 11, timeout=2)
    await reader.void(auth)


async def test_cancel_voids_an_open_session_and_is_harmless_when_nothing_is_open(
    sim: CardSimulator, reader: QibixxCardReader
) -> None:
    await reader.cancel()
    sim.present_card("approved")
    await reader.authorize(120, 10, timeout=2)
    await reader.cancel()
    await reader.cancel()
    assert sim.settlement().transactions[0].status is Settlement.REVERTED
    assert sim.received.count("D,END,-1") == 1


async def test_events_follow_the_sale_for_the_screen(
    sim: CardSimulator, reader: QibixxCardReader, events: list[DeviceEvent]
) -> None:
    sim.present_card("approved")
    auth = await reader.authorize(120, 10, timeout=2)
    await reader.capture(auth)
    assert [e.name for e in events] == ["card_requested", "approved", "captured"]
    assert events[1].detail == {"amount_cents": 120, "reference": auth.reference}


async def test_reference_is_opaque_and_never_looks_like_a_card_number(
    sim: CardSimulator, reader: QibixxCardReader
) -> None:
    references = set()
    for _ in range(20):
        sim.present_card("approved")
        auth = await reader.authorize(100, 1, timeout=2)
        await reader.capture(auth)
        references.add(auth.reference)
    assert len(references) == 20
    assert not any(re.search(r"[0-9]{5}", ref) for ref in references)


async def test_auto_mode_answers_every_request_without_a_script() -> None:
    with CardSimulator(auto="approved", auto_delay=0.02, init_delay=0.01) as sim:
        reader = QibixxCardReader(sim.port)
        await reader.open()
        try:
            for _ in range(3):
                auth = await reader.authorize(150, 2, timeout=2)
                await reader.capture(auth)
        finally:
            await reader.close()
        assert sim.settlement().captured_cents == 450


def test_url_names_port_baud_and_timing() -> None:
    url = parse_device_url(
        "qibixx:///dev/ttyACM0?baud=57600&reply_timeout=1.5&settle=0", DeviceKind.CARD
    )
    reader = QibixxCardReader.from_url(url)
    assert reader.port == "/dev/ttyACM0" and reader.baudrate == 57600
    assert reader.timing.reply_timeout == 1.5 and reader.timing.settle == 0
    assert reader.timing.startup_timeout == 10.0
    plain = QibixxCardReader.from_url(parse_device_url("qibixx:///dev/x", DeviceKind.CARD))
    assert plain.baudrate == 115200


@pytest.mark.parametrize(
    "raw", ["qibixx:///dev/x?reply_timout=1", "qibixx:///dev/x?settle=soon", "qibixx:///dev/x?baud=0"]
)
def test_url_with_a_typo_or_a_bad_value_is_refused(raw: str) -> None:
    with pytest.raises(DeviceUrlError):
        QibixxCardReader.from_url(parse_device_url(raw, DeviceKind.CARD))

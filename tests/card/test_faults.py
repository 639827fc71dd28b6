"""The Qibixx driver when things go wrong: resets, breakage, noise, silence, unplug, restart."""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
import sys
import textwrap

import pytest

from drivers.base import (
    Authorization,
    AuthorizationOutcome,
    DeviceEvent,
    DeviceRejected,
    DeviceTimeout,
    DeviceUnavailable,
    HealthState,
)
from drivers.card.qibixx import QibixxCardReader
from simulators.card import CardSimulator, ReaderState, Settlement
from tests.card.conftest import fast_reader
from tests.waiting import eventually

#: A possible card number: what PROTOCOLS.md says must never reach a log.
CARD_NUMBER = re.compile(r"[0-9]{13,19}")


async def sell(sim: CardSimulator, reader: QibixxCardReader, cents: int = 120) -> None:
    """One approved, captured sale: proof the reader works."""
    sim.present_card("approved")
    auth = await reader.authorize(cents, 10, timeout=2)
    assert auth.approved, auth.reason
    await reader.capture(auth)


async def test_reader_reset_mid_session_voids_the_authorization_and_re_initialises(
    sim: CardSimulator, reader: QibixxCardReader, events: list[DeviceEvent]
) -> None:
    sim.present_card("approved")
    auth = await reader.authorize(120, 10, timeout=2)
    sim.reset_reader()
    await eventually(lambda: not reader.health.ok)  # the driver has read the reset line
    with pytest.raises(DeviceRejected, match="no such session"):
        await reader.capture(auth)
    report = sim.settlement()
    assert report.transactions[0].status is Settlement.REVERTED
    assert report.captured_cents == 0 and report.open_sessions == 0
    await eventually(lambda: reader.health.ok)
    assert "session_lost" in [e.name for e in events]
    assert sim.reader_state is ReaderState.ENABLED  # enabled again after the INIT
    # The reset already did what a void asks: the void is confirmed, and sends nothing.
    sent = len(sim.received)
    await reader.void(auth)
    assert sim.received[sent:] == []
    await sell(sim, reader)
    # Asked twice (the ledger failed to record the first answer), an ending is the same:
    # a repeated capture is confirmed, and a captured session cannot be voided.
    sim.present_card("approved")
    captured = await reader.authorize(150, 10, timeout=2)
    await reader.capture(captured)
    await reader.capture(captured)
    with pytest.raises(DeviceRejected, match="already charged"):
        await reader.void(captured)
    sim.present_card("approved")
    voided = await reader.authorize(170, 10, timeout=2)
    await reader.void(voided)
    await reader.void(voided)
    with pytest.raises(DeviceRejected, match="no such session"):
        await reader.capture(voided)
    report = sim.settlement()
    assert report.captured_cents == 120 + 150 and report.open_sessions == 0  # sell() and this


async def test_reader_reset_during_a_request_declines_it(
    sim: CardSimulator, reader: QibixxCardReader
) -> None:
    waiting = asyncio.create_task(reader.authorize(120, 10, timeout=5))
    await eventually(lambda: "D,REQ,1.20,10" in sim.received)
    sim.reset_reader()
    auth = await waiting
    assert auth.outcome is AuthorizationOutcome.DECLINED and "reset" in auth.reason
    await eventually(lambda: reader.health.ok)
    await sell(sim, reader)


async def test_broken_reader_takes_the_card_path_down_until_repaired(
    sim: CardSimulator, reader: QibixxCardReader
) -> None:
    sim.malfunction()
    await eventually(lambda: not reader.health.ok)
    with pytest.raises(DeviceUnavailable):
        await reader.authorize(120, 10, timeout=1)
    # it keeps retrying: the reader never initialises, so it ends up offline
    await eventually(lambda: reader.health.state is HealthState.OFFLINE)
    sim.repair()
    await eventually(lambda: reader.health.ok, within=5)
    await sell(sim, reader)


async def test_garbage_on_the_line_is_logged_and_ignored_and_never_shows_card_data(
    sim: CardSimulator, reader: QibixxCardReader, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sim.send_garbage()
    sim.send_line("d,STATUS,VEND")  # well-formed but out of sequence
    await eventually(lambda: reader.health.detail["protocol_errors"] == 9)
    assert reader.health.ok
    await sell(sim, reader)
    assert "protocol error" in caplog.text and "<redacted>" in caplog.text
    assert not CARD_NUMBER.search(caplog.text)


async def test_stray_approval_with_no_request_open_is_voided(
    sim: CardSimulator, reader: QibixxCardReader
) -> None:
    sim.send_line("d,STATUS,RESULT,1,1.20")
    await eventually(lambda: "D,END,-1" in sim.received)
    assert reader.health.ok
    await sell(sim, reader)


async def test_silent_interface_hits_its_deadlines_and_comes_back_by_itself(
    sim: CardSimulator, reader: QibixxCardReader
) -> None:
    sim.stop_answering()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(DeviceTimeout, match="d,STATUS,VEND"):
        await reader.authorize(120, 10, timeout=30)
    assert loop.time() - started < 2  # the reply deadline, not the customer's 30 s
    await eventually(lambda: not reader.health.ok)
    with pytest.raises(DeviceUnavailable):
        await reader.authorize(120, 10, timeout=1)  # at once: no second deadline to sit out
    sim.resume_answering()
    await eventually(lambda: reader.health.ok, within=5)
    await sell(sim, reader)


async def test_unconfirmed_capture_raises_and_the_reconnect_leaves_nothing_charged(
    sim: CardSimulator, reader: QibixxCardReader
) -> None:
    sim.present_card("approved")
    auth = await reader.authorize(120, 10, timeout=2)
    sim.stop_answering()
    with pytest.raises(DeviceTimeout, match="D,END"):
        await reader.capture(auth)
    sim.resume_answering()
    await eventually(lambda: reader.health.ok, within=5)
    with pytest.raises(DeviceRejected):
        await reader.capture(auth)  # the reconnect reset the reader: the session is gone
    report = sim.settlement()
    assert report.captured_cents == 0 and report.open_sessions == 0


async def test_unplugged_interface_goes_offline_and_comes_back_by_itself(
    sim: CardSimulator, reader: QibixxCardReader
) -> None:
    sim.present_card("approved")
    auth = await reader.authorize(120, 10, timeout=2)
    sim.unplug()
    await eventually(lambda: reader.health.state is HealthState.OFFLINE)
    with pytest.raises(DeviceUnavailable):
        await reader.authorize(120, 10, timeout=1)
    with pytest.raises(DeviceUnavailable):
        await reader.capture(auth)
    sim.replug()
    await eventually(lambda: reader.health.ok, within=5)
    with pytest.raises(DeviceRejected):
        await reader.capture(auth)
    assert sim.settlement().transactions[0].status is Settlement.REVERTED
    await sell(sim, reader)


async def test_disabled_reader_refuses_sales_until_enabled_again(
    sim: CardSimulator, reader: QibixxCardReader
) -> None:
    await reader.set_enabled(False)
    disabled = sim.reader_state
    assert disabled is ReaderState.DISABLED and sim.received[-1] == "D,READER,0"
    assert reader.health.ok and "disabled" in reader.health.reason
    with pytest.raises(DeviceRejected, match="disabled"):
        await reader.authorize(120, 10, timeout=1)
    await reader.set_enabled(True)
    assert sim.reader_state is ReaderState.ENABLED
    await sell(sim, reader)


async def test_a_disabled_reader_stays_disabled_across_a_replug(
    sim: CardSimulator, reader: QibixxCardReader
) -> None:
    await reader.set_enabled(False)
    sim.unplug()
    sim.replug()
    await eventually(lambda: reader.health.ok and sim.master_mode == 2, within=5)
    assert sim.reader_state is ReaderState.DISABLED


async def test_closing_leaves_the_reader_disabled_with_nothing_open(sim: CardSimulator) -> None:
    reader = fast_reader(sim.port)
    await reader.open()
    sim.present_card("approved")
    await reader.authorize(120, 10, timeout=2)
    await reader.close()
    await reader.close()  # idempotent
    with pytest.raises(DeviceUnavailable, match="closed"):
        await reader.authorize(120, 10, timeout=1)
    assert reader.health.state is HealthState.OFFLINE
    assert sim.reader_state is ReaderState.DISABLED
    report = sim.settlement()
    assert report.open_sessions == 0 and report.transactions[0].status is Settlement.REVERTED


async def test_closing_during_a_request_cancels_it_at_the_reader(sim: CardSimulator) -> None:
    reader = fast_reader(sim.port)
    await reader.open()
    waiting = asyncio.create_task(reader.authorize(120, 10, timeout=10))
    await eventually(lambda: "D,REQ,1.20,10" in sim.received)
    await reader.close()
    assert (await waiting).outcome is AuthorizationOutcome.CANCELLED
    assert sim.received[-2:] == ["D,REQ,-1", "D,READER,0"]
    assert sim.settlement().pending_requests == 0


async def test_a_restarted_kiosk_cannot_charge_the_old_session_but_confirms_its_void(
    sim: CardSimulator,
) -> None:
    # A kiosk process authorizes a sale and dies without closing anything.
    crashing = textwrap.dedent(f"""
        import asyncio, os
        from drivers.card.qibixx import QibixxCardReader
        async def main():
            reader = QibixxCardReader({sim.port!r})
            await reader.open()
            auth = await reader.authorize(120, 10, timeout=5)
            print(auth.reference, flush=True)
            os._exit(0)
        asyncio.run(main())
    """)
    sim.present_card("approved")
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", crashing], capture_output=True, text=True,
        timeout=20, check=True,
    )
    reference = done.stdout.strip()
    assert sim.settlement().open_sessions == 1
    # The next process introduces itself: the interface is still in master mode, so the
    # driver switches it off and on, which resets the reader and ends the old session.
    reader = fast_reader(sim.port)
    await reader.open()
    try:
        assert reader.health.ok
        old = Authorization(AuthorizationOutcome.APPROVED, 120, reference)
        with pytest.raises(DeviceRejected):
            await reader.capture(old)
        report = sim.settlement()
        assert report.open_sessions == 0 and report.transactions[0].status is Settlement.REVERTED
        assert "D,0" in sim.received
        # The reset on connect ended the old session unpaid: recovery's void is confirmed.
        await reader.void(old)
        await sell(sim, reader)
    finally:
        await reader.close()


@pytest.mark.parametrize("gives_up", ["deadline", "kiosk cancels"])
async def test_an_approval_garbled_on_the_line_is_voided_when_the_request_is_given_up(
    sim: CardSimulator, reader: QibixxCardReader, gives_up: str
) -> None:
    waiting = asyncio.create_task(reader.authorize(120, 10, timeout=1.0))
    await eventually(lambda: sim.reader_state is ReaderState.VEND)
    sim.truncate_next_lines()
    sim.present_card("approved")  # approved at the reader; the driver reads "d,STATUS,RE"
    await eventually(lambda: reader.health.detail["protocol_errors"] == 1)
    if gives_up == "kiosk cancels":
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    else:
        assert (await waiting).outcome is AuthorizationOutcome.TIMED_OUT
    await eventually(lambda: sim.settlement().open_sessions == 0)
    assert sim.settlement().transactions[0].status is Settlement.REVERTED
    await sell(sim, reader)  # the reader takes requests again


async def test_a_replayed_approval_of_another_amount_is_declined_and_its_request_cancelled(
    sim: CardSimulator, reader: QibixxCardReader
) -> None:
    await sell(sim, reader, 120)
    waiting = asyncio.create_task(reader.authorize(130, 11, timeout=5))
    await eventually(lambda: sim.reader_state is ReaderState.VEND)
    assert sim.replay_result()  # the 1.20 approval again, while 1.30 is asked for
    auth = await waiting
    assert auth.outcome is AuthorizationOutcome.DECLINED and "1.20 instead of 1.30" in auth.reason
    report = sim.settlement()
    assert [t.status for t in report.transactions] == [Settlement.CAPTURED, Settlement.ABANDONED]
    assert report.pending_requests == 0 and report.open_sessions == 0
    await sell(sim, reader, 130)

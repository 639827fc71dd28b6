"""Every injected fault: the driver logs it (in hex), resynchronises and never hangs."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from drivers.base import (
    DeviceError,
    DeviceEvent,
    DeviceProtocolError,
    DeviceRejected,
    DeviceTimeout,
    DeviceUnavailable,
    EnrollStep,
    HealthState,
)
from drivers.fingerprint.r30x import R30xFingerprintReader
from simulators.fingerprint import FingerprintSimulator
from tests.waiting import eventually

CHANNEL_LOG = "drivers.fingerprint.channel"


def protocol_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == CHANNEL_LOG and "protocol error" in record.getMessage()
    ]


async def test_a_corrupted_checksum_is_logged_in_hex_and_the_command_retried(
    sim: FingerprintSimulator, reader: R30xFingerprintReader, caplog: pytest.LogCaptureFixture
) -> None:
    sim.enrol("alice", 2)
    sim.corrupt_next_checksums()
    with caplog.at_level(logging.WARNING, CHANNEL_LOG):
        assert await reader.count() == 1
    [error] = protocol_errors(caplog)
    assert "checksum" in error and "EF 01 FF FF FF FF 07 00 05 00 00 01" in error
    assert sim.received.count("TEMPLATE_NUM") == 3  # the handshake's, the garbled one, the retry


async def test_an_answer_from_another_address_is_logged_and_the_command_retried(
    sim: FingerprintSimulator, reader: R30xFingerprintReader, caplog: pytest.LogCaptureFixture
) -> None:
    sim.answer_from_wrong_address()
    with caplog.at_level(logging.WARNING, CHANNEL_LOG):
        assert await reader.count() == 0
    [error] = protocol_errors(caplog)
    assert "frame from address 0x0BAD0ADD, expected 0xFFFFFFFF" in error
    assert "EF 01 0B AD 0A DD 07" in error


async def test_garbage_before_an_answer_is_logged_and_the_answer_still_read(
    sim: FingerprintSimulator, reader: R30xFingerprintReader, caplog: pytest.LogCaptureFixture
) -> None:
    sim.enrol("alice", 2)
    sim.send_garbage()
    with caplog.at_level(logging.WARNING, CHANNEL_LOG):
        assert await reader.count() == 1
    errors = protocol_errors(caplog)
    assert any("garbage" in error and "00 13 37" in error for error in errors)
    assert sim.received.count("TEMPLATE_NUM") == 2  # no retry was needed


async def test_answers_garbled_beyond_the_retry_raise_a_protocol_error_and_then_it_recovers(
    sim: FingerprintSimulator, reader: R30xFingerprintReader
) -> None:
    sim.corrupt_next_checksums(2)
    with pytest.raises(DeviceProtocolError, match="bad answer to TEMPLATE_NUM"):
        await reader.count()
    assert await reader.count() == 0


async def test_a_messy_image_is_captured_again_and_the_finger_still_identified(
    sim: FingerprintSimulator, reader: R30xFingerprintReader
) -> None:
    sim.enrol("alice", 4)
    sim.place_finger("alice")
    sim.fail_next_captures(1)
    events: list[DeviceEvent] = []
    reader.on_event(events.append)
    match = await reader.identify(1.0)
    assert match is not None and match.page == 4
    assert [e.detail for e in events if e.name == "finger_unreadable"] == [
        {"reason": "0x06 (image too messy)"}
    ]


async def test_a_finger_that_stays_unreadable_is_rejected_after_the_capture_attempts(
    sim: FingerprintSimulator, reader: R30xFingerprintReader
) -> None:
    sim.place_finger("alice")
    sim.fail_next_captures(10)
    with pytest.raises(DeviceRejected, match=r"in 3 tries: 0x06 \(image too messy\)"):
        await reader.identify(1.0)


async def test_a_flash_write_error_fails_the_enrolment_with_its_meaning(
    sim: FingerprintSimulator, reader: R30xFingerprintReader
) -> None:
    def progress(step: EnrollStep) -> None:
        if step in (EnrollStep.PLACE_FINGER, EnrollStep.PLACE_AGAIN):
            sim.place_finger("alice")
        elif step is EnrollStep.LIFT_FINGER:
            sim.lift_finger()

    sim.fail_next_flash_writes(1)
    with pytest.raises(DeviceRejected, match=r"page 9: 0x18 \(error writing flash\)"):
        await reader.enroll(9, 1.0, progress)
    assert sim.library == {}


async def test_flash_errors_on_delete_and_erase_say_what_failed(
    sim: FingerprintSimulator, reader: R30xFingerprintReader
) -> None:
    sim.enrol("alice", 1)
    sim.fail_next_flash_writes(2)
    with pytest.raises(DeviceRejected, match=r"delete page 1: 0x10 \(failed to delete\)"):
        await reader.delete(1)
    with pytest.raises(DeviceRejected, match=r"0x11 \(failed to clear library\)"):
        await reader.erase_all()
    assert sim.library == {1: "alice"}


async def test_a_silent_module_times_out_goes_offline_and_comes_back_by_itself(
    sim: FingerprintSimulator, reader: R30xFingerprintReader
) -> None:
    sim.stop_answering()
    with pytest.raises(DeviceTimeout, match=r"no answer to TEMPLATE_NUM within 0\.25 s"):
        await reader.count()
    assert reader.health.state is HealthState.DEGRADED

    async def keep_asking() -> None:
        while reader.health.state is not HealthState.OFFLINE:
            with contextlib.suppress(DeviceError):
                await reader.count()

    await asyncio.wait_for(keep_asking(), 3.0)
    assert "did not answer 3 commands in a row" in reader.health.reason
    sim.resume_answering()
    await eventually(lambda: reader.health.ok)
    assert await reader.count() == 0


async def test_unplugging_takes_the_reader_offline_and_replugging_brings_it_back_by_itself(
    sim: FingerprintSimulator, reader: R30xFingerprintReader
) -> None:
    sim.enrol("alice", 3)
    changes: list[HealthState] = []
    reader.on_health(lambda health: changes.append(health.state))
    sim.unplug()
    await eventually(lambda: reader.health.state is HealthState.OFFLINE)
    with pytest.raises(DeviceUnavailable):
        await reader.count()
    await asyncio.sleep(0.2)  # a few reconnect attempts against a missing port
    assert "cannot open" in reader.health.reason
    sim.replug()
    await eventually(lambda: reader.health.ok)
    assert await reader.count() == 1
    assert changes[0] is HealthState.OFFLINE and changes[-1] is HealthState.OK


async def test_an_identify_waiting_for_a_finger_ends_promptly_when_the_reader_is_unplugged(
    sim: FingerprintSimulator, reader: R30xFingerprintReader
) -> None:
    task = asyncio.create_task(reader.identify(timeout=30.0))
    await eventually(lambda: sim.received.count("GEN_IMG") >= 2)
    sim.unplug()
    with pytest.raises(DeviceUnavailable):
        await asyncio.wait_for(task, 1.0)


async def test_a_password_the_kiosk_does_not_know_takes_it_offline_until_cleared(
    sim: FingerprintSimulator, reader: R30xFingerprintReader
) -> None:
    sim.fault("wrong-password")
    with pytest.raises(DeviceUnavailable, match=r"0x21 \(password must be verified first\)"):
        await reader.count()
    await eventually(lambda: "wrong password" in reader.health.reason)
    assert reader.health.state is HealthState.OFFLINE
    sim.clear_faults()
    await eventually(lambda: reader.health.ok)
    assert await reader.count() == 0


async def test_the_answer_to_a_cancelled_command_is_not_taken_for_the_next_ones(
    sim: FingerprintSimulator, reader: R30xFingerprintReader, caplog: pytest.LogCaptureFixture
) -> None:
    sim.enrol("alice", 1)
    sim.enrol("bob", 2)
    sim.delay_answers(0.1)
    task = asyncio.create_task(reader.identify(timeout=30.0))
    await eventually(lambda: "GEN_IMG" in sim.received)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with caplog.at_level(logging.WARNING, CHANNEL_LOG):
        assert await reader.count() == 2
    assert protocol_errors(caplog) == []


async def test_two_answers_at_once_are_not_trusted_so_a_replayed_match_never_names_another_finger(
    sim: FingerprintSimulator, reader: R30xFingerprintReader, caplog: pytest.LogCaptureFixture
) -> None:
    sim.enrol("alice", 1)
    sim.enrol("bob", 2)
    sim.place_finger("alice")
    alice = await reader.identify(1.0)
    assert alice is not None and alice.page == 1
    sim.place_finger("bob")
    # Every answer now comes after a stale copy of the last one to the same command: to the
    # search, that is Alice's match.
    sim.replay_next_answers(100)
    with (caplog.at_level(logging.WARNING, CHANNEL_LOG),
          pytest.raises(DeviceProtocolError, match="at once")):
        await reader.identify(1.0)
    assert any("2 acknowledges to one GEN_IMG at once" in e for e in protocol_errors(caplog))
    sim.clear_faults()
    sim.replay_next_answers(1)  # one doubled answer: asked again, and then it is right
    bob = await reader.identify(1.0)
    assert bob is not None and bob.page == 2

"""The real R30x driver against the simulated module over a real pty."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from drivers.base import (
    DeviceEvent,
    DeviceKind,
    DeviceRejected,
    DeviceTimeout,
    DeviceUnavailable,
    EnrollStep,
    FingerMatch,
    HealthState,
)
from drivers.fingerprint.r30x import R30xFingerprintReader
from drivers.registry import DeviceUrlError, parse_device_url
from simulators.fingerprint import FingerprintSimulator
from tests.waiting import eventually

from .conftest import fast_reader


def guide(
    sim: FingerprintSimulator, *fingers: str
) -> tuple[list[EnrollStep], Callable[[EnrollStep], None]]:
    """A person at the sensor: places the next finger when asked, lifts it when asked."""
    steps: list[EnrollStep] = []
    queue = list(fingers)

    def progress(step: EnrollStep) -> None:
        steps.append(step)
        if step in (EnrollStep.PLACE_FINGER, EnrollStep.PLACE_AGAIN):
            sim.place_finger(queue.pop(0))
        elif step is EnrollStep.LIFT_FINGER:
            sim.lift_finger()

    return steps, progress


async def test_open_reports_what_the_module_says_about_itself_in_health(
    sim: FingerprintSimulator, reader: R30xFingerprintReader
) -> None:
    assert reader.health.state is HealthState.OK
    detail = reader.health.detail
    assert detail["capacity"] == 200
    assert detail["security_level"] == 3
    assert detail["packet_size"] == 128
    assert detail["address"] == "0xFFFFFFFF"
    assert detail["baud"] == 57600
    assert detail["port"] == sim.port
    assert sim.received[:3] == ["VFY_PWD", "READ_SYS_PARA", "TEMPLATE_NUM"]


async def test_identify_finds_the_page_of_the_enrolled_finger(
    sim: FingerprintSimulator, reader: R30xFingerprintReader
) -> None:
    sim.enrol("alice", 17)
    sim.place_finger("alice")
    match = await reader.identify(timeout=1.0)
    assert isinstance(match, FingerMatch) and match.page == 17 and match.score > 0


async def test_identify_returns_none_for_a_finger_not_in_the_library(
    sim: FingerprintSimulator, reader: R30xFingerprintReader
) -> None:
    sim.enrol("alice", 17)
    sim.place_finger("mallory")
    assert await reader.identify(timeout=1.0) is None


async def test_identify_waits_for_the_finger_and_says_it_was_placed(
    sim: FingerprintSimulator, reader: R30xFingerprintReader
) -> None:
    sim.enrol("alice", 0)
    events: list[DeviceEvent] = []
    reader.on_event(events.append)
    task = asyncio.create_task(reader.identify(timeout=2.0))
    await eventually(lambda: sim.received.count("GEN_IMG") >= 3)
    assert not task.done()
    sim.place_finger("alice")
    match = await task
    assert match is not None and match.page == 0
    names = [event.name for event in events]
    assert names == ["finger_placed", "finger_recognised"]
    assert all(event.device is DeviceKind.FINGERPRINT for event in events)


async def test_identify_times_out_when_no_finger_comes(reader: R30xFingerprintReader) -> None:
    with pytest.raises(DeviceTimeout, match=r"no finger on the sensor .* within 0.1 s"):
        await reader.identify(timeout=0.1)
    assert reader.health.ok


async def test_cancelling_identify_stops_at_once_and_the_reader_keeps_working(
    sim: FingerprintSimulator, reader: R30xFingerprintReader
) -> None:
    task = asyncio.create_task(reader.identify(timeout=30.0))
    await eventually(lambda: sim.received.count("GEN_IMG") >= 2)
    task.cancel()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert loop.time() - started < 0.1
    assert await reader.count() == 0


async def test_enroll_guides_the_person_through_every_step_and_stores_the_template(
    sim: FingerprintSimulator, reader: R30xFingerprintReader
) -> None:
    steps, progress = guide(sim, "alice", "alice")
    events: list[DeviceEvent] = []
    reader.on_event(events.append)
    await reader.enroll(page=5, timeout=1.0, progress=progress)
    assert steps == list(EnrollStep)
    assert sim.library == {5: "alice"}
    assert [e.detail["step"] for e in events if e.name == "enroll_step"] == [
        s.value for s in EnrollStep
    ]
    sim.place_finger("alice")
    match = await reader.identify(1.0)
    assert match is not None and match.page == 5


async def test_enroll_with_two_different_fingers_is_rejected_as_not_merging(
    sim: FingerprintSimulator, reader: R30xFingerprintReader
) -> None:
    _, progress = guide(sim, "alice", "bob")
    with pytest.raises(DeviceRejected, match=r"do not merge.*0x0A \(failed to combine"):
        await reader.enroll(page=5, timeout=1.0, progress=progress)
    assert sim.library == {}


async def test_enroll_beyond_the_library_is_rejected_before_asking_for_a_finger(
    sim: FingerprintSimulator, reader: R30xFingerprintReader
) -> None:
    steps, progress = guide(sim)
    with pytest.raises(DeviceRejected, match=r"page 200 is outside the library \(0..199\)"):
        await reader.enroll(page=200, timeout=1.0, progress=progress)
    assert steps == []


async def test_enroll_times_out_when_the_finger_is_never_lifted(
    sim: FingerprintSimulator, reader: R30xFingerprintReader
) -> None:
    sim.place_finger("alice")
    with pytest.raises(DeviceTimeout, match=r"not lifted within 0\.1 s"):
        await reader.enroll(page=1, timeout=0.1)


async def test_enroll_times_out_when_no_finger_comes(reader: R30xFingerprintReader) -> None:
    with pytest.raises(DeviceTimeout, match=r"to enrol at page 1 within 0\.1 s"):
        await reader.enroll(page=1, timeout=0.1)


async def test_delete_count_used_pages_and_erase_all_keep_the_library(
    sim: FingerprintSimulator, reader: R30xFingerprintReader
) -> None:
    for page, name in ((0, "a"), (7, "b"), (199, "c")):
        sim.enrol(name, page)
    assert await reader.count() == 3
    assert await reader.used_pages() == frozenset({0, 7, 199})
    await reader.delete(7)
    assert await reader.used_pages() == frozenset({0, 199})
    await reader.erase_all()
    assert await reader.count() == 0 and sim.library == {}


async def test_used_pages_reads_as_many_index_pages_as_the_capacity_needs(
    library_file: Path,
) -> None:
    with FingerprintSimulator(library_file, capacity=600) as sim:
        sim.enrol("a", 3)
        sim.enrol("b", 599)
        reader = fast_reader(sim.port)
        await reader.open()
        try:
            assert await reader.used_pages() == frozenset({3, 599})
            assert sim.received.count("READ_INDEX_TABLE") == 3
        finally:
            await reader.close()


async def test_deleting_a_page_outside_the_library_is_rejected(
    reader: R30xFingerprintReader,
) -> None:
    with pytest.raises(DeviceRejected, match="page 500 is outside"):
        await reader.delete(500)


async def test_a_wrong_password_keeps_the_reader_offline_and_says_why(
    library_file: Path,
) -> None:
    with FingerprintSimulator(library_file, password=0x1234) as sim:
        reader = fast_reader(sim.port)
        await reader.open()
        try:
            assert reader.health.state is HealthState.OFFLINE
            assert "wrong password" in reader.health.reason
            with pytest.raises(DeviceUnavailable, match="not connected"):
                await reader.count()
        finally:
            await reader.close()


async def test_the_module_password_from_the_url_opens_a_protected_module(
    library_file: Path,
) -> None:
    with FingerprintSimulator(library_file, password=0x1234) as sim:
        url = parse_device_url(f"r30x://{sim.port}?password=0x1234", DeviceKind.FINGERPRINT)
        reader = R30xFingerprintReader.from_url(url)
        await reader.open()
        try:
            assert reader.health.ok
        finally:
            await reader.close()


async def test_a_module_at_another_address_is_reported_not_trusted(library_file: Path) -> None:
    with FingerprintSimulator(library_file, address=0x0000CAFE) as sim:
        reader = fast_reader(sim.port)
        await reader.open()
        try:
            assert reader.health.state is HealthState.OFFLINE
            assert "address 0x0000CAFE, expected 0xFFFFFFFF" in reader.health.reason
        finally:
            await reader.close()


def test_from_url_reads_the_port_and_every_setting() -> None:
    url = parse_device_url(
        "r30x:///dev/ttyUSB0?baud=115200&address=0xCAFE&password=7&reply_timeout=0.5",
        DeviceKind.FINGERPRINT,
    )
    reader = R30xFingerprintReader.from_url(url)
    assert reader.port == "/dev/ttyUSB0"
    assert reader.baudrate == 115200
    assert reader.description == url.raw


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("r30x:///dev/ttyUSB0?colour=red", "unknown parameter colour"),
        ("r30x:///dev/ttyUSB0?baud=1000", "baud 1000 is not 9600 x N"),
        ("r30x:///dev/ttyUSB0?reply_timeout=soon", "reply_timeout='soon'"),
        ("r30x:///dev/ttyUSB0?address=0x1FFFFFFFF", "address 0x1FFFFFFFF does not fit"),
    ],
)
def test_from_url_refuses_settings_the_module_cannot_take(raw: str, message: str) -> None:
    with pytest.raises(DeviceUrlError, match=message):
        R30xFingerprintReader.from_url(parse_device_url(raw, DeviceKind.FINGERPRINT))


async def test_a_missing_port_leaves_the_reader_offline_with_the_reason() -> None:
    reader = fast_reader("/dev/does-not-exist")
    await reader.open()
    try:
        assert reader.health.state is HealthState.OFFLINE
        assert "cannot open /dev/does-not-exist" in reader.health.reason
    finally:
        await reader.close()


async def test_close_is_idempotent_and_commands_after_it_are_refused(
    reader: R30xFingerprintReader,
) -> None:
    await reader.close()
    await reader.close()
    assert reader.health.state is HealthState.OFFLINE
    with pytest.raises(DeviceUnavailable):
        await reader.count()


async def test_templates_and_images_never_cross_the_wire(
    sim: FingerprintSimulator, reader: R30xFingerprintReader
) -> None:
    _, progress = guide(sim, "alice", "alice")
    await reader.enroll(3, 1.0, progress)
    await reader.identify(1.0)
    assert not {"UP_CHAR", "UP_IMAGE", "DOWN_CHAR"} & set(sim.received)


async def test_a_finger_enrolled_through_the_driver_survives_a_simulator_restart(
    library_file: Path,
) -> None:
    with FingerprintSimulator(library_file) as sim:
        reader = fast_reader(sim.port)
        await reader.open()
        _, progress = guide(sim, "alice", "alice")
        await reader.enroll(12, 1.0, progress)
        await reader.close()
    with FingerprintSimulator(library_file) as sim:
        reader = fast_reader(sim.port)
        await reader.open()
        try:
            sim.place_finger("alice")
            match = await reader.identify(1.0)
            assert match is not None and match.page == 12
        finally:
            await reader.close()

"""The simulator's own promises: persistence, unplug/replug, sim:// attach, the console."""

from __future__ import annotations

import io
import json
import os
import select
import time
import tty
from pathlib import Path

import pytest

from drivers.base import DeviceKind
from drivers.fingerprint.r30x import R30xFingerprintReader
from drivers.registry import parse_device_url
from simulators.fingerprint import FAULTS, FingerprintSimulator, attach, console
from simulators.fingerprint_module import finger_of, template_bytes


def test_the_library_persists_across_simulator_restarts_as_finger_names(
    library_file: Path,
) -> None:
    with FingerprintSimulator(library_file) as sim:
        sim.enrol("alice", 3)
        sim.enrol("bob", 10)
    assert json.loads(library_file.read_text())["pages"] == {"3": "alice", "10": "bob"}
    with FingerprintSimulator(library_file) as sim:
        assert sim.library == {3: "alice", 10: "bob"}


def test_pages_beyond_a_smaller_capacity_are_dropped_on_load(library_file: Path) -> None:
    with FingerprintSimulator(library_file, capacity=200) as sim:
        sim.enrol("alice", 150)
        sim.enrol("bob", 5)
    with FingerprintSimulator(library_file, capacity=100) as sim:
        assert sim.library == {5: "bob"}


def test_a_library_file_that_is_not_one_says_so(library_file: Path) -> None:
    library_file.write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a fingerprint simulator library"):
        FingerprintSimulator(library_file)


def test_enrolling_beyond_the_library_is_refused() -> None:
    with FingerprintSimulator(capacity=10) as sim, pytest.raises(ValueError, match=r"0\.\.9"):
        sim.enrol("alice", 10)


def test_templates_encode_the_finger_name_and_foreign_bytes_survive_verbatim() -> None:
    assert len(template_bytes("alice")) == 512
    assert finger_of(template_bytes("alice")) == "alice"
    foreign = bytes(range(200))
    assert template_bytes(finger_of(foreign)) == foreign


def test_the_port_is_a_stable_path_to_the_current_pty(sim: FingerprintSimulator) -> None:
    first = sim.tty
    assert first is not None and os.path.realpath(sim.port) == first
    sim.unplug()
    assert not sim.plugged and not os.path.exists(sim.port) and sim.tty is None
    sim.replug()
    assert sim.plugged and sim.tty is not None and os.path.realpath(sim.port) == sim.tty


def test_close_is_idempotent_and_removes_the_port() -> None:
    sim = FingerprintSimulator()
    port = sim.port
    sim.close()
    sim.close()
    assert not os.path.exists(port)


def test_every_documented_fault_can_be_injected_by_name(sim: FingerprintSimulator) -> None:
    for name in FAULTS:
        sim.fault(name, 2)
    sim.fault("clear")
    assert sim.plugged
    with pytest.raises(ValueError, match="unknown fault 'fire'; known: silent"):
        sim.fault("fire")


def test_attach_starts_a_simulator_and_the_real_driver_on_its_port(tmp_path: Path) -> None:
    url = parse_device_url("sim://?capacity=50&reply_timeout=0.5", DeviceKind.FINGERPRINT)
    attached = attach(url, tmp_path / "state")
    assert isinstance(attached.simulator, FingerprintSimulator)
    try:
        assert isinstance(attached.driver, R30xFingerprintReader)
        assert attached.driver.port == attached.simulator.port
        assert attached.simulator.module.capacity == 50
        attached.simulator.enrol("alice", 1)
        assert (tmp_path / "state" / "fingerprint-sim.json").exists()
    finally:
        attached.simulator.close()


def test_attach_keeps_the_library_where_the_url_says(tmp_path: Path) -> None:
    url = parse_device_url(f"sim://?library={tmp_path}/demo.json", DeviceKind.FINGERPRINT)
    attached = attach(url, tmp_path / "state")
    assert isinstance(attached.simulator, FingerprintSimulator)
    attached.simulator.enrol("carol", 2)
    attached.simulator.close()
    assert json.loads((tmp_path / "demo.json").read_text())["pages"] == {"2": "carol"}


def test_the_console_prints_the_port_then_answers_one_line_per_command(tmp_path: Path) -> None:
    commands = "place alice\nlift\nenrol alice 4\nlist\nfault messy 2\nfault fire\nsing\nquit\n"
    out = io.StringIO()
    code = console(["--library", str(tmp_path / "f.json")], stdin=io.StringIO(commands), stdout=out)
    lines = out.getvalue().splitlines()
    assert code == 0
    assert lines[0].endswith("ttyR30X")
    assert lines[1:] == [
        "ok finger alice on the sensor",
        "ok sensor clear",
        "ok alice enrolled at page 4",
        "ok 1 templates: 4=alice",
        "ok fault messy",
        lines[6],
        lines[7],
        "ok bye",
    ]
    assert lines[6].startswith("error unknown fault 'fire'")
    assert lines[7].startswith("error unknown command 'sing'")


def test_the_console_ends_cleanly_at_end_of_input() -> None:
    out = io.StringIO()
    assert console([], stdin=io.StringIO("list\n"), stdout=out) == 0
    assert out.getvalue().splitlines()[1] == "ok 0 templates"


def test_a_paced_line_answers_when_the_bytes_would_have_crossed_the_wire_and_not_before(
    sim: FingerprintSimulator,
) -> None:
    sim.wire.wire_baud = 9600  # slow, so the wire time stands out from a pty's microseconds
    gen_img = bytes.fromhex("EF01FFFFFFFF010003010005")
    wire_time = (len(gen_img) + 12) * 10 / 9600  # the 12-byte acknowledge: 25 ms in all
    client = os.open(sim.port, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(client)
    try:
        for _ in range(3):
            sent = time.perf_counter()
            os.write(client, gen_img)
            answer = b""
            while len(answer) < 12:
                assert select.select([client], [], [], 2.0)[0], "no answer within 2 s"
                answer += os.read(client, 64)
            elapsed = time.perf_counter() - sent
            assert answer[9] == 0x02  # no finger on the sensor
            # Never sooner than the wire; later only by what a busy machine may add.
            assert wire_time <= elapsed < wire_time + 0.1
    finally:
        os.close(client)

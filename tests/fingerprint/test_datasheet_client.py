"""The simulator, driven by a client written here straight from the datasheet frame layout.

Nothing here uses the driver's codec: frames are packed by hand, so the simulator is checked
against the manual, not against our own reading of it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
import serial

from simulators.fingerprint import FingerprintSimulator

BROADCAST = 0xFFFFFFFF


class DatasheetClient:
    """A blocking R30x client in the style of the vendor's sample code."""

    def __init__(self, port: str, address: int = BROADCAST) -> None:
        self.address = address
        self.serial = serial.Serial(port, 57600, timeout=1.0)

    def close(self) -> None:
        self.serial.close()

    def send(self, pid: int, payload: bytes) -> None:
        length = len(payload) + 2
        total = (pid + (length >> 8) + (length & 0xFF) + sum(payload)) & 0xFFFF
        self.serial.write(
            struct.pack(">HIBH", 0xEF01, self.address, pid, length)
            + payload
            + struct.pack(">H", total)
        )

    def receive(self) -> tuple[int, int, bytes]:
        """One packet: (address, pid, payload); checks header and checksum."""
        head = self.serial.read(9)
        assert len(head) == 9, f"no answer (got {head.hex()})"
        start, address, pid, length = struct.unpack(">HIBH", head)
        assert start == 0xEF01
        rest = self.serial.read(length)
        payload, (total,) = rest[:-2], struct.unpack(">H", rest[-2:])
        assert total == (pid + (length >> 8) + (length & 0xFF) + sum(payload)) & 0xFFFF
        return address, pid, payload

    def command(self, instruction: int, params: bytes = b"") -> tuple[int, bytes]:
        """Send a command packet and return (confirmation code, data) of its acknowledge."""
        self.send(0x01, bytes((instruction,)) + params)
        _, pid, payload = self.receive()
        assert pid == 0x07
        return payload[0], payload[1:]

    def receive_data(self) -> list[bytes]:
        """Data packets until the one with PID 08."""
        chunks = []
        while True:
            _, pid, payload = self.receive()
            assert pid in (0x02, 0x08)
            chunks.append(payload)
            if pid == 0x08:
                return chunks

    def capture(self, buffer: int) -> None:
        assert self.command(0x01) == (0x00, b"")  # GenImg
        assert self.command(0x02, bytes((buffer,))) == (0x00, b"")  # Img2Tz


@pytest.fixture
def client(sim: FingerprintSimulator) -> Iterator[DatasheetClient]:
    connection = DatasheetClient(sim.port)
    yield connection
    connection.close()


def test_genimg_without_a_finger_gets_the_datasheet_answer_byte_for_byte(
    sim: FingerprintSimulator, client: DatasheetClient
) -> None:
    client.serial.write(bytes.fromhex("EF 01 FF FF FF FF 01 00 03 01 00 05"))
    assert client.serial.read(12) == bytes.fromhex("EF 01 FF FF FF FF 07 00 03 02 00 0C")


def test_a_datasheet_client_enrols_a_finger_and_finds_it_by_search(
    sim: FingerprintSimulator, client: DatasheetClient
) -> None:
    sim.place_finger("alice")
    client.capture(1)
    sim.lift_finger()
    assert client.command(0x01) == (0x02, b"")  # finger lifted
    sim.place_finger("alice")
    client.capture(2)
    assert client.command(0x05) == (0x00, b"")  # RegModel
    assert client.command(0x06, bytes((1, 0, 7))) == (0x00, b"")  # Store buffer 1 at page 7
    assert client.command(0x1D) == (0x00, b"\x00\x01")  # TemplateNum

    client.capture(1)
    code, data = client.command(0x04, bytes((1, 0, 0, 0, 200)))  # Search pages 0..199
    page, score = struct.unpack(">HH", data)
    assert (code, page) == (0x00, 7) and score > 0

    sim.place_finger("mallory")
    client.capture(1)
    assert client.command(0x04, bytes((1, 0, 0, 0, 200))) == (0x09, bytes(4))


def test_upchar_sends_the_template_in_data_packets_of_the_packet_size(
    sim: FingerprintSimulator, client: DatasheetClient
) -> None:
    sim.place_finger("alice")
    client.capture(1)
    assert client.command(0x08, b"\x01") == (0x00, b"")
    chunks = client.receive_data()
    assert [len(chunk) for chunk in chunks] == [128, 128, 128, 128]


def test_a_template_downloaded_with_downchar_is_stored_and_uploaded_unchanged(
    sim: FingerprintSimulator, client: DatasheetClient
) -> None:
    template = bytes(range(256)) * 2
    assert client.command(0x09, b"\x02") == (0x00, b"")  # DownChar to buffer 2
    for i in range(0, 512, 128):
        client.send(0x08 if i == 384 else 0x02, template[i : i + 128])
    assert client.command(0x06, bytes((2, 0, 3))) == (0x00, b"")  # Store at page 3
    assert client.command(0x07, bytes((1, 0, 3))) == (0x00, b"")  # LoadChar into buffer 1
    assert client.command(0x08, b"\x01") == (0x00, b"")  # UpChar
    assert b"".join(client.receive_data()) == template


def test_an_uploaded_template_of_a_finger_matches_that_finger_when_downloaded_again(
    sim: FingerprintSimulator, client: DatasheetClient
) -> None:
    sim.place_finger("alice")
    client.capture(1)
    client.command(0x08, b"\x01")
    template = b"".join(client.receive_data())
    assert client.command(0x09, b"\x02") == (0x00, b"")  # DownChar to buffer 2
    client.send(0x02, template[:256])  # any split into packets will do
    client.send(0x08, template[256:])
    code, data = client.command(0x03)  # Match buffer 1 with buffer 2
    assert code == 0x00 and struct.unpack(">H", data)[0] > 0


def test_upimage_sends_a_256_by_288_four_bit_image(
    sim: FingerprintSimulator, client: DatasheetClient
) -> None:
    assert client.command(0x0A) == (0x0F, b"")  # no image captured yet
    sim.place_finger("alice")
    assert client.command(0x01) == (0x00, b"")
    assert client.command(0x0A) == (0x00, b"")
    assert sum(len(chunk) for chunk in client.receive_data()) == 256 * 288 // 2


def test_setsyspara_changes_the_packet_size_and_security_level(
    sim: FingerprintSimulator, client: DatasheetClient
) -> None:
    assert client.command(0x0E, bytes((6, 0))) == (0x00, b"")  # 32-byte packets
    assert client.command(0x0E, bytes((5, 5))) == (0x00, b"")  # security level 5
    assert client.command(0x0E, bytes((9, 1)))[0] == 0x1A  # no such register
    code, data = client.command(0x0F)
    _, _, capacity, level, address, size, baud = struct.unpack(">HHHHIHH", data)
    assert (code, capacity, level, address, size, baud) == (0, 200, 5, BROADCAST, 0, 6)
    sim.place_finger("alice")
    client.capture(1)
    client.command(0x08, b"\x01")
    assert {len(chunk) for chunk in client.receive_data()} == {32}


def test_a_password_must_be_verified_before_anything_else(
    sim: FingerprintSimulator, client: DatasheetClient
) -> None:
    assert client.command(0x12, (0x1234).to_bytes(4, "big")) == (0x00, b"")  # SetPwd
    sim.unplug()
    sim.replug()  # power cycle: the session forgets the verification
    client.close()
    again = DatasheetClient(sim.port)
    try:
        assert again.command(0x01) == (0x21, b"")
        assert again.command(0x12, bytes(4)) == (0x21, b"")
        assert again.command(0x13, bytes(4)) == (0x13, b"")  # wrong password
        assert again.command(0x13, (0x1234).to_bytes(4, "big")) == (0x00, b"")
        assert again.command(0x01) == (0x02, b"")
    finally:
        again.close()


def test_setadder_answers_from_the_new_address_and_then_only_that_address_works(
    sim: FingerprintSimulator, client: DatasheetClient
) -> None:
    client.send(0x01, b"\x15" + (0x0000CAFE).to_bytes(4, "big"))
    assert client.receive() == (0x0000CAFE, 0x07, b"\x00")
    client.send(0x01, b"\x01")  # GenImg, still to the old address
    assert client.receive() == (0x0000CAFE, 0x07, b"\x20")  # address code wrong
    client.address = 0x0000CAFE
    assert client.command(0x01) == (0x02, b"")


def test_getrandomcode_returns_four_bytes(client: DatasheetClient) -> None:
    code, data = client.command(0x14)
    assert code == 0x00 and len(data) == 4


def test_readindextable_marks_used_pages_least_significant_bit_first(
    sim: FingerprintSimulator, client: DatasheetClient
) -> None:
    for page, name in ((0, "a"), (9, "b"), (199, "c")):
        sim.enrol(name, page)
    code, bitmap = client.command(0x1F, b"\x00")
    assert code == 0x00 and len(bitmap) == 32
    assert bitmap[0] == 0x01 and bitmap[1] == 0x02 and bitmap[24] == 0x80
    assert client.command(0x1F, b"\x01") == (0x00, bytes(32))


def test_library_upkeep_instructions_answer_as_the_manual_says(
    sim: FingerprintSimulator, client: DatasheetClient
) -> None:
    sim.enrol("alice", 4)
    assert client.command(0x07, bytes((1, 0, 5)))[0] == 0x0C  # LoadChar of an empty page
    assert client.command(0x07, bytes((1, 1, 0)))[0] == 0x0B  # page 256: beyond the library
    assert client.command(0x0C, bytes((0, 4, 0, 1))) == (0x00, b"")  # DeleteChar page 4
    assert client.command(0x0C, bytes((0, 199, 0, 2)))[0] == 0x10  # runs past the end
    sim.enrol("bob", 1)
    assert client.command(0x0D) == (0x00, b"")  # Empty
    assert client.command(0x1D) == (0x00, b"\x00\x00")


def test_match_compares_the_two_character_buffers(
    sim: FingerprintSimulator, client: DatasheetClient
) -> None:
    sim.place_finger("alice")
    client.capture(1)
    client.capture(2)
    assert client.command(0x03)[0] == 0x00
    sim.place_finger("bob")
    client.capture(2)
    assert client.command(0x03) == (0x08, b"\x00\x00")
    assert client.command(0x05)[0] == 0x0A  # RegModel of two fingers


def test_auraledconfig_is_acknowledged_and_the_led_state_observable(
    sim: FingerprintSimulator, client: DatasheetClient
) -> None:
    assert client.command(0x35, bytes((1, 0x80, 2, 3))) == (0x00, b"")
    assert sim.module.led == (1, 0x80, 2, 3)


def test_a_garbled_command_is_answered_with_error_receiving_packet(
    client: DatasheetClient,
) -> None:
    client.serial.write(bytes.fromhex("EF 01 FF FF FF FF 01 00 03 01 00 06"))
    assert client.receive()[2] == b"\x01"


def test_an_unknown_instruction_is_answered_with_error_receiving_packet(
    client: DatasheetClient,
) -> None:
    assert client.command(0x7B) == (0x01, b"")



def test_a_truncated_answer_stops_halfway_and_the_next_one_is_whole(
    sim: FingerprintSimulator, client: DatasheetClient
) -> None:
    sim.fault("truncated")
    client.serial.write(bytes.fromhex("EF 01 FF FF FF FF 01 00 03 01 00 05"))  # GenImg
    client.serial.timeout = 0.2
    assert client.serial.read(12) == bytes.fromhex("EF 01 FF FF FF FF")  # half, then nothing
    assert client.command(0x01) == (0x02, b"")


def test_a_replayed_answer_is_the_last_one_to_the_same_instruction_sent_before_the_real_one(
    sim: FingerprintSimulator, client: DatasheetClient
) -> None:
    assert client.command(0x1D) == (0x00, b"\x00\x00")  # TemplateNum: empty library
    sim.enrol("alice", 1)
    sim.fault("replayed")
    client.send(0x01, b"\x1d")
    assert [client.receive()[2] for _ in range(2)] == [b"\x00\x00\x00", b"\x00\x00\x01"]
    assert client.command(0x1D) == (0x00, b"\x00\x01")  # once only

"""The R30x frame codec and its resynchronising parser."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.fingerprint.frame import (
    DEFAULT_ADDRESS,
    MAX_PAYLOAD,
    FrameError,
    FrameParser,
    FrameProblem,
    Packet,
    PacketId,
    ProblemKind,
    ack,
    command,
    data_packets,
    decode,
)
from drivers.fingerprint.instructions import (
    Confirmation,
    Instruction,
    SystemParameters,
    describe,
    index_bitmap,
    pages_in_bitmap,
)

GEN_IMG = bytes.fromhex("EF01 FFFFFFFF 01 0003 01 0005")
NO_FINGER = bytes.fromhex("EF01 FFFFFFFF 07 0003 02 000C")

packets = st.builds(
    Packet,
    pid=st.sampled_from(PacketId),
    payload=st.binary(min_size=1, max_size=MAX_PAYLOAD),
    address=st.just(DEFAULT_ADDRESS),
)


def only_packets(items: list[Packet | FrameProblem]) -> list[Packet]:
    return [item for item in items if isinstance(item, Packet)]


def test_genimg_command_is_byte_for_byte_the_datasheet_example() -> None:
    assert command(Instruction.GEN_IMG).encode() == GEN_IMG


def test_no_finger_acknowledge_is_byte_for_byte_the_datasheet_example() -> None:
    assert ack(Confirmation.NO_FINGER).encode() == NO_FINGER
    assert decode(NO_FINGER) == Packet(PacketId.ACK, b"\x02")


def test_confirmation_codes_are_described_for_people() -> None:
    assert describe(0x06) == "0x06 (image too messy)"
    assert describe(0x77) == "0x77 (unknown confirmation code)"


@given(packets, st.integers(0, 0xFFFFFFFF))
def test_encode_then_decode_gives_the_same_packet(packet: Packet, address: int) -> None:
    packet = Packet(packet.pid, packet.payload, address)
    assert decode(packet.encode()) == packet


@given(st.lists(packets, min_size=1, max_size=5), st.data())
def test_parser_finds_every_frame_however_the_stream_is_chunked(
    sent: list[Packet], data: st.DataObject
) -> None:
    stream = b"".join(packet.encode() for packet in sent)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    parser = FrameParser()
    found: list[Packet | FrameProblem] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        found += parser.feed(stream[start:end])
    assert found == sent
    assert parser.pending == 0


@given(st.binary(max_size=600))
def test_random_bytes_never_raise_out_of_the_parser(noise: bytes) -> None:
    parser = FrameParser(accept={PacketId.ACK})
    found = parser.feed(noise) + parser.flush()
    assert all(isinstance(item, Packet | FrameProblem) for item in found)
    assert parser.pending == 0


@given(st.binary(max_size=300), packets)
def test_after_any_garbage_the_parser_resyncs_on_the_next_good_frame(
    noise: bytes, good: Packet
) -> None:
    parser = FrameParser()
    found = parser.feed(noise) + parser.feed(good.encode()) + parser.flush()
    assert only_packets(found)[-1] == good


@given(st.binary(min_size=1, max_size=300))
def test_garbage_alone_is_reported_not_swallowed(noise: bytes) -> None:
    parser = FrameParser()
    found = parser.feed(noise) + parser.flush()
    if b"\xef\x01" not in noise:
        assert found and all(isinstance(item, FrameProblem) for item in found)


def test_checksum_error_is_reported_with_the_bytes_in_hex() -> None:
    corrupted = NO_FINGER[:-1] + b"\x0d"
    [problem] = FrameParser().feed(corrupted)
    assert isinstance(problem, FrameProblem)
    assert problem.kind is ProblemKind.CHECKSUM
    assert "EF 01 FF FF FF FF 07 00 03 02 00 0D" in str(problem)


def test_a_frame_from_another_address_is_reported_and_the_next_one_still_read() -> None:
    foreign = Packet(PacketId.ACK, b"\x00", 0x12345678).encode()
    problem, packet = FrameParser().feed(foreign + NO_FINGER)
    assert isinstance(problem, FrameProblem) and problem.kind is ProblemKind.WRONG_ADDRESS
    assert "0x12345678" in str(problem)
    assert packet == Packet(PacketId.ACK, b"\x02")


def test_a_packet_id_this_side_does_not_expect_is_reported() -> None:
    [problem] = FrameParser(accept={PacketId.ACK}).feed(GEN_IMG)
    assert isinstance(problem, FrameProblem) and problem.kind is ProblemKind.UNEXPECTED_PID


def test_an_unknown_packet_id_is_skipped_up_to_the_next_header() -> None:
    bogus = bytes.fromhex("EF01 FFFFFFFF 05 0003 00 0008")
    found = FrameParser().feed(bogus + NO_FINGER)
    assert isinstance(found[0], FrameProblem)
    assert only_packets(found) == [Packet(PacketId.ACK, b"\x02")]


def test_a_length_beyond_any_frame_does_not_stall_the_parser() -> None:
    huge = bytes.fromhex("EF01 FFFFFFFF 07 FFFF")
    problem, packet = FrameParser().feed(huge + NO_FINGER)
    assert isinstance(problem, FrameProblem) and problem.kind is ProblemKind.BAD_LENGTH
    assert packet == Packet(PacketId.ACK, b"\x02")


def test_a_cut_off_frame_is_reported_when_the_line_goes_quiet() -> None:
    parser = FrameParser()
    assert parser.feed(NO_FINGER[:7]) == []
    [problem] = parser.flush()
    assert isinstance(problem, FrameProblem) and problem.kind is ProblemKind.SHORT_FRAME
    assert parser.pending == 0


def test_a_cut_off_frame_that_swallowed_the_next_one_still_yields_it() -> None:
    parser = FrameParser()
    found = parser.feed(NO_FINGER[:9] + NO_FINGER)
    found += parser.flush()
    assert only_packets(found) == [Packet(PacketId.ACK, b"\x02")]
    assert any(isinstance(item, FrameProblem) for item in found)


def test_an_acknowledge_without_a_confirmation_code_is_malformed() -> None:
    empty = Packet(PacketId.ACK, b"").encode()
    [problem] = FrameParser().feed(empty)
    assert isinstance(problem, FrameProblem) and problem.kind is ProblemKind.BAD_LENGTH


def test_decode_refuses_anything_but_exactly_one_good_frame() -> None:
    with pytest.raises(FrameError, match="checksum"):
        decode(NO_FINGER[:-1] + b"\x00")
    with pytest.raises(FrameError):
        decode(NO_FINGER + NO_FINGER)


def test_long_problems_quote_only_the_start_of_the_bytes() -> None:
    [problem] = FrameParser().feed(b"\x00" * 200)
    assert "(200 bytes)" in str(problem)


@given(st.binary(max_size=1000), st.sampled_from([32, 64, 128, 256]))
def test_data_packets_carry_packet_size_bytes_and_the_last_has_pid_08(
    data: bytes, size: int
) -> None:
    split = data_packets(data, size)
    assert b"".join(packet.payload for packet in split) == data
    assert [packet.pid for packet in split[:-1]] == [PacketId.DATA] * (len(split) - 1)
    assert split[-1].pid is PacketId.END_DATA
    assert all(len(packet.payload) <= size for packet in split)


@given(
    st.builds(
        SystemParameters,
        status=st.integers(0, 0xFFFF),
        system_id=st.integers(0, 0xFFFF),
        capacity=st.integers(0, 0xFFFF),
        security_level=st.integers(1, 5),
        address=st.integers(0, 0xFFFFFFFF),
        packet_size_code=st.integers(0, 3),
        baud_factor=st.integers(1, 12),
    )
)
def test_system_parameters_round_trip_through_their_16_bytes(params: SystemParameters) -> None:
    encoded = params.encode()
    assert len(encoded) == 16
    assert SystemParameters.decode(encoded) == params


def test_index_table_bitmap_is_least_significant_bit_first() -> None:
    bitmap = index_bitmap({0, 9, 255, 256}, 0)
    assert bitmap[0] == 0x01 and bitmap[1] == 0x02 and bitmap[31] == 0x80
    assert pages_in_bitmap(bitmap, 0) == {0, 9, 255}
    assert pages_in_bitmap(index_bitmap({256, 300}, 1), 1) == {256, 300}

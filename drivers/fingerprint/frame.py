"""The R30x frame: ``EF 01 | address(4) | PID(1) | length(2) | payload | checksum(2)``.

``length`` counts the payload and the checksum; the checksum is the low 16 bits of the sum of
the PID, both length bytes and every payload byte. :class:`FrameParser` cuts a byte stream
into packets and reports every malformed stretch as a :class:`FrameProblem` instead of
raising, so one bad byte on the line never takes a reader down: after a problem it
resynchronises on the next ``EF 01``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import IntEnum, StrEnum

HEADER = b"\xef\x01"
#: The address every module answers to until SetAdder changes it.
DEFAULT_ADDRESS = 0xFFFFFFFF
#: The largest payload a module sends: a 256-byte data packet.
MAX_PAYLOAD = 256
#: Header, address, PID and length: what must be read before the length is known.
PREAMBLE_SIZE = 9
#: Problems quote at most this many bytes: enough to see what came, and it keeps a garbled
#: data packet from spilling template bytes into a log.
QUOTE_LIMIT = 48


class PacketId(IntEnum):
    COMMAND = 0x01
    DATA = 0x02
    ACK = 0x07
    END_DATA = 0x08


_KNOWN_PIDS = frozenset(int(pid) for pid in PacketId)


def checksum(pid: int, payload: bytes) -> int:
    """Low 16 bits of PID + length bytes + payload bytes."""
    length = len(payload) + 2
    return (pid + (length >> 8) + (length & 0xFF) + sum(payload)) & 0xFFFF


@dataclass(frozen=True)
class Packet:
    """One decoded frame."""

    pid: PacketId
    payload: bytes
    address: int = DEFAULT_ADDRESS

    def encode(self) -> bytes:
        """The frame's bytes on the wire."""
        if len(self.payload) > 0xFFFF - 2:
            raise ValueError(f"payload of {len(self.payload)} bytes does not fit a frame")
        return b"".join(
            (
                HEADER,
                self.address.to_bytes(4, "big"),
                bytes((self.pid,)),
                (len(self.payload) + 2).to_bytes(2, "big"),
                self.payload,
                checksum(self.pid, self.payload).to_bytes(2, "big"),
            )
        )

    @property
    def code(self) -> int:
        """First payload byte: the instruction of a command, the confirmation of an ack."""
        return self.payload[0]

    @property
    def data(self) -> bytes:
        """What follows the instruction or confirmation code."""
        return self.payload[1:]


def command(instruction: int, params: bytes = b"", address: int = DEFAULT_ADDRESS) -> Packet:
    """A command packet: instruction code and its parameters."""
    return Packet(PacketId.COMMAND, bytes((instruction,)) + params, address)


def ack(confirmation: int, data: bytes = b"", address: int = DEFAULT_ADDRESS) -> Packet:
    """An acknowledge packet: confirmation code and its data."""
    return Packet(PacketId.ACK, bytes((confirmation,)) + data, address)


def data_packets(data: bytes, size: int, address: int = DEFAULT_ADDRESS) -> list[Packet]:
    """Split ``data`` into data packets of ``size`` bytes; the last one has PID 08."""
    chunks = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
    return [
        Packet(PacketId.END_DATA if i == len(chunks) - 1 else PacketId.DATA, chunk, address)
        for i, chunk in enumerate(chunks)
    ]


def hex_quote(data: bytes) -> str:
    """Bytes as spaced hex, cut after :data:`QUOTE_LIMIT` bytes."""
    if len(data) <= QUOTE_LIMIT:
        return data.hex(" ").upper()
    return f"{data[:QUOTE_LIMIT].hex(' ').upper()} ... ({len(data)} bytes)"


class ProblemKind(StrEnum):
    #: Bytes where a header was expected.
    GARBAGE = "garbage"
    CHECKSUM = "checksum"
    WRONG_ADDRESS = "wrong address"
    UNEXPECTED_PID = "unexpected packet id"
    #: A length field no frame can have, or a command/ack without its code byte.
    BAD_LENGTH = "bad length"
    #: A frame cut off: the line went quiet before its last byte.
    SHORT_FRAME = "short frame"


@dataclass(frozen=True)
class FrameProblem:
    """A stretch of the byte stream that is not a frame we can accept."""

    kind: ProblemKind
    detail: str
    data: bytes

    @property
    def frame_level(self) -> bool:
        """True when a header was found but what followed is bad: a reply was probably lost."""
        return self.kind is not ProblemKind.GARBAGE

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail} [{hex_quote(self.data)}]"


class FrameError(ValueError):
    """:func:`decode` was given bytes that are not exactly one good frame."""

    def __init__(self, problem: FrameProblem) -> None:
        super().__init__(str(problem))
        self.problem = problem


Parsed = Packet | FrameProblem


class FrameParser:
    """Incremental frame parser for one direction of a link.

    ``address`` (None: any) is the module address frames must carry, ``accept`` the PIDs this
    side expects (a host expects acknowledges, a module commands and data). Feed it chunks as
    they arrive; each call returns the packets and problems found so far, in stream order.
    Call :meth:`flush` when the line has gone quiet: a frame still incomplete then is a short
    frame, and any good frame hidden behind its claimed length is still found.
    """

    def __init__(
        self, address: int | None = DEFAULT_ADDRESS, accept: Collection[PacketId] | None = None
    ) -> None:
        self.address = address
        self.accept = frozenset(PacketId) if accept is None else frozenset(accept)
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held back, waiting for the rest of a frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Parsed]:
        self._buffer += data
        return self._parse(final=False)

    def flush(self) -> list[Parsed]:
        """No more bytes are coming for now: report what is held and resync past it."""
        return self._parse(final=True)

    def reset(self) -> None:
        """Forget held bytes (the port was reopened)."""
        self._buffer.clear()

    def _parse(self, final: bool) -> list[Parsed]:
        out: list[Parsed] = []
        buf = self._buffer
        while buf:
            start = buf.find(HEADER)
            if start < 0:
                # A trailing EF may be the first half of the next header.
                keep = 1 if buf[-1] == HEADER[0] and not final else 0
                if len(buf) > keep:
                    out.append(
                        _problem(ProblemKind.GARBAGE, "no frame header", buf[: len(buf) - keep])
                    )
                    del buf[: len(buf) - keep]
                break
            if start:
                out.append(
                    _problem(ProblemKind.GARBAGE, "bytes before a frame header", buf[:start])
                )
                del buf[:start]
            if len(buf) < PREAMBLE_SIZE:
                if final:
                    out.append(
                        self._skip_header(
                            ProblemKind.SHORT_FRAME, "the line went quiet mid-header", len(buf)
                        )
                    )
                    continue
                break
            result = self._frame_at_start(final)
            if result is None:
                break
            out.append(result)
        return out

    def _frame_at_start(self, final: bool) -> Parsed | None:
        """Parse the frame at the start of the buffer, consuming it (or its header on error)."""
        buf = self._buffer
        pid = buf[6]
        length = int.from_bytes(buf[7:9], "big")
        if pid not in _KNOWN_PIDS:
            return self._skip_header(ProblemKind.UNEXPECTED_PID, f"PID 0x{pid:02X}", PREAMBLE_SIZE)
        if not 2 <= length <= MAX_PAYLOAD + 2:
            return self._skip_header(
                ProblemKind.BAD_LENGTH,
                f"length field {length}, expected 2..{MAX_PAYLOAD + 2}",
                PREAMBLE_SIZE,
            )
        total = PREAMBLE_SIZE + length
        if len(buf) < total:
            if final:
                return self._skip_header(
                    ProblemKind.SHORT_FRAME,
                    f"{len(buf)} of {total} bytes before the line went quiet",
                    len(buf),
                )
            return None
        frame = bytes(buf[:total])
        payload = frame[PREAMBLE_SIZE:-2]
        received = int.from_bytes(frame[-2:], "big")
        expected = checksum(pid, payload)
        if received != expected:
            # Only the header is dropped: the claimed length may have swallowed the next frame.
            return self._skip_header(
                ProblemKind.CHECKSUM,
                f"checksum 0x{received:04X}, computed 0x{expected:04X}",
                total,
            )
        del buf[:total]
        address = int.from_bytes(frame[2:6], "big")
        if self.address is not None and address != self.address:
            return _problem(
                ProblemKind.WRONG_ADDRESS,
                f"frame from address 0x{address:08X}, expected 0x{self.address:08X}",
                frame,
            )
        packet_id = PacketId(pid)
        if packet_id not in self.accept:
            return _problem(
                ProblemKind.UNEXPECTED_PID, f"{packet_id.name} packet not expected", frame
            )
        if packet_id in (PacketId.COMMAND, PacketId.ACK) and not payload:
            return _problem(
                ProblemKind.BAD_LENGTH, f"{packet_id.name} packet without a code", frame
            )
        return Packet(packet_id, payload, address)

    def _skip_header(self, kind: ProblemKind, detail: str, quoted: int) -> FrameProblem:
        """Report the bad frame at the start and resync: drop the quoted span, unless another
        header starts inside it (its claimed length may have swallowed a good frame)."""
        problem = _problem(kind, detail, self._buffer[:quoted])
        inner = self._buffer.find(HEADER, len(HEADER), quoted)
        del self._buffer[: inner if inner > 0 else max(quoted, len(HEADER))]
        return problem


def _problem(kind: ProblemKind, detail: str, data: bytes | bytearray) -> FrameProblem:
    return FrameProblem(kind, detail, bytes(data))


def decode(frame: bytes, address: int | None = None) -> Packet:
    """Decode exactly one frame; raises :class:`FrameError` for anything else."""
    parser = FrameParser(address)
    found = parser.feed(frame) + parser.flush()
    if len(found) == 1 and isinstance(found[0], Packet):
        return found[0]
    problems = [item for item in found if isinstance(item, FrameProblem)]
    if problems:
        raise FrameError(problems[0])
    raise FrameError(FrameProblem(ProblemKind.GARBAGE, f"{len(found)} frames, expected one", frame))


def encode_all(packets: Iterable[Packet]) -> bytes:
    """Several packets back to back, as a module sends an ack and its data packets."""
    return b"".join(packet.encode() for packet in packets)

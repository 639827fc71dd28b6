"""The brain of a simulated R30x fingerprint module: wire bytes in, wire bytes out, no I/O.

It answers every instruction of PROTOCOLS.md section 1 the way the R307/R503/ZFM manuals
describe, so any client written to the datasheet works against it. A "finger" is a name: a
capture of finger ``alice`` yields features that match only templates made from ``alice``.
Templates on the wire are 512 bytes that encode the name (see :func:`template_bytes`); bytes a
host downloads that are not such a template are kept verbatim and match only themselves.
:class:`simulators.fingerprint.FingerprintSimulator` serves this over a pty.
"""

from __future__ import annotations

import hashlib
import secrets
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from drivers.fingerprint.frame import (
    DEFAULT_ADDRESS,
    FrameParser,
    FrameProblem,
    Packet,
    PacketId,
    ProblemKind,
    ack,
    data_packets,
)
from drivers.fingerprint.instructions import (
    INDEX_PAGE_SPAN,
    PACKET_SIZES,
    Confirmation,
    Instruction,
    SystemParameters,
    index_bitmap,
)

#: Bytes of one template, as UpChar sends and DownChar expects (R307: 512).
TEMPLATE_SIZE = 512
#: The sensor image: 256 x 288 pixels, 4 bits each, two pixels a byte.
IMAGE_WIDTH, IMAGE_HEIGHT = 256, 288
IMAGE_SIZE = IMAGE_WIDTH * IMAGE_HEIGHT // 2
#: ZFM modules report this constant as their system identifier.
SYSTEM_ID = 0x0009
#: A library page holding a template the host downloaded verbatim is named "raw:" + hex.
RAW_PREFIX = "raw:"
_MAGIC = b"SIMF\x01"

# Status register bits (ReadSysPara): busy, pass, password verified, image buffer valid.
_STATUS_PASS = 1 << 1
_STATUS_PWD = 1 << 2
_STATUS_IMAGE = 1 << 3

Handler = Callable[["FingerprintModule", bytes], list[Packet]]


def template_bytes(finger: str) -> bytes:
    """The 512 template bytes the simulated module makes from the finger ``finger``."""
    if finger.startswith(RAW_PREFIX):
        return bytes.fromhex(finger[len(RAW_PREFIX) :])
    name = finger.encode()[: TEMPLATE_SIZE - len(_MAGIC) - 6]
    body = _MAGIC + len(name).to_bytes(1, "big") + name
    # Feature-like filler, the same for the same finger, so templates look like templates.
    filler = hashlib.shake_256(b"minutiae:" + name).digest(TEMPLATE_SIZE - len(body) - 4)
    body += filler
    return body + zlib.crc32(body).to_bytes(4, "big")


def finger_of(template: bytes) -> str:
    """The finger a template was made from; foreign bytes become a ``raw:`` name."""
    body, crc = template[:-4], template[-4:]
    if (
        len(template) == TEMPLATE_SIZE
        and template.startswith(_MAGIC)
        and zlib.crc32(body).to_bytes(4, "big") == crc
    ):
        size = template[len(_MAGIC)]
        return template[len(_MAGIC) + 1 : len(_MAGIC) + 1 + size].decode(errors="replace")
    return RAW_PREFIX + template.hex()


def match_score(finger: str) -> int:
    """A stable, plausible match score for a finger (real modules report 50..300ish)."""
    return 60 + zlib.crc32(finger.encode()) % 200


def image_bytes(finger: str) -> bytes:
    """A deterministic 4-bit grey image of a finger, as UpImage sends it."""
    return hashlib.shake_256(b"ridges:" + finger.encode()).digest(IMAGE_SIZE)


@dataclass
class _Download:
    """Data packets the host is sending after DownChar."""

    buffer: int
    data: bytearray = field(default_factory=bytearray)


class FingerprintModule:
    """One simulated module: flash (library, password, address, settings) and RAM (buffers).

    Not thread-safe: the pty server serialises access. ``library`` maps page -> finger name.
    Fault counters (``messy_captures``, ``flash_failures``) make the next operations fail the
    way a real module does; ``on_library_change`` is called whenever the library changed.
    """

    def __init__(
        self,
        capacity: int = 200,
        *,
        address: int = DEFAULT_ADDRESS,
        password: int = 0,
        security_level: int = 3,
        packet_size: int = 128,
        baud: int = 57600,
        library: dict[int, str] | None = None,
    ) -> None:
        if not 1 <= capacity <= 4 * INDEX_PAGE_SPAN:
            raise ValueError(f"capacity {capacity} is outside 1..{4 * INDEX_PAGE_SPAN}")
        if packet_size not in PACKET_SIZES:
            raise ValueError(f"packet size {packet_size} is not one of {PACKET_SIZES}")
        self.capacity = capacity
        self.address = address
        self.password = password
        self.security_level = security_level
        self.packet_size_code = PACKET_SIZES.index(packet_size)
        self.baud_factor = baud // 9600
        self.library: dict[int, str] = dict(library or {})
        self.finger: str | None = None
        self.messy_captures = 0
        self.flash_failures = 0
        #: Every instruction received, by name, oldest first (for tests and the dev panel).
        self.received: list[str] = []
        #: The last AuraLedConfig: control, speed, colour, count.
        self.led: tuple[int, int, int, int] | None = None
        self.on_library_change: Callable[[], None] = lambda: None
        self._parser = FrameParser(
            address=None, accept={PacketId.COMMAND, PacketId.DATA, PacketId.END_DATA}
        )
        self.power_cycle()

    def power_cycle(self) -> None:
        """What a power-up forgets: buffers, image, the verified password, a transfer."""
        self.verified = False
        self.image: str | None = None
        self.buffers: dict[int, str | None] = {1: None, 2: None}
        self.last_match = False
        self._download: _Download | None = None
        self._parser.reset()

    @property
    def packet_size(self) -> int:
        return PACKET_SIZES[self.packet_size_code]

    def receive(self, data: bytes) -> list[bytes]:
        """Bytes from the host in; the frames to send back out, one bytes object per frame."""
        out: list[Packet] = []
        for item in self._parser.feed(data):
            if isinstance(item, FrameProblem):
                out += self._on_problem(item)
            elif item.pid is PacketId.COMMAND:
                out += self._on_command(item)
            else:
                self._on_data(item)
        return [packet.encode() for packet in out]

    def _on_problem(self, problem: FrameProblem) -> list[Packet]:
        # A frame we could delimit but not trust gets "error when receiving package"; loose
        # bytes between frames are line noise and get nothing.
        if problem.kind is ProblemKind.CHECKSUM:
            self._download = None
            return [self._ack(Confirmation.RECEIVE_ERROR)]
        return []

    def _on_command(self, packet: Packet) -> list[Packet]:
        self._download = None  # a command ends any data transfer the host abandoned
        if packet.address != self.address:
            return [self._ack(Confirmation.WRONG_ADDRESS)]
        try:
            instruction = Instruction(packet.code)
        except ValueError:
            self.received.append(f"0x{packet.code:02X}")
            return [self._ack(Confirmation.RECEIVE_ERROR)]
        self.received.append(instruction.name)
        if self.password and not self.verified and instruction is not Instruction.VFY_PWD:
            return [self._ack(Confirmation.PASSWORD_NOT_VERIFIED)]
        handler, size = _HANDLERS[instruction]
        if len(packet.data) != size:
            return [self._ack(Confirmation.RECEIVE_ERROR)]
        return handler(self, packet.data)

    def _on_data(self, packet: Packet) -> None:
        download = self._download
        if download is None or packet.address != self.address:
            return  # data nobody asked for: a real module ignores it too
        download.data += packet.payload
        if packet.pid is PacketId.END_DATA:
            self._download = None
            self.buffers[download.buffer] = finger_of(bytes(download.data))

    def _ack(self, code: int, data: bytes = b"") -> Packet:
        return ack(code, data, self.address)

    def _flash_fails(self) -> bool:
        if self.flash_failures > 0:
            self.flash_failures -= 1
            return True
        return False

    def _changed(self) -> None:
        self.on_library_change()

    # --- instruction handlers: each gets the parameter bytes (length already checked) -------

    def _gen_img(self, _: bytes) -> list[Packet]:
        if self.finger is None:
            self.image = None
            return [self._ack(Confirmation.NO_FINGER)]
        self.image = self.finger
        return [self._ack(Confirmation.OK)]

    def _img_2_tz(self, params: bytes) -> list[Packet]:
        buffer = params[0]
        if buffer not in self.buffers:
            return [self._ack(Confirmation.RECEIVE_ERROR)]
        if self.image is None:
            return [self._ack(Confirmation.NO_VALID_IMAGE)]
        if self.messy_captures > 0:
            self.messy_captures -= 1
            return [self._ack(Confirmation.IMAGE_MESSY)]
        self.buffers[buffer] = self.image
        return [self._ack(Confirmation.OK)]

    def _match(self, _: bytes) -> list[Packet]:
        first, second = self.buffers[1], self.buffers[2]
        self.last_match = first is not None and first == second
        if first is not None and self.last_match:
            return [self._ack(Confirmation.OK, match_score(first).to_bytes(2, "big"))]
        return [self._ack(Confirmation.NOT_MATCHING, bytes(2))]

    def _search(self, params: bytes) -> list[Packet]:
        buffer = params[0]
        start = int.from_bytes(params[1:3], "big")
        count = int.from_bytes(params[3:5], "big")
        finger = self.buffers.get(buffer)
        self.last_match = False
        if finger is not None:
            for page in range(start, min(start + count, self.capacity)):
                if self.library.get(page) == finger:
                    self.last_match = True
                    score = match_score(finger)
                    return [
                        self._ack(
                            Confirmation.OK, page.to_bytes(2, "big") + score.to_bytes(2, "big")
                        )
                    ]
        return [self._ack(Confirmation.NOT_FOUND, bytes(4))]

    def _reg_model(self, _: bytes) -> list[Packet]:
        first, second = self.buffers[1], self.buffers[2]
        if first is None or first != second:
            return [self._ack(Confirmation.COMBINE_FAILED)]
        return [self._ack(Confirmation.OK)]  # the merged template is in both buffers

    def _store(self, params: bytes) -> list[Packet]:
        buffer, page = params[0], int.from_bytes(params[1:3], "big")
        if page >= self.capacity:
            return [self._ack(Confirmation.PAGE_OUT_OF_RANGE)]
        finger = self.buffers.get(buffer)
        if finger is None:
            return [self._ack(Confirmation.RECEIVE_ERROR)]
        if self._flash_fails():
            return [self._ack(Confirmation.FLASH_ERROR)]
        self.library[page] = finger
        self._changed()
        return [self._ack(Confirmation.OK)]

    def _load_char(self, params: bytes) -> list[Packet]:
        buffer, page = params[0], int.from_bytes(params[1:3], "big")
        if buffer not in self.buffers:
            return [self._ack(Confirmation.RECEIVE_ERROR)]
        if page >= self.capacity:
            return [self._ack(Confirmation.PAGE_OUT_OF_RANGE)]
        if page not in self.library:
            return [self._ack(Confirmation.TEMPLATE_READ_ERROR)]
        self.buffers[buffer] = self.library[page]
        return [self._ack(Confirmation.OK)]

    def _up_char(self, params: bytes) -> list[Packet]:
        finger = self.buffers.get(params[0])
        if finger is None:
            return [self._ack(Confirmation.TEMPLATE_UPLOAD_ERROR)]
        return [self._ack(Confirmation.OK), *self._data(template_bytes(finger))]

    def _down_char(self, params: bytes) -> list[Packet]:
        if params[0] not in self.buffers:
            return [self._ack(Confirmation.CANNOT_RECEIVE_DATA)]
        reply = [self._ack(Confirmation.OK)]
        self._download = _Download(params[0])  # after the ack: the ack must not end it
        return reply

    def _up_image(self, _: bytes) -> list[Packet]:
        if self.image is None:
            return [self._ack(Confirmation.IMAGE_UPLOAD_ERROR)]
        return [self._ack(Confirmation.OK), *self._data(image_bytes(self.image))]

    def _delete_char(self, params: bytes) -> list[Packet]:
        page, count = int.from_bytes(params[0:2], "big"), int.from_bytes(params[2:4], "big")
        if count == 0 or page + count > self.capacity or self._flash_fails():
            return [self._ack(Confirmation.DELETE_FAILED)]
        for gone in range(page, page + count):
            self.library.pop(gone, None)
        self._changed()
        return [self._ack(Confirmation.OK)]

    def _empty(self, _: bytes) -> list[Packet]:
        if self._flash_fails():
            return [self._ack(Confirmation.CLEAR_FAILED)]
        self.library.clear()
        self._changed()
        return [self._ack(Confirmation.OK)]

    def _set_sys_para(self, params: bytes) -> list[Packet]:
        number, value = params[0], params[1]
        valid = {4: range(1, 13), 5: range(1, 6), 6: range(4)}
        if number not in valid or value not in valid[number]:
            return [self._ack(Confirmation.INVALID_REGISTER)]
        if self._flash_fails():
            return [self._ack(Confirmation.FLASH_ERROR)]
        # The acknowledge still goes out with the old settings; they apply afterwards.
        if number == 4:
            self.baud_factor = value
        elif number == 5:
            self.security_level = value
        else:
            self.packet_size_code = value
        return [self._ack(Confirmation.OK)]

    def _read_sys_para(self, _: bytes) -> list[Packet]:
        status = (
            (_STATUS_PASS if self.last_match else 0)
            | (_STATUS_PWD if self.verified else 0)
            | (_STATUS_IMAGE if self.image is not None else 0)
        )
        params = SystemParameters(
            status=status,
            system_id=SYSTEM_ID,
            capacity=self.capacity,
            security_level=self.security_level,
            address=self.address,
            packet_size_code=self.packet_size_code,
            baud_factor=self.baud_factor,
        )
        return [self._ack(Confirmation.OK, params.encode())]

    def _set_pwd(self, params: bytes) -> list[Packet]:
        if self._flash_fails():
            return [self._ack(Confirmation.FLASH_ERROR)]
        self.password = int.from_bytes(params, "big")
        self.verified = True  # this session already proved it knows the module
        return [self._ack(Confirmation.OK)]

    def _vfy_pwd(self, params: bytes) -> list[Packet]:
        if int.from_bytes(params, "big") != self.password:
            return [self._ack(Confirmation.WRONG_PASSWORD)]
        self.verified = True
        return [self._ack(Confirmation.OK)]

    def _get_random_code(self, _: bytes) -> list[Packet]:
        return [self._ack(Confirmation.OK, secrets.token_bytes(4))]

    def _set_adder(self, params: bytes) -> list[Packet]:
        if self._flash_fails():
            return [self._ack(Confirmation.FLASH_ERROR)]
        self.address = int.from_bytes(params, "big")
        return [self._ack(Confirmation.OK)]  # sent from the new address, as the manual shows

    def _template_num(self, _: bytes) -> list[Packet]:
        return [self._ack(Confirmation.OK, len(self.library).to_bytes(2, "big"))]

    def _read_index_table(self, params: bytes) -> list[Packet]:
        if params[0] > 3:
            return [self._ack(Confirmation.RECEIVE_ERROR)]
        return [self._ack(Confirmation.OK, index_bitmap(set(self.library), params[0]))]

    def _aura_led_config(self, params: bytes) -> list[Packet]:
        self.led = (params[0], params[1], params[2], params[3])
        return [self._ack(Confirmation.OK)]

    def _data(self, data: bytes) -> list[Packet]:
        return data_packets(data, self.packet_size, self.address)


#: Instruction -> (handler, number of parameter bytes).
_HANDLERS: dict[Instruction, tuple[Handler, int]] = {
    Instruction.GEN_IMG: (FingerprintModule._gen_img, 0),
    Instruction.IMG_2_TZ: (FingerprintModule._img_2_tz, 1),
    Instruction.MATCH: (FingerprintModule._match, 0),
    Instruction.SEARCH: (FingerprintModule._search, 5),
    Instruction.REG_MODEL: (FingerprintModule._reg_model, 0),
    Instruction.STORE: (FingerprintModule._store, 3),
    Instruction.LOAD_CHAR: (FingerprintModule._load_char, 3),
    Instruction.UP_CHAR: (FingerprintModule._up_char, 1),
    Instruction.DOWN_CHAR: (FingerprintModule._down_char, 1),
    Instruction.UP_IMAGE: (FingerprintModule._up_image, 0),
    Instruction.DELETE_CHAR: (FingerprintModule._delete_char, 4),
    Instruction.EMPTY: (FingerprintModule._empty, 0),
    Instruction.SET_SYS_PARA: (FingerprintModule._set_sys_para, 2),
    Instruction.READ_SYS_PARA: (FingerprintModule._read_sys_para, 0),
    Instruction.SET_PWD: (FingerprintModule._set_pwd, 4),
    Instruction.VFY_PWD: (FingerprintModule._vfy_pwd, 4),
    Instruction.GET_RANDOM_CODE: (FingerprintModule._get_random_code, 0),
    Instruction.SET_ADDER: (FingerprintModule._set_adder, 4),
    Instruction.TEMPLATE_NUM: (FingerprintModule._template_num, 0),
    Instruction.READ_INDEX_TABLE: (FingerprintModule._read_index_table, 1),
    Instruction.AURA_LED_CONFIG: (FingerprintModule._aura_led_config, 4),
}

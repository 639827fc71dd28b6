"""The R30x instruction set: instruction codes, confirmation codes and the system parameters.

Shared by the driver and the simulator so both speak of the same numbers by the same names;
the values come from the R307/R503/ZFM-20 user manuals (see PROTOCOLS.md section 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

#: Data packet sizes selected by the "packet size" system parameter (code 0..3).
PACKET_SIZES = (32, 64, 128, 256)
#: The UART runs at BAUD_UNIT x N baud, N = 1..12.
BAUD_UNIT = 9600
#: One index table page covers this many library pages (32 bytes, one bit each).
INDEX_PAGE_SPAN = 256


class Instruction(IntEnum):
    """Instruction codes of command packets."""

    GEN_IMG = 0x01
    IMG_2_TZ = 0x02
    MATCH = 0x03
    SEARCH = 0x04
    REG_MODEL = 0x05
    STORE = 0x06
    LOAD_CHAR = 0x07
    UP_CHAR = 0x08
    DOWN_CHAR = 0x09
    UP_IMAGE = 0x0A
    DELETE_CHAR = 0x0C
    EMPTY = 0x0D
    SET_SYS_PARA = 0x0E
    READ_SYS_PARA = 0x0F
    SET_PWD = 0x12
    VFY_PWD = 0x13
    GET_RANDOM_CODE = 0x14
    SET_ADDER = 0x15
    TEMPLATE_NUM = 0x1D
    READ_INDEX_TABLE = 0x1F
    AURA_LED_CONFIG = 0x35


class Confirmation(IntEnum):
    """Confirmation codes, the first payload byte of every acknowledge packet."""

    OK = 0x00
    RECEIVE_ERROR = 0x01
    NO_FINGER = 0x02
    IMAGE_FAILED = 0x03
    IMAGE_MESSY = 0x06
    TOO_FEW_FEATURES = 0x07
    NOT_MATCHING = 0x08
    NOT_FOUND = 0x09
    COMBINE_FAILED = 0x0A
    PAGE_OUT_OF_RANGE = 0x0B
    TEMPLATE_READ_ERROR = 0x0C
    TEMPLATE_UPLOAD_ERROR = 0x0D
    CANNOT_RECEIVE_DATA = 0x0E
    IMAGE_UPLOAD_ERROR = 0x0F
    DELETE_FAILED = 0x10
    CLEAR_FAILED = 0x11
    WRONG_PASSWORD = 0x13
    NO_VALID_IMAGE = 0x15
    FLASH_ERROR = 0x18
    INVALID_REGISTER = 0x1A
    WRONG_ADDRESS = 0x20
    PASSWORD_NOT_VERIFIED = 0x21


_MEANINGS = {
    Confirmation.OK: "ok",
    Confirmation.RECEIVE_ERROR: "error receiving packet",
    Confirmation.NO_FINGER: "no finger on the sensor",
    Confirmation.IMAGE_FAILED: "failed to enrol image",
    Confirmation.IMAGE_MESSY: "image too messy",
    Confirmation.TOO_FEW_FEATURES: "too few feature points",
    Confirmation.NOT_MATCHING: "finger does not match",
    Confirmation.NOT_FOUND: "no match found in the library",
    Confirmation.COMBINE_FAILED: "failed to combine character files",
    Confirmation.PAGE_OUT_OF_RANGE: "page address beyond the library",
    Confirmation.TEMPLATE_READ_ERROR: "error reading template",
    Confirmation.TEMPLATE_UPLOAD_ERROR: "error uploading template",
    Confirmation.CANNOT_RECEIVE_DATA: "cannot receive following data packets",
    Confirmation.IMAGE_UPLOAD_ERROR: "error uploading image",
    Confirmation.DELETE_FAILED: "failed to delete",
    Confirmation.CLEAR_FAILED: "failed to clear library",
    Confirmation.WRONG_PASSWORD: "wrong password",
    Confirmation.NO_VALID_IMAGE: "no valid primary image",
    Confirmation.FLASH_ERROR: "error writing flash",
    Confirmation.INVALID_REGISTER: "invalid register number",
    Confirmation.WRONG_ADDRESS: "address code wrong",
    Confirmation.PASSWORD_NOT_VERIFIED: "password must be verified first",
}


def describe(code: int) -> str:
    """A confirmation code as a person reads it: ``0x06 (image too messy)``."""
    try:
        meaning = _MEANINGS[Confirmation(code)]
    except ValueError:
        meaning = "unknown confirmation code"
    return f"0x{code:02X} ({meaning})"


def instruction_name(code: int) -> str:
    """``GenImg``-style name of an instruction code, for messages."""
    try:
        return Instruction(code).name
    except ValueError:
        return f"instruction 0x{code:02X}"


@dataclass(frozen=True)
class SystemParameters:
    """The 16 bytes ReadSysPara returns (all fields big-endian)."""

    status: int
    system_id: int
    capacity: int
    security_level: int
    address: int
    packet_size_code: int
    baud_factor: int

    SIZE = 16

    @property
    def packet_size(self) -> int:
        """Bytes of payload in one data packet."""
        return PACKET_SIZES[self.packet_size_code & 0x03]

    @property
    def baud(self) -> int:
        return BAUD_UNIT * self.baud_factor

    def encode(self) -> bytes:
        return b"".join(
            (
                self.status.to_bytes(2, "big"),
                self.system_id.to_bytes(2, "big"),
                self.capacity.to_bytes(2, "big"),
                self.security_level.to_bytes(2, "big"),
                self.address.to_bytes(4, "big"),
                self.packet_size_code.to_bytes(2, "big"),
                self.baud_factor.to_bytes(2, "big"),
            )
        )

    @classmethod
    def decode(cls, data: bytes) -> SystemParameters:
        """Read the 16 bytes; raises ValueError when there are not exactly 16."""
        if len(data) != cls.SIZE:
            raise ValueError(f"expected {cls.SIZE} bytes of system parameters, got {len(data)}")

        def field(start: int, size: int) -> int:
            return int.from_bytes(data[start : start + size], "big")

        return cls(
            status=field(0, 2),
            system_id=field(2, 2),
            capacity=field(4, 2),
            security_level=field(6, 2),
            address=field(8, 4),
            packet_size_code=field(12, 2),
            baud_factor=field(14, 2),
        )


def index_bitmap(used: set[int] | frozenset[int], index_page: int) -> bytes:
    """The 32-byte ReadIndexTable bitmap of one index page: bit 0 of byte 0 is its first page."""
    bitmap = bytearray(INDEX_PAGE_SPAN // 8)
    first = index_page * INDEX_PAGE_SPAN
    for page in used:
        offset = page - first
        if 0 <= offset < INDEX_PAGE_SPAN:
            bitmap[offset // 8] |= 1 << (offset % 8)
    return bytes(bitmap)


def pages_in_bitmap(bitmap: bytes, index_page: int) -> set[int]:
    """The library pages a ReadIndexTable bitmap marks as used (LSB first)."""
    first = index_page * INDEX_PAGE_SPAN
    return {
        first + byte_index * 8 + bit
        for byte_index, byte in enumerate(bitmap)
        for bit in range(8)
        if byte & (1 << bit)
    }

"""R30x-family fingerprint modules (R307, R503, ZFM-20, AS608) on a UART.

URL: ``r30x:///dev/serial0?baud=57600&address=0xFFFFFFFF&password=0``. Templates stay in the
module's flash; this driver only ever asks the module to capture, search, store and delete,
so no image or template crosses the wire, let alone reaches a log.
"""

from __future__ import annotations

import asyncio
import logging
import math

from drivers.base import (
    DeviceProtocolError,
    DeviceRejected,
    DeviceTimeout,
    DeviceUnavailable,
    EnrollProgress,
    EnrollStep,
    FingerMatch,
    FingerprintReader,
    HealthState,
)
from drivers.fingerprint.channel import CommandChannel, Reply
from drivers.fingerprint.frame import DEFAULT_ADDRESS
from drivers.fingerprint.instructions import (
    BAUD_UNIT,
    INDEX_PAGE_SPAN,
    Confirmation,
    Instruction,
    SystemParameters,
    describe,
    instruction_name,
    pages_in_bitmap,
)
from drivers.registry import DeviceUrl, DeviceUrlError
from drivers.serial_link import Backoff

log = logging.getLogger(__name__)

#: URL parameters :meth:`R30xFingerprintReader.from_url` understands, with their defaults.
URL_PARAMS = {
    "baud": "57600",
    "address": "0xFFFFFFFF",
    "password": "0",
    "reply_timeout": "2.0",
    "poll_interval": "0.1",
    "frame_gap": "0.1",
    "capture_attempts": "3",
    "retry_max": "10.0",
}

#: Img2Tz answers that mean "that image was poor, capture again", not "stop".
_POOR_IMAGE = frozenset(
    {Confirmation.IMAGE_MESSY, Confirmation.TOO_FEW_FEATURES, Confirmation.NO_VALID_IMAGE}
)
#: GenImg answers that mean "no usable finger yet, keep polling".
_NO_FINGER_YET = frozenset({Confirmation.NO_FINGER, Confirmation.IMAGE_FAILED})


class R30xFingerprintReader(FingerprintReader):
    """An R30x module on a serial port: identify, guided enrolment, library upkeep.

    Every command has a deadline (``reply_timeout``); ``poll_interval`` is the pause between
    two finger checks; ``capture_attempts`` poor images in a row end a capture step.

    Events: ``finger_placed``, ``finger_lifted``, ``finger_unreadable`` (reason),
    ``finger_recognised`` (page, score), ``finger_not_recognised``, and ``enroll_step``
    (step, page) for each :class:`EnrollStep`, so a UI can follow without a callback.
    """

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 57600,
        address: int = DEFAULT_ADDRESS,
        password: int = 0,
        reply_timeout: float = 2.0,
        poll_interval: float = 0.1,
        frame_gap: float = 0.1,
        capture_attempts: int = 3,
        backoff: Backoff | None = None,
        description: str | None = None,
    ) -> None:
        if baudrate % BAUD_UNIT or not 1 <= baudrate // BAUD_UNIT <= 12:
            raise ValueError(f"baud {baudrate} is not 9600 x N with N = 1..12 (57600 is usual)")
        for name, value in (("address", address), ("password", password)):
            if not 0 <= value <= 0xFFFFFFFF:
                raise ValueError(f"{name} 0x{value:X} does not fit in 4 bytes")
        if min(reply_timeout, poll_interval, frame_gap) <= 0 or capture_attempts < 1:
            raise ValueError("timings must be positive and capture_attempts at least 1")
        super().__init__(description or f"r30x://{port}")
        self.port = port
        self.baudrate = baudrate
        self._name = f"fingerprint reader on {port}"
        self._password = password
        self._poll_interval = poll_interval
        self._capture_attempts = capture_attempts
        self._capacity = 0
        self._ready = False
        self._closed = False
        self._detail: dict[str, object] = {"port": port}
        # Identify and enrol both use the module's character buffers: one at a time.
        self._capture_lock = asyncio.Lock()
        self._channel = CommandChannel(
            self._name,
            port,
            baudrate,
            self._handshake,
            self._link_state,
            address=address,
            reply_timeout=reply_timeout,
            frame_gap=frame_gap,
            backoff=backoff,
        )

    @classmethod
    def from_url(cls, url: DeviceUrl) -> R30xFingerprintReader:
        """Build from ``r30x://PATH?...``; see :data:`URL_PARAMS` for the parameters."""
        unknown = sorted(set(url.params) - set(URL_PARAMS))
        if unknown:
            raise DeviceUrlError(
                f"unknown parameter {', '.join(unknown)} in {url.raw!r}; "
                f"known: {', '.join(URL_PARAMS)}"
            )
        if not url.path:
            raise DeviceUrlError(f"{url.raw!r} names no serial port, e.g. r30x:///dev/serial0")
        try:
            return cls(
                url.path,
                baudrate=url.int_param("baud", 57600),
                address=url.int_param("address", DEFAULT_ADDRESS),
                password=url.int_param("password", 0),
                reply_timeout=_float_param(url, "reply_timeout"),
                poll_interval=_float_param(url, "poll_interval"),
                frame_gap=_float_param(url, "frame_gap"),
                capture_attempts=url.int_param("capture_attempts", 3),
                backoff=Backoff(maximum=_float_param(url, "retry_max")),
                description=url.raw,
            )
        except DeviceUrlError:
            raise
        except ValueError as exc:
            raise DeviceUrlError(f"{url.raw!r}: {exc}") from None

    @property
    def protocol_errors(self) -> int:
        """Bad frames and stray bytes seen on the line so far."""
        return self._channel.protocol_errors

    # --- lifecycle ----------------------------------------------------------------------

    async def open(self) -> None:
        if self._closed:
            raise DeviceUnavailable(self._name, "this reader was closed; build a new one")
        await self._channel.start()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ready = False
        try:
            await self._channel.close()
        except Exception:
            log.exception("%s: closing the port failed", self._name)
        self._set_health(HealthState.OFFLINE, "closed", self._detail)

    async def _handshake(self) -> None:
        """After every (re)connect: password, system parameters, template count."""
        self._ready = False
        reply = await self._channel.request(Instruction.VFY_PWD, self._password.to_bytes(4, "big"))
        if reply.code == Confirmation.WRONG_PASSWORD:
            raise DeviceRejected(
                self._name,
                "the module refused the password (0x13 wrong password); "
                "set password= in the device URL to the module's password",
            )
        self._expect_ok(Instruction.VFY_PWD, reply)
        reply = await self._channel.request(Instruction.READ_SYS_PARA)
        self._expect_ok(Instruction.READ_SYS_PARA, reply)
        try:
            params = SystemParameters.decode(reply.data)
        except ValueError as exc:
            raise DeviceProtocolError(self._name, f"ReadSysPara on {self.port}: {exc}") from None
        reply = await self._channel.request(Instruction.TEMPLATE_NUM)
        self._expect_ok(Instruction.TEMPLATE_NUM, reply)
        self._capacity = params.capacity
        self._detail = {
            "port": self.port,
            "capacity": params.capacity,
            "templates": _count_from(reply, self._name),
            "security_level": params.security_level,
            "packet_size": params.packet_size,
            "address": f"0x{params.address:08X}",
            "baud": params.baud,
            "system_id": f"0x{params.system_id:04X}",
        }

    def _link_state(self, connected: bool, reason: str) -> None:
        if self._closed:
            return
        self._ready = connected
        if connected:
            self._set_health(HealthState.OK, f"ready on {self.port}", self._detail)
        else:
            self._set_health(HealthState.OFFLINE, reason, self._detail)

    # --- FingerprintReader ----------------------------------------------------------------

    async def identify(self, timeout: float) -> FingerMatch | None:
        async with self._capture_lock:
            await self._capture(1, self._deadline(timeout), timeout, "to identify")
            reply = await self._command(
                Instruction.SEARCH,
                bytes((1,)) + (0).to_bytes(2, "big") + self._capacity.to_bytes(2, "big"),
            )
            if reply.code == Confirmation.NOT_FOUND:
                self._emit("finger_not_recognised")
                return None
            self._expect_ok(Instruction.SEARCH, reply)
            if len(reply.data) < 4:
                raise DeviceProtocolError(
                    self._name, f"Search answer has {len(reply.data)} data bytes, expected 4"
                )
            match = FingerMatch(
                page=int.from_bytes(reply.data[0:2], "big"),
                score=int.from_bytes(reply.data[2:4], "big"),
            )
            self._emit("finger_recognised", page=match.page, score=match.score)
            return match

    async def enroll(
        self, page: int, timeout: float, progress: EnrollProgress | None = None
    ) -> None:
        self._require_ready()
        self._check_page(page)
        async with self._capture_lock:
            self._step(EnrollStep.PLACE_FINGER, page, progress)
            await self._capture(1, self._deadline(timeout), timeout, f"to enrol at page {page}")
            self._step(EnrollStep.LIFT_FINGER, page, progress)
            await self._wait_for_lift(self._deadline(timeout), timeout)
            self._step(EnrollStep.PLACE_AGAIN, page, progress)
            await self._capture(2, self._deadline(timeout), timeout, f"again for page {page}")
            self._step(EnrollStep.MERGING, page, progress)
            reply = await self._command(Instruction.REG_MODEL)
            if not reply.ok:
                raise DeviceRejected(
                    self._name,
                    f"the two captures do not merge into one template: {describe(reply.code)}; "
                    "enrol again, placing the same finger twice",
                )
            reply = await self._command(Instruction.STORE, bytes((1,)) + page.to_bytes(2, "big"))
            if not reply.ok:
                raise DeviceRejected(
                    self._name,
                    f"could not store the template at page {page}: {describe(reply.code)}",
                )
            self._step(EnrollStep.STORED, page, progress)

    async def delete(self, page: int) -> None:
        self._require_ready()
        self._check_page(page)
        reply = await self._command(
            Instruction.DELETE_CHAR, page.to_bytes(2, "big") + (1).to_bytes(2, "big")
        )
        if not reply.ok:
            raise DeviceRejected(
                self._name, f"could not delete page {page}: {describe(reply.code)}"
            )

    async def count(self) -> int:
        reply = await self._command(Instruction.TEMPLATE_NUM)
        self._expect_ok(Instruction.TEMPLATE_NUM, reply)
        return _count_from(reply, self._name)

    async def used_pages(self) -> frozenset[int]:
        self._require_ready()
        used: set[int] = set()
        for index_page in range(min(4, math.ceil(self._capacity / INDEX_PAGE_SPAN))):
            reply = await self._command(Instruction.READ_INDEX_TABLE, bytes((index_page,)))
            self._expect_ok(Instruction.READ_INDEX_TABLE, reply)
            if len(reply.data) != INDEX_PAGE_SPAN // 8:
                raise DeviceProtocolError(
                    self._name,
                    f"ReadIndexTable answer has {len(reply.data)} data bytes, expected 32",
                )
            used |= pages_in_bitmap(reply.data, index_page)
        return frozenset(page for page in used if page < self._capacity)

    async def erase_all(self) -> None:
        reply = await self._command(Instruction.EMPTY)
        if not reply.ok:
            raise DeviceRejected(self._name, f"could not erase the library: {describe(reply.code)}")

    # --- capture steps --------------------------------------------------------------------

    async def _capture(self, buffer: int, deadline: float, timeout: float, purpose: str) -> None:
        """Wait for a finger and turn its image into features in ``buffer``."""
        poor = 0
        while True:
            await self._wait_for_finger(deadline, timeout, purpose)
            reply = await self._command(Instruction.IMG_2_TZ, bytes((buffer,)))
            if reply.ok:
                return
            if reply.code not in _POOR_IMAGE:
                raise DeviceRejected(
                    self._name, f"could not read the finger {purpose}: {describe(reply.code)}"
                )
            poor += 1
            self._emit("finger_unreadable", reason=describe(reply.code))
            if poor >= self._capture_attempts:
                raise DeviceRejected(
                    self._name,
                    f"could not read the finger {purpose} in {poor} tries: {describe(reply.code)}; "
                    "clean the sensor or the finger and try again",
                )

    async def _wait_for_finger(self, deadline: float, timeout: float, purpose: str) -> None:
        while True:
            reply = await self._command(Instruction.GEN_IMG)
            if reply.ok:
                self._emit("finger_placed")
                return
            if reply.code not in _NO_FINGER_YET:
                raise DeviceRejected(self._name, f"GenImg {purpose}: {describe(reply.code)}")
            await self._pause_until(
                deadline, f"no finger on the sensor {purpose} within {timeout:g} s"
            )

    async def _wait_for_lift(self, deadline: float, timeout: float) -> None:
        while True:
            reply = await self._command(Instruction.GEN_IMG)
            if reply.code == Confirmation.NO_FINGER:
                self._emit("finger_lifted")
                return
            await self._pause_until(deadline, f"the finger was not lifted within {timeout:g} s")

    async def _pause_until(self, deadline: float, timeout_message: str) -> None:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise DeviceTimeout(self._name, timeout_message)
        await asyncio.sleep(min(self._poll_interval, remaining))

    def _step(self, step: EnrollStep, page: int, progress: EnrollProgress | None) -> None:
        self._emit("enroll_step", step=step.value, page=page)
        if progress is not None:
            progress(step)

    # --- commands -------------------------------------------------------------------------

    async def _command(self, instruction: Instruction, params: bytes = b"") -> Reply:
        """One command once connected; keeps health in step with how the module answers."""
        self._require_ready()
        try:
            reply = await self._channel.request(instruction, params)
        except DeviceTimeout as exc:
            if self._ready:
                self._set_health(HealthState.DEGRADED, exc.message, self._detail)
            raise
        if self._ready and self.health.state is HealthState.DEGRADED:
            self._set_health(HealthState.OK, f"ready on {self.port}", self._detail)
        if reply.code == Confirmation.PASSWORD_NOT_VERIFIED:
            # The module lost its session (power blip): the handshake must run again.
            self._ready = False
            self._channel.drop("the module asks for its password again (did it restart?)")
            raise DeviceUnavailable(
                self._name, f"{instruction_name(instruction)}: {describe(reply.code)}; reconnecting"
            )
        return reply

    def _expect_ok(self, instruction: Instruction, reply: Reply) -> None:
        if not reply.ok:
            raise DeviceRejected(
                self._name, f"{instruction_name(instruction)} answered {describe(reply.code)}"
            )

    def _require_ready(self) -> None:
        if not self._ready:
            raise DeviceUnavailable(
                self._name, f"the module is not connected ({self.health.reason})"
            )

    def _check_page(self, page: int) -> None:
        if not 0 <= page < self._capacity:
            raise DeviceRejected(
                self._name, f"page {page} is outside the library (0..{self._capacity - 1})"
            )

    @staticmethod
    def _deadline(timeout: float) -> float:
        return asyncio.get_running_loop().time() + timeout


def _count_from(reply: Reply, device: str) -> int:
    if len(reply.data) < 2:
        raise DeviceProtocolError(
            device, f"TemplateNum answer has {len(reply.data)} data bytes, expected 2"
        )
    return int.from_bytes(reply.data[:2], "big")


def _float_param(url: DeviceUrl, key: str) -> float:
    raw = url.param(key, URL_PARAMS[key])
    try:
        return float(raw)
    except ValueError:
        raise DeviceUrlError(f"parameter {key}={raw!r} in {url.raw!r} is not a number") from None

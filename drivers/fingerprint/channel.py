"""One command at a time to an R30x module, each with a deadline, over a self-reopening port.

The module answers every command with one acknowledge packet, and nothing tags an answer with
the command it belongs to. So commands are strictly serialised: the next one is sent only
when the previous one was answered, timed out, or was abandoned and its answer has had time
to arrive. Bad bytes on the line are logged (in hex) and skipped; they never raise out of
the reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from drivers.base import DeviceProtocolError, DeviceTimeout, DeviceUnavailable
from drivers.fingerprint.frame import (
    DEFAULT_ADDRESS,
    FrameParser,
    FrameProblem,
    Packet,
    PacketId,
    command,
)
from drivers.fingerprint.instructions import Confirmation, describe, instruction_name
from drivers.serial_link import Backoff, SerialLink

log = logging.getLogger(__name__)

#: A lone 0x55 is what some modules send once after power-up to say they are ready.
READY_BYTE = b"\x55"


@dataclass(frozen=True)
class Reply:
    """An acknowledge: the confirmation code and the data after it."""

    code: int
    data: bytes = b""

    @property
    def ok(self) -> bool:
        return self.code == Confirmation.OK


class _NoAnswer(Exception):
    """The deadline of an exchange passed with no acknowledge (only inside the channel)."""


def _no_answer(future: asyncio.Future[Packet]) -> None:
    if not future.done():
        future.set_exception(_NoAnswer())


@dataclass
class _Exchange:
    """A command on the wire, waiting for its acknowledge."""

    instruction: int
    future: asyncio.Future[Packet]
    deadline: float
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    problems: list[FrameProblem] = field(default_factory=list)


class CommandChannel:
    """Sends commands to one module and hands back its acknowledges.

    ``on_connect`` (the handshake) runs after every (re)open and may use :meth:`request`;
    ``on_state`` hears ``(connected, reason)``. After ``max_silence`` commands in a row got
    no answer the port is dropped, so the link reopens it and the handshake runs again.
    """

    def __init__(
        self,
        device: str,
        port: str,
        baudrate: int,
        on_connect: Callable[[], Awaitable[None]],
        on_state: Callable[[bool, str], None],
        *,
        address: int = DEFAULT_ADDRESS,
        reply_timeout: float = 2.0,
        frame_gap: float = 0.1,
        max_silence: int = 3,
        backoff: Backoff | None = None,
    ) -> None:
        self.device = device
        self.port = port
        self.address = address
        self.reply_timeout = reply_timeout
        self.frame_gap = frame_gap
        self.max_silence = max_silence
        #: Protocol problems seen since the channel was made (for health detail and tests).
        self.protocol_errors = 0
        self._on_state = on_state
        self._parser = FrameParser(address, accept={PacketId.ACK})
        self._lock = asyncio.Lock()
        self._exchange: _Exchange | None = None
        self._silent_in_a_row = 0
        self._gap_timer: asyncio.TimerHandle | None = None
        self._verdict_timer: asyncio.TimerHandle | None = None
        self._drop_reason: str | None = None
        self._settler: asyncio.Task[None] | None = None
        self._link = SerialLink(
            device, port, baudrate, self._on_data, on_connect, self._link_state, backoff
        )

    @property
    def connected(self) -> bool:
        return self._link.connected

    async def start(self) -> None:
        """Open the port; returns after the first attempt, connected or not."""
        await self._link.start()

    async def close(self) -> None:
        settler, self._settler = self._settler, None
        if settler is not None:
            settler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await settler
        await self._link.close()
        self._fail_exchange(DeviceUnavailable(self.device, f"{self.port} was closed"))
        self._cancel_gap_timer()
        self._cancel_verdict_timer()

    def drop(self, reason: str) -> None:
        """Close the port now; the link reopens it after a backoff and runs the handshake."""
        if self._link.connected:
            # SerialLink reports a drop with a generic reason; keep ours for the health.
            self._drop_reason = reason
        self._link.drop(reason)

    async def request(
        self,
        instruction: int,
        params: bytes = b"",
        *,
        timeout: float | None = None,
        attempts: int = 2,
    ) -> Reply:
        """Send a command and return its acknowledge.

        A lost or garbled answer is retried (every instruction the driver sends is safe to
        repeat) up to ``attempts`` times in all. Raises :class:`DeviceTimeout`,
        :class:`DeviceProtocolError` or :class:`DeviceUnavailable`.
        """
        failure: DeviceTimeout | DeviceProtocolError | None = None
        for attempt in range(1, attempts + 1):
            try:
                packet = await self._exchange_once(instruction, params, timeout)
                if packet.code == Confirmation.RECEIVE_ERROR:
                    raise DeviceProtocolError(
                        self.device,
                        f"the module on {self.port} received {instruction_name(instruction)} "
                        f"garbled ({describe(packet.code)})",
                    )
            except (DeviceTimeout, DeviceProtocolError) as exc:
                failure = exc
                if attempt < attempts:
                    log.info(
                        "%s: retrying %s: %s",
                        self.device,
                        instruction_name(instruction),
                        exc.message,
                    )
                continue
            return Reply(packet.code, packet.data)
        assert failure is not None
        raise failure

    async def _exchange_once(
        self, instruction: int, params: bytes, timeout: float | None
    ) -> Packet:
        limit = self.reply_timeout if timeout is None else timeout
        frame = command(instruction, params, self.address).encode()
        await self._lock.acquire()
        handed_over = False
        loop = asyncio.get_running_loop()
        exchange = _Exchange(instruction, loop.create_future(), loop.time() + limit)
        # Everything is made ready before the command goes out and nothing but the wait
        # follows it, so an answer finds the event loop already waiting for it (and, with a
        # simulated module in this process, the GIL free for the simulator's thread). The
        # deadline is a plain timer that fails the future: cheaper than a timeout scope
        # around the await, which is armed and torn down again on every exchange.
        deadline = loop.call_at(exchange.deadline, _no_answer, exchange.future)
        try:
            self._exchange = exchange
            await self._link.write(frame)
            try:
                packet = await exchange.future
            except _NoAnswer:
                name = instruction_name(instruction)
                self._note_silence(name, limit)
                raise DeviceTimeout(
                    self.device,
                    f"no answer to {name} within {limit:.2f} s from the module at "
                    f"address 0x{self.address:08X} on {self.port}",
                ) from None
            self._silent_in_a_row = 0
            return packet
        except asyncio.CancelledError:
            if not exchange.answered.is_set():
                # The module will still answer: keep the line reserved until it has (or its
                # deadline passed), so that answer cannot be taken for the next command's.
                self._settler = asyncio.create_task(
                    self._settle(exchange), name=f"settle {instruction_name(instruction)}"
                )
                handed_over = True
            raise
        finally:
            deadline.cancel()
            if not handed_over:
                self._release(exchange)

    async def _settle(self, exchange: _Exchange) -> None:
        try:
            remaining = exchange.deadline - asyncio.get_running_loop().time()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, remaining)):
                    await exchange.answered.wait()
        finally:
            self._release(exchange)

    def _release(self, exchange: _Exchange) -> None:
        self._cancel_verdict_timer()
        if self._exchange is exchange:
            self._exchange = None
        if not exchange.future.done():
            exchange.future.cancel()
        self._lock.release()

    def _note_silence(self, name: str, limit: float) -> None:
        self._silent_in_a_row += 1
        if self._silent_in_a_row >= self.max_silence:
            self._silent_in_a_row = 0
            self.drop(
                f"the module did not answer {self.max_silence} commands in a row (last: {name})"
            )

    # --- receiving ----------------------------------------------------------------------

    def _on_data(self, chunk: bytes) -> None:
        self._handle(self._parser.feed(chunk))
        self._cancel_gap_timer()
        if self._parser.pending:
            # A frame is half in: if the line stays quiet it never completes.
            loop = asyncio.get_running_loop()
            self._gap_timer = loop.call_later(self.frame_gap, self._line_went_quiet)

    def _line_went_quiet(self) -> None:
        self._gap_timer = None
        self._handle(self._parser.flush())

    def _handle(self, items: list[Packet | FrameProblem]) -> None:
        answers: list[Packet] = []
        for item in items:
            if isinstance(item, Packet):
                self._on_packet(item, answers)
            else:
                self._on_problem(item)
        exchange = self._exchange
        if exchange is not None and answers:
            self._answer(exchange, answers)
        if (
            exchange is not None
            and exchange.problems
            and not exchange.answered.is_set()
            and self._verdict_timer is None
        ):
            # The answer probably came garbled. Give a good frame a moment to follow (noise
            # can precede an intact answer), then fail now rather than at the deadline.
            loop = asyncio.get_running_loop()
            self._verdict_timer = loop.call_later(self.frame_gap, self._give_up, exchange)

    def _give_up(self, exchange: _Exchange) -> None:
        self._verdict_timer = None
        if exchange is not self._exchange or exchange.answered.is_set():
            return
        exchange.answered.set()
        if not exchange.future.done():
            exchange.future.set_exception(
                DeviceProtocolError(
                    self.device,
                    f"bad answer to {instruction_name(exchange.instruction)} on {self.port}: "
                    f"{exchange.problems[0]}",
                )
            )

    def _on_packet(self, packet: Packet, answers: list[Packet]) -> None:
        exchange = self._exchange
        if exchange is None or exchange.answered.is_set():
            self.protocol_errors += 1
            log.warning(
                "%s: protocol error: acknowledge %s with no command waiting for it "
                "(a late answer?), ignored",
                self.device,
                packet.encode().hex(" ").upper(),
            )
            return
        answers.append(packet)

    def _answer(self, exchange: _Exchange, answers: list[Packet]) -> None:
        """Hand the command its acknowledge; two at once leave it unanswered and retried.

        Nothing ties an acknowledge to its command, so when two arrive together one of them
        is stale (a frame replayed on the line, a late answer), and which one cannot be told:
        taking the first could match the wrong finger, so neither is taken.
        """
        exchange.answered.set()
        if exchange.future.done():
            return
        if len(answers) == 1:
            exchange.future.set_result(answers[0])
            return
        self.protocol_errors += 1
        quoted = " | ".join(answer.encode().hex(" ").upper() for answer in answers)
        log.warning("%s: protocol error: %d acknowledges to one %s at once (a replayed frame?): "
                    "%s; resynchronising", self.device, len(answers),
                    instruction_name(exchange.instruction), quoted)
        exchange.future.set_exception(
            DeviceProtocolError(
                self.device,
                f"{len(answers)} answers to {instruction_name(exchange.instruction)} on "
                f"{self.port} at once; which is its own cannot be told",
            )
        )

    def _on_problem(self, problem: FrameProblem) -> None:
        if problem.data == READY_BYTE:
            log.debug("%s: module on %s says it is ready (0x55)", self.device, self.port)
            return
        self.protocol_errors += 1
        log.warning("%s: protocol error: %s; resynchronising", self.device, problem)
        exchange = self._exchange
        if exchange is not None and not exchange.answered.is_set() and problem.frame_level:
            exchange.problems.append(problem)

    def _link_state(self, connected: bool, reason: str) -> None:
        self._silent_in_a_row = 0
        drop_reason, self._drop_reason = self._drop_reason, None
        if not connected:
            reason = drop_reason or reason
            # Half a frame from the old connection must not be glued to the next one's bytes.
            self._parser.reset()
            self._cancel_gap_timer()
            self._fail_exchange(DeviceUnavailable(self.device, reason))
        self._on_state(connected, reason)

    def _fail_exchange(self, error: Exception) -> None:
        exchange = self._exchange
        if exchange is not None and not exchange.future.done():
            exchange.answered.set()
            exchange.future.set_exception(error)

    def _cancel_gap_timer(self) -> None:
        if self._gap_timer is not None:
            self._gap_timer.cancel()
            self._gap_timer = None

    def _cancel_verdict_timer(self) -> None:
        if self._verdict_timer is not None:
            self._verdict_timer.cancel()
            self._verdict_timer = None

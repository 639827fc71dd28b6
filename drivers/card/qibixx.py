"""Card payments through a Qibixx MDB interface (MDB-USB or Pi HAT) and the cashless reader.

The interface is a cashless master and we play the vending machine controller, selection first
("always idle"). A sale on the wire (PROTOCOLS.md section 2)::

    D,REQ,1.20,10  ->  d,STATUS,VEND, later d,STATUS,RESULT,1,1.20   approved: a session is open
    D,END          ->  d,STATUS,IDLE                                  the reader charges
    D,END,-1       ->  d,STATUS,IDLE                                  the reader reverts

The wire carries no reference, so the driver makes up an opaque one per approval and ends only
the session it knows to be open. Whatever goes wrong (reset, unplug, restart) the reader's own
rule protects the customer: a session not confirmed with ``D,END`` is never charged. So when in
doubt the driver makes sure a session ends *without* ``D,END``: it voids stray approvals, and
every reconnect re-initialises the reader, which ends anything left open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from drivers.base import (
    Authorization,
    AuthorizationOutcome,
    DeviceError,
    DeviceProtocolError,
    DeviceRejected,
    DeviceUnavailable,
    HealthState,
)
from drivers.card import lines
from drivers.card.interface import (
    END_ANSWERS,
    Ending,
    HostCancel,
    Incoming,
    QibixxInterface,
    Session,
    Waiter,
    new_reference,
)
from drivers.card.lines import (
    InterfaceError,
    ReaderIdle,
    ReaderReset,
    VendApproved,
    VendDenied,
    VendPending,
)
from drivers.card.timing import ReaderTiming
from drivers.registry import DeviceUrl, DeviceUrlError
from drivers.serial_link import Backoff, SerialLink

log = logging.getLogger(__name__)

DEFAULT_BAUD = 115200

_REQUEST_ANSWERS = (
    VendPending, VendApproved, VendDenied, ReaderReset, ReaderIdle, InterfaceError, HostCancel,
)


class QibixxCardReader(QibixxInterface):
    """An MDB cashless reader behind a Qibixx interface: ``qibixx:///dev/ttyACM0?baud=115200``.

    ``authorize`` returns ``declined`` for every ``d,STATUS,RESULT,-1``: the interface says the
    same for a declined card, a customer who cancelled at the reader and a request that timed
    out there. ``cancelled`` means the kiosk cancelled, or the reader went idle without a result.
    """

    def __init__(
        self,
        port: str,
        baudrate: int = DEFAULT_BAUD,
        timing: ReaderTiming | None = None,
        description: str | None = None,
    ) -> None:
        super().__init__(port, baudrate, timing or ReaderTiming(), description or f"qibixx://{port}")

    @classmethod
    def from_url(cls, url: DeviceUrl) -> QibixxCardReader:
        """Build from ``qibixx://PATH?baud=115200&reply_timeout=3&startup_timeout=10...``."""
        if not url.path:
            raise DeviceUrlError(f"{url.raw!r} names no serial port, e.g. qibixx:///dev/ttyACM0")
        known = {"baud"} | ReaderTiming.parameter_names()
        unknown = sorted(set(url.params) - known)
        if unknown:
            raise DeviceUrlError(
                f"unknown parameter(s) {', '.join(unknown)} in {url.raw!r}; "
                f"known: {', '.join(sorted(known))}"
            )
        baud = url.int_param("baud", DEFAULT_BAUD)
        if baud <= 0:
            raise DeviceUrlError(f"baud={baud} in {url.raw!r} must be positive")
        return cls(url.path, baud, ReaderTiming.from_url(url), description=url.raw)

    # --- lifecycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        if self._link is not None or self._closed:
            return
        self._link = SerialLink(
            self._who, self.port, self.baudrate,
            on_data=self._on_data, on_connect=self._handshake, on_state=self._on_link_state,
            backoff=Backoff(initial=self.timing.retry_initial, maximum=self.timing.retry_max),
        )
        await self._link.start()

    async def close(self) -> None:
        """Cancel a waiting request, void an open session, disable the reader, release the port."""
        if self._closed:
            return
        self._closed = True
        self._interrupt_request()
        try:
            async with asyncio.timeout(2 * self.timing.reply_timeout + self.timing.settle):
                async with self._lock:
                    await self._leave_safe()
        except Exception as exc:
            log.warning("%s: could not leave the reader safe while closing: %r", self._who, exc)
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._link is not None:
                await self._link.close()
            self._ready = False
            self._set_health(HealthState.OFFLINE, "closed", self._detail())

    async def _leave_safe(self) -> None:
        if not self._connected:
            return
        await self._void_stray_approval()
        session = self._session
        if session is not None:
            await self._end_session(session, lines.VEND_FAILURE)
            self._emit("voided", amount_cents=session.amount_cents, reference=session.reference)
        await self._send(lines.READER_OFF)
        self._enabled = False

    # --- the sale -----------------------------------------------------------------------------

    async def authorize(self, amount_cents: int, item: int, timeout: float) -> Authorization:
        if amount_cents <= 0:
            raise ValueError(f"amount must be positive, not {amount_cents} cents")
        request = lines.vend_request(amount_cents, item)
        async with self._lock:
            self._require_ready()
            if not self._want_enabled:
                raise DeviceRejected(self._who, "the reader is disabled (out of service)")
            await self._settle()
            if self._session is not None:
                raise DeviceRejected(
                    self._who, f"session {self._session.reference} is still open on the reader; "
                    "capture or void it before the next vend request",
                )
            waiter = self._expect(_REQUEST_ANSWERS)
            self._requesting, self._result_garbled = True, False
            try:
                try:
                    await self._send(request)
                    self._emit("card_requested", amount_cents=amount_cents, item=item)
                    answer = await self._await_result(waiter, request, timeout)
                finally:
                    self._requesting = False
                    self._release(waiter)
            except asyncio.CancelledError:
                # Tell the reader before re-raising, from a task of its own so that a second
                # cancellation cannot cut the message short.
                cleanup = self._spawn(self._after_cancellation(waiter, amount_cents, item))
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(cleanup)
                raise
            late = _queued_approval(waiter)
            if late is None and self._result_garbled and (
                answer is None or isinstance(answer, ReaderIdle | HostCancel)
            ):
                late = amount_cents  # the garbled line may have been the approval: end it
            try:
                return await self._conclude(answer, amount_cents, item, request, timeout)
            finally:
                if late is not None and not isinstance(answer, VendApproved):
                    # An approval queued behind the cancel or deadline we acted on.
                    self._stray_approval = late
                    await self._void_stray_approval()

    async def _await_result(self, waiter: Waiter, request: str, timeout: float) -> Incoming | None:
        """The reader's answer to a vend request, or None when the customer's time ran out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        ack_deadline = loop.time() + self.timing.reply_timeout
        acknowledged = False
        while True:
            limit = deadline if acknowledged else min(deadline, ack_deadline)
            answer = await self._next(waiter, limit)
            if answer is None:
                if acknowledged or limit >= deadline:
                    return None
                await self._abandon_request()
                raise self._no_answer(f"sent {request}", "d,STATUS,VEND", self.timing.reply_timeout)
            if isinstance(answer, VendPending):
                acknowledged = True
                continue
            return answer

    async def _conclude(
        self, answer: Incoming | None, amount: int, item: int, request: str, timeout: float
    ) -> Authorization:
        declined = AuthorizationOutcome.DECLINED
        match answer:
            case None:
                await self._abandon_request()
                reason = f"no card presented within {timeout:g} s; cancelled at the reader"
                self._emit("timed_out", amount_cents=amount)
                return Authorization(AuthorizationOutcome.TIMED_OUT, amount, reason=reason)
            case VendApproved(amount_cents=approved) if approved == amount:
                session = Session(new_reference(self._origin), amount, item)
                self._session = session
                self._emit("approved", amount_cents=amount, reference=session.reference)
                return Authorization(AuthorizationOutcome.APPROVED, amount, session.reference)
            case VendApproved(amount_cents=approved):
                return await self._refuse_wrong_amount(approved, amount, item)
            case VendDenied() | ReaderReset():
                reason = (
                    "denied at the reader (card declined, or cancelled or timed out there)"
                    if isinstance(answer, VendDenied)
                    else "the reader reset during the vend request"
                )
                self._emit("declined", amount_cents=amount, reason=reason)
                return Authorization(declined, amount, reason=reason)
            case ReaderIdle() | HostCancel():
                await self._abandon_request()
                reason = (
                    "cancelled by the kiosk" if isinstance(answer, HostCancel)
                    else "the reader went idle without a result"
                )
                self._emit("cancelled", amount_cents=amount, reason=reason)
                return Authorization(AuthorizationOutcome.CANCELLED, amount, reason=reason)
            case InterfaceError(detail=detail):
                raise DeviceRejected(
                    self._who, f"the interface refused {request}: d,ERR,{detail} "
                    "(expected d,STATUS,VEND)",
                )
            case _:
                raise DeviceProtocolError(self._who, f"unexpected answer to {request}: {answer}")

    async def _refuse_wrong_amount(self, approved: int, amount: int, item: int) -> Authorization:
        session = Session(new_reference(self._origin), approved, item)
        # Registered first: if the void is not confirmed, cancel() or close() will retry it.
        self._session = session
        got, wanted = lines.format_amount(approved), lines.format_amount(amount)
        log.warning("%s: reader approved %s for a %s request; voiding it", self._who, got, wanted)
        try:
            await self._end_session(session, lines.VEND_FAILURE)
            done = "voided at the reader"
        except DeviceRejected:
            # Refused: no session is open, so that approval was no answer to this request (a
            # stale or replayed line) and the request still waits there. Cancel it, or the
            # reader refuses every next request.
            await self._abandon_request()
            done = "it was not this request's; the request was cancelled at the reader"
        reason = f"the reader approved {got} instead of {wanted}; {done}"
        self._emit("declined", amount_cents=amount, reason=reason)
        return Authorization(AuthorizationOutcome.DECLINED, amount, reason=reason)

    async def _after_cancellation(self, waiter: Waiter, amount: int, item: int) -> None:
        approval = _queued_approval(waiter)
        if approval is None:
            await self._abandon_request()
            if self._result_garbled:
                # A line garbled while the request waited may have been its approval: a session
                # it opened must not stay open (money held, and the reader refuses new requests).
                self._stray_approval = amount
                await self._void_stray_approval()
        else:
            # The approval came in just as the awaiting task was cancelled: nobody will capture it.
            session = Session(new_reference(self._origin), approval, item)
            self._session = session
            await self._end_session(session, lines.VEND_FAILURE)
        self._emit("cancelled", reason="the kiosk cancelled the vend request")

    async def capture(self, authorization: Authorization) -> None:
        async with self._lock:
            if self._how_ended(authorization.reference) is Ending.CAPTURED:
                return  # asked again: the reader confirmed it before
            session = self._open_session(authorization, "capture")
            await self._end_session(session, lines.VEND_SUCCESS)
            self._emit("captured", amount_cents=session.amount_cents, reference=session.reference)

    async def void(self, authorization: Authorization) -> None:
        async with self._lock:
            ended = self._how_ended(authorization.reference)
            if ended is Ending.CAPTURED:
                raise DeviceRejected(self._who, f"cannot void {authorization.reference}: the "
                                     "reader already charged it")
            if ended is not None:
                log.info("%s: session %s already ended without a charge (%s)",
                         self._who, authorization.reference, ended)
                return
            session = self._open_session(authorization, "void")
            await self._end_session(session, lines.VEND_FAILURE)
            self._emit("voided", amount_cents=session.amount_cents, reference=session.reference)

    async def cancel(self) -> None:
        """Cancel a waiting vend request and void an open session; nothing to do is fine.

        While the interface is offline there is nothing to send: the handshake after the
        reconnect re-initialises the reader, which ends any session without charging it.
        """
        self._interrupt_request()
        async with self._lock:
            await self._void_stray_approval()
            session = self._session
            if session is None or not self._connected:
                return
            await self._end_session(session, lines.VEND_FAILURE)
            self._emit("voided", amount_cents=session.amount_cents, reference=session.reference)

    async def set_enabled(self, enabled: bool) -> None:
        """Enable or disable the reader; while offline the wish is applied on reconnect."""
        if not enabled:
            self._interrupt_request()
        async with self._lock:
            self._want_enabled = enabled
            if not (self._connected and self._ready):
                log.info("%s: reader will be %s when it is back", self._who, _abled(enabled))
                return
            if not await self._apply_enabled():
                return  # the reader reset instead of answering: the recovery applies the wish
            self._emit(_abled(enabled))
            self._set_health(HealthState.OK, self._ready_reason(), self._detail())

    def _open_session(self, authorization: Authorization, verb: str) -> Session:
        session = self._session
        if session is None or session.reference != authorization.reference:
            raise DeviceRejected(
                self._who, f"cannot {verb} {authorization.reference or '(no reference)'}: "
                "no such session is open on the reader (it was reset or already ended, or the "
                "kiosk restarted); the reader charges no session it was not told to complete",
            )
        if not self._connected:
            raise DeviceUnavailable(self._who, f"cannot {verb}: offline ({self.health.reason})")
        return session


    # --- ending sessions ------------------------------------------------------------------------

    async def _end_session(self, session: Session, command: str) -> None:
        """Send D,END or D,END,-1 for the open session and wait for the reader to confirm."""
        reply = await self._exchange(command, END_ANSWERS, "d,STATUS,IDLE")
        if self._session is session:
            self._session = None
        if isinstance(reply, ReaderIdle):
            self._record_end(session, Ending.CAPTURED if command == lines.VEND_SUCCESS
                             else Ending.VOIDED)
            return
        if isinstance(reply, ReaderReset):
            self._record_end(session, Ending.RESET)
            if command == lines.VEND_FAILURE:
                return  # the reset ended it unpaid, which is what a void asks for
            raise DeviceRejected(
                self._who, f"the reader reset before confirming {command}; session "
                f"{session.reference} ended without a charge",
            )
        detail = reply.detail if isinstance(reply, InterfaceError) else repr(reply)
        raise DeviceRejected(
            self._who, f"the interface refused {command}: d,ERR,{detail} (expected "
            f"d,STATUS,IDLE); session {session.reference} is not open on the reader",
        )

    async def _abandon_request(self) -> None:
        """Send D,REQ,-1 and keep quiet for a moment: a result may have crossed it."""
        self._quiet_until = asyncio.get_running_loop().time() + self.timing.settle
        try:
            await self._send(lines.CANCEL_REQUEST)
        except DeviceUnavailable as exc:
            log.info("%s: could not cancel the vend request (%s); the reconnect resets the "
                     "reader", self._who, exc.message)

    async def _settle(self) -> None:
        """Let a result that crossed the last cancel arrive (and void it) before a new request."""
        await self._quiet()
        await self._void_stray_approval()

    async def _void_stray_approval(self) -> None:
        amount, self._stray_approval = self._stray_approval, None
        if amount is None or self._session is not None or not self._connected:
            return
        session = Session(new_reference(self._origin), amount, item=-1)
        self._session = session
        try:
            await self._end_session(session, lines.VEND_FAILURE)
        except DeviceError as exc:
            log.warning("%s: could not void a stray approval: %s", self._who, exc)


def _queued_approval(waiter: Waiter) -> int | None:
    """Empty a released waiter's inbox; the amount of the last approval in it, if any."""
    amount = None
    while not waiter.inbox.empty():
        message = waiter.inbox.get_nowait()
        if isinstance(message, VendApproved):
            amount = message.amount_cents
    return amount


def _abled(enabled: bool) -> str:
    return "enabled" if enabled else "disabled"


"""The sale engine: takes one sale at a time from payment to product, driving the devices.

Every step is recorded durably (see :mod:`kiosk.ledger`) *before* the next physical side
effect: the sale is ``authorizing`` before the reader is asked, ``dispensing`` before the motor
starts, ``dispensed`` as soon as the drop beam fired. A crash anywhere therefore leaves a state
from which :mod:`kiosk.recovery` knows what to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from drivers.base import (
    AuthorizationOutcome,
    DeviceError,
    DeviceEvent,
    DeviceKind,
    DeviceRejected,
    DeviceTimeout,
    DeviceUnavailable,
    DispenseOutcome,
    DispenseResult,
    FingerMatch,
)
from kiosk import recovery, settlement
from kiosk.config import Settings
from kiosk.events import EventBus
from kiosk.hardware import Hardware
from kiosk.ledger import (
    Effect,
    Ledger,
    LedgerError,
    NotRecorded,
    SaleBusy,
    SaleNotFound,
    SlotUnavailable,
    Write,
    both,
    credit_back,
    debit,
    flag_slot,
    product_left_slot,
)
from kiosk.models import Sale
from kiosk.sale_view import sale_view
from kiosk.service import Service
from kiosk.states import TERMINAL, PaymentMethod, SaleState
from kiosk.states import SaleState as S

log = logging.getLogger(__name__)

T = TypeVar("T")


class PaymentUnavailable(LedgerError):
    code = "payment_unavailable"


class OutOfService(LedgerError):
    code = "out_of_service"


class TooLate(LedgerError):
    code = "too_late"


class InsufficientBalance(LedgerError):
    code = "insufficient_balance"

    def __init__(self, balance_cents: int) -> None:
        super().__init__(f"the balance of {balance_cents} cents does not cover the price")
        self.balance_cents = balance_cents


#: Vend outcomes after which the slot must not be sold from until a technician looked.
SLOT_FAULTS = {
    DispenseOutcome.JAMMED: "jammed: clear the spiral",
    DispenseOutcome.MOTOR_MISSING: "motor does not turn: check the motor",
    DispenseOutcome.NOT_DROPPED: "no product seen to drop: check stock and the drop beam",
    DispenseOutcome.BEAM_BLOCKED: "drop beam blocked: clear the delivery bin",
}


@dataclass
class _Run:
    """The one sale in progress, and the customer's request to cancel it."""

    sale: Sale
    cancel_requested: asyncio.Event = field(default_factory=asyncio.Event)
    payment_settled: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    #: The drop beam's ``dispensed`` on its way to the ledger (recorded as the beam fired).
    drop_recorded: asyncio.Task[None] | None = None


class Sales:
    """Starts, drives, cancels and waits for sales; at most one at a time."""

    def __init__(
        self,
        ledger: Ledger,
        hardware: Hardware,
        service: Service,
        settings: Settings,
        bus: EventBus,
    ) -> None:
        self.ledger = ledger
        self.hardware = hardware
        self.service = service
        self.settings = settings
        self.bus = bus
        self._run: _Run | None = None
        #: A sale is being opened (its first commit is on its way to the disk).
        self._opening = False
        self._held_for = ""
        #: Called after every sale has ended (the machine re-assesses its service).
        self.on_finished: list[Callable[[], None]] = []
        hardware.on_event.append(self._device_event)

    @property
    def current(self) -> Sale | None:
        return self._run.sale if self._run else None

    async def start(self, slot_code: str, method: PaymentMethod) -> Sale:
        """Open a sale and start driving it; returns at once with the sale,
        recorded as created and authorizing."""
        # No await between this check and claiming the mechanism: of concurrent requests, one
        # wins; the others are refused here, not by the database.
        if self._run is not None or self._opening:
            raise SaleBusy("another sale is in progress; wait for it to finish")
        if self._held_for:
            raise SaleBusy(f"a technician is using the kiosk ({self._held_for})")
        status = self.service.status()
        if not status.in_service:
            raise OutOfService("the kiosk is out of service: " + "; ".join(status.reasons))
        if method not in status.payment_methods:
            raise PaymentUnavailable(f"paying by {method} is not available right now")
        vending = self.hardware.vending
        if vending is not None and slot_code not in vending.slots():
            raise SlotUnavailable(f"the vending mechanism has no slot {slot_code}")
        self._opening = True
        try:
            sale = await self.ledger.scribe(self.ledger.open_sale, slot_code, method)
        finally:
            self._opening = False
        run = _Run(sale)
        self._run = run
        run.task = asyncio.create_task(self._drive(run), name=f"sale {sale.id}")
        self._announce(sale)
        return sale

    @contextlib.asynccontextmanager
    async def exclusive(self, what: str) -> AsyncIterator[None]:
        """Hold the mechanism for a technician's job (a test vend): no sale starts meanwhile."""
        if self._run is not None or self._opening or self._held_for:
            raise SaleBusy(f"the kiosk is busy ({self._held_for or 'a sale is running'})")
        self._held_for = what
        try:
            yield
        finally:
            self._held_for = ""

    async def cancel(self, sale_id: str) -> Sale:
        """The customer cancels: allowed while waiting for payment; idempotent once ended."""
        run = self._run
        if run is None or run.sale.id != sale_id:
            sale = await self.ledger.scribe(self.ledger.get, sale_id)
            if SaleState(sale.state) not in TERMINAL:
                raise TooLate(f"sale {sale_id} is being finished; it cannot be cancelled now")
            return sale
        if SaleState(run.sale.state) not in (S.CREATED, S.AUTHORIZING):
            raise TooLate("the product is already on its way; the sale cannot be cancelled")
        run.cancel_requested.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.settle_timeout):
                await run.payment_settled.wait()
        return await self.ledger.scribe(self.ledger.get, sale_id)

    async def wait(self, sale_id: str) -> Sale:
        """Wait until the sale has ended (tests, the command line) and return it."""
        run = self._run
        if run is not None and run.sale.id == sale_id and run.task is not None:
            await asyncio.shield(run.task)
        return await self.ledger.scribe(self.ledger.get, sale_id)

    async def close(self) -> None:
        """Shut down: a sale waiting for payment is cancelled, a vend is let finish."""
        run = self._run
        if run is None or run.task is None:
            return
        run.cancel_requested.set()
        # Room for the vend and for settling its payment afterwards, so a capture is not cut off.
        patience = self.settings.dispense_timeout + 2 * self.settings.settle_timeout + 1
        try:
            async with asyncio.timeout(patience):
                await asyncio.shield(run.task)
        except TimeoutError:
            # Recovery will settle whatever state was last recorded.
            run.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run.task

    # --- the drive ---------------------------------------------------------------------------

    async def _drive(self, run: _Run) -> None:
        try:
            paid = await self._take_payment(run)
            run.payment_settled.set()
            if paid:
                await self._vend(run)
        except NotRecorded as exc:
            # The disk refused a write: no further side effect may follow.
            log.critical("sale %s stopped: %s", run.sale.id, exc)
            await self._settle_broken(run)
        except Exception:
            log.exception("sale %s failed unexpectedly in %s", run.sale.id, run.sale.state)
            await self._settle_broken(run)
        finally:
            run.payment_settled.set()
            self._run = None
            # Stock or a slot's fault may have changed: screens refetch the catalog.
            self.bus.publish("catalog", {"slot": run.sale.slot_code})
            for callback in self.on_finished:
                callback()

    async def _settle_broken(self, run: _Run) -> None:
        """End a sale whose drive broke, as recovery would; if even that fails, stop selling."""
        try:
            if run.drop_recorded is not None:
                with contextlib.suppress(Exception):  # it failed: that is why we are here
                    await run.drop_recorded
            sale = await self.ledger.scribe(self.ledger.get, run.sale.id)
            if SaleState(sale.state) not in TERMINAL:
                done = await recovery.settle(self.ledger, self.hardware.card, sale,
                                             self.settings.settle_timeout, actor="kiosk",
                                             cause="a failure")
                run.sale = await self.ledger.scribe(self.ledger.get, sale.id)
                self._announce(run.sale)
                log.warning("sale %s settled after a failure: %s", sale.id, done.ended)
        except Exception as exc:
            await self._release_reader()
            self.service.unsettled = (f"sale {run.sale.id} could not be settled ({exc}); "
                                      "it is settled once the database takes writes again")

    async def _take_payment(self, run: _Run) -> bool:
        """Authorize the sale's payment; False when the sale ended without one. The sale is
        authorizing already: the ledger opened it so."""
        if run.sale.method == PaymentMethod.CARD:
            return await self._take_card(run)
        return await self._take_account(run)

    async def _take_card(self, run: _Run) -> bool:
        card = self.hardware.card
        if card is None:
            await self._move(run, S.CANCELLED, reason="the card reader is unavailable")
            return False
        item = await self.ledger.scribe(self.ledger.item_number, run.sale.slot_code)
        timeout = self.settings.payment_timeout
        outcome, value = await self._race(
            run, lambda: card.authorize(run.sale.price_cents, item, timeout),
            timeout + self.settings.settle_timeout,
        )
        if outcome == "error":
            await self._move(run, S.CANCELLED, reason=f"card reader problem: {value}")
            return False
        if value is None:
            await self._move(run, S.CANCELLED, reason=outcome)
            return False
        auth = value
        if auth.outcome is AuthorizationOutcome.APPROVED:
            reference = auth.reference

            def keep_reference(_write: Write, sale: Sale) -> None:
                sale.reader_reference = reference

            await self._move(run, S.AUTHORIZED, {"reference": reference}, effect=keep_reference,
                             then=self._onward(run))
            if run.cancel_requested.is_set():  # approved in the same instant as the cancel
                await self._give_back(run, "cancelled by the customer", S.VOIDED)
                return False
            return True
        reasons = {
            AuthorizationOutcome.DECLINED: (S.DECLINED, auth.reason or "card declined"),
            AuthorizationOutcome.CANCELLED: (S.CANCELLED, "the reader ended without a payment"),
            AuthorizationOutcome.TIMED_OUT: (S.CANCELLED, "no card was presented in time"),
        }
        state, reason = reasons[auth.outcome]
        await self._move(run, state, reason=reason)
        return False

    async def _take_account(self, run: _Run) -> bool:
        reader = self.hardware.fingerprint
        if reader is None:
            await self._move(run, S.CANCELLED, reason="the fingerprint reader is unavailable")
            return False
        timeout = self.settings.payment_timeout
        outcome, value = await self._race(
            run, lambda: reader.identify(timeout), timeout + self.settings.settle_timeout
        )
        if outcome == "error":
            reason = ("no finger was placed in time" if isinstance(value, DeviceTimeout)
                      else f"fingerprint reader problem: {value}")
            await self._move(run, S.CANCELLED, reason=reason)
            return False
        if outcome != "done":
            await self._move(run, S.CANCELLED, reason=outcome)
            return False
        match: FingerMatch | None = value
        member = (await self.ledger.scribe(self.ledger.member_by_page, match.page)
                  if match else None)
        if member is None or not member.active or member.id is None:
            await self._move(run, S.DECLINED, {"page": match.page if match else None},
                             reason="fingerprint not recognised")
            return False
        member_id = member.id

        def debit_if_covered(write: Write, sale: Sale) -> None:
            balance = write.balance(member_id)
            if balance < sale.price_cents:
                raise InsufficientBalance(balance)
            debit(member_id)(write, sale)

        try:
            await self._move(run, S.AUTHORIZED, {"member": member_id}, effect=debit_if_covered,
                             then=self._onward(run))
        except InsufficientBalance as exc:
            detail = {"member": member_id, "balance_cents": exc.balance_cents}
            await self._move(run, S.DECLINED, detail, reason="insufficient balance")
            return False
        if run.cancel_requested.is_set():  # the finger matched in the same instant as the cancel
            await self._give_back(run, "cancelled by the customer", S.VOIDED)
            return False
        return True

    def _onward(self, run: _Run) -> SaleState | None:
        """Where a paid sale goes in the commit that records its payment: on to dispensing
        (the next step is the motor), unless the customer has just cancelled."""
        return None if run.cancel_requested.is_set() else S.DISPENSING

    async def _vend(self, run: _Run) -> None:
        if run.sale.state != S.DISPENSING:  # usually recorded with the payment (_onward)
            await self._move(run, S.DISPENSING)
        result, failure, unknown = await self._dispense(run.sale.slot_code)
        if run.drop_recorded is not None:
            # The beam's record goes first: what follows depends on whether it was made.
            await run.drop_recorded
        # The beam saw the product fall (the sale is durably dispensed already): whatever the
        # mechanism said afterwards (a late jam, a timeout), the customer has it and pays.
        if run.sale.state == S.DISPENSED and not (result is not None and result.delivered):
            failure = unknown = ""
            result = DispenseResult(run.sale.slot_code, DispenseOutcome.DELIVERED,
                                    detail={"late": "drop seen before the vend ended"})
        if unknown:
            await self._give_back(
                run, f"vend outcome unknown ({unknown}); payment returned, check the slot",
                S.NEEDS_REVIEW, flag_slot("vend outcome unknown: check stock"),
            )
            return
        detail = _dispense_detail(result) if result else {}
        if result is not None and result.delivered:
            if run.sale.state != S.DISPENSED:  # usually recorded as the beam fired
                await self._move(run, S.DISPENSED, detail, effect=product_left_slot)
            problem = await settlement.capture(self.hardware.card, run.sale,
                                               self.settings.settle_timeout)
            if problem:
                await self._move(run, S.NEEDS_REVIEW, reason=f"product delivered; {problem}")
            else:
                await self._move(run, S.COMPLETED, detail)
            return
        fault = SLOT_FAULTS.get(result.outcome) if result else None
        await self._move(run, S.DISPENSE_FAILED, detail, reason=failure,
                         effect=flag_slot(fault) if fault else None)
        await self._give_back(run, f"not delivered ({failure})", S.VOIDED)

    async def _dispense(self, slot: str) -> tuple[DispenseResult | None, str, str]:
        """Vend from ``slot``: the result, why nothing was delivered, why the outcome is unknown."""
        vending = self.hardware.vending
        if vending is None:
            return None, "the vending mechanism is unavailable", ""
        try:
            async with asyncio.timeout(self.settings.dispense_timeout):
                result = await vending.dispense(slot)
        except (DeviceUnavailable, DeviceRejected) as exc:
            return None, f"nothing was dispensed: {exc.message}", ""  # no motor moved
        except TimeoutError:
            return None, "", f"the vend took longer than {self.settings.dispense_timeout:g} s"
        except DeviceError as exc:
            return None, "", f"vending mechanism problem: {exc.message}"
        except Exception as exc:
            log.exception("dispense from slot %s raised", slot)
            return None, "", f"vending mechanism failed: {exc}"
        return result, "" if result.delivered else str(result.outcome), ""

    async def _give_back(
        self, run: _Run, why: str, done: SaleState, effect: Effect | None = None
    ) -> None:
        """Void the payment: ``done`` when confirmed, needs_review when the reader did not."""
        problem = await settlement.void(self.hardware.card, run.sale, self.settings.settle_timeout)
        if problem:
            await self._move(run, S.NEEDS_REVIEW, reason=f"{why}; {problem}", effect=effect)
        else:
            await self._move(run, done, reason=why, effect=both(effect, credit_back))

    def _device_event(self, event: DeviceEvent) -> None:
        """The drop beam fired: the sale is durably ``dispensed`` now, not when the call returns.

        A crash between the drop and the end of the turn then still charges for (and counts)
        the product the customer has. Runs on the loop's thread and hands the write to the
        scribe at once; the vend awaits it before it records anything else.
        """
        run = self._run
        if (run is None or event.device is not DeviceKind.VENDING
                or event.name != "product_dropped"
                or event.detail.get("slot") != run.sale.slot_code
                or run.sale.state != S.DISPENSING or run.drop_recorded is not None):
            return
        run.drop_recorded = asyncio.create_task(
            self._move(run, S.DISPENSED, {"seen": "drop beam"}, effect=product_left_slot),
            name=f"sale {run.sale.id} dispensed")

    # --- plumbing ----------------------------------------------------------------------------

    async def _race(
        self, run: _Run, start: Callable[[], Awaitable[T]], deadline: float
    ) -> tuple[str, Any]:
        """Wait for a device call, the customer's cancel, or the deadline, whichever is first.

        Returns ``("done", result)``, ``("error", DeviceError)``, or a reason and None when
        the call was abandoned (the call's task is cancelled, which the driver turns into a
        cancel at the device).
        """

        if run.cancel_requested.is_set():  # cancelled before the device was even asked
            return "cancelled by the customer", None

        async def call() -> T:
            return await start()

        task = asyncio.ensure_future(call())
        cancel = asyncio.ensure_future(run.cancel_requested.wait())
        done, _ = await asyncio.wait({task, cancel}, timeout=deadline,
                                     return_when=asyncio.FIRST_COMPLETED)
        cancel.cancel()
        if task not in done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, DeviceError):
                await task
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise asyncio.CancelledError  # the engine itself is being stopped
        if task.done() and not task.cancelled():
            error = task.exception()
            if error is None:
                return "done", task.result()
            if isinstance(error, DeviceError):
                return "error", error
            raise error
        if cancel in done:
            return "cancelled by the customer", None
        return "timed out waiting for payment", None

    async def _move(
        self,
        run: _Run,
        target: SaleState,
        detail: dict[str, Any] | None = None,
        *,
        reason: str | None = None,
        effect: Effect | None = None,
        then: SaleState | None = None,
    ) -> None:
        sale, moved = await self.ledger.scribe(self.ledger.move, run.sale.id, target, detail,
                                               reason=reason, effect=effect, then=then)
        run.sale = sale
        if moved:
            self._announce(sale)

    def _announce(self, sale: Sale) -> None:
        self.bus.publish("sale", sale_view(sale))

    async def _release_reader(self) -> None:
        card = self.hardware.card
        if card is not None:
            with contextlib.suppress(DeviceError, TimeoutError):
                async with asyncio.timeout(self.settings.settle_timeout):
                    await card.cancel()


def _dispense_detail(result: DispenseResult) -> dict[str, Any]:
    return {"outcome": str(result.outcome), "nudges": result.nudges,
            "motor_seconds": round(result.motor_seconds, 3)}


__all__ = ["OutOfService", "PaymentUnavailable", "SaleBusy", "SaleNotFound", "Sales", "TooLate"]

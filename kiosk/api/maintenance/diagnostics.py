"""Diagnostics: test vends, the readers, the event loop's lag, a live tail of device events.

A test vend turns one slot one revolution with no payment. It holds the mechanism like a sale
(refused while one runs), is written to the audit log as ``test_vend`` (the DEX report counts
it), and a product it drops leaves the slot's stock as a sold one would.

Re-initialising the card reader disables it and enables it again (``set_enabled``). The
Qibixx driver cannot be closed and reopened (a closed driver stays closed), and a disable and
enable is what the interface itself answers with ``d,STATUS,IDLE``: it ends any half-open
request and shows the reader answers. A kiosk out of service leaves the reader disabled.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select
from starlette.concurrency import run_in_threadpool

from drivers.base import (
    DeviceError,
    DeviceKind,
    DeviceRejected,
    DeviceUnavailable,
    DispenseResult,
    HealthState,
)
from kiosk import technicians
from kiosk.api.deps import MachineDep
from kiosk.api.errors import ApiError
from kiosk.api.events import KEEPALIVE_SECONDS, frame
from kiosk.api.maintenance.deps import SESSION_COOKIE, TechnicianDep, technician_network
from kiosk.api.schemas import ERRORS
from kiosk.enrolment import enrolments_of
from kiosk.loop_watch import LoopWatch
from kiosk.machine import Machine
from kiosk.models import Member, Slot

router = APIRouter(prefix="/api/maintenance/diagnostics", tags=["maintenance: diagnostics"],
                   dependencies=[Depends(technician_network)], responses=ERRORS)

#: The bus topics the live tail passes on: everything the maintenance page follows, so a
#: technician on a technician network (who may not use the customer stream) sees it live.
TAIL_TOPICS = frozenset({"device", "enrolment", "service", "sale", "catalog"})


class TestVendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slot: str = Field(min_length=1, max_length=8, pattern=r"^[A-Za-z0-9]+$", examples=["A1"])


class TestVendPublic(BaseModel):
    slot: str
    #: delivered, not_dropped, jammed, motor_missing, beam_blocked
    outcome: str
    delivered: bool
    nudges: int
    motor_seconds: float
    #: Wall time of the whole test vend, as the kiosk measured it.
    seconds: float
    #: The mechanism's own timings (left_home_s, returned_home_s, dropped_s...).
    detail: dict[str, Any]
    stock_before: int | None
    stock_after: int | None


class DevicePublic(BaseModel):
    state: str
    reason: str
    since: str
    driver: str
    simulated: bool
    detail: dict[str, Any]


class FingerprintDiagnostics(BaseModel):
    device: DevicePublic
    capacity: int | None
    security_level: int | None
    #: Templates the module holds (TemplateNum), or None while it cannot be asked.
    templates: int | None
    used_pages: list[int] | None
    #: Members with a fingerprint page in the database.
    enrolled_members: int
    #: Pages holding a template no member owns (an enrolment that could not clean up).
    orphan_pages: list[int]
    #: Members' pages with no template on the module (a replaced or erased module).
    missing_pages: list[int]
    #: Why the module could not be asked, if it could not.
    error: str
    enrolment: dict[str, Any] | None


class CardDiagnostics(BaseModel):
    device: DevicePublic
    #: Whether the kiosk wants the reader to take cards now (it is in service).
    enabled: bool


class LoopLagPublic(BaseModel):
    """The event loop's lag over the last minutes, as ``/readyz`` reports it."""

    lag_p99_ms: float
    lag_max_ms: float
    window_s: int
    #: Times in the window the loop was held up longer than the threshold.
    blocked_episodes: int
    threshold_ms: float


class EventLoopDiagnostics(BaseModel):
    event_loop: LoopLagPublic


@router.post("/test-vend", response_model=TestVendPublic,
             responses={503: {"description": "The mechanism is offline or failed"}})
async def test_vend(body: TestVendRequest, machine: MachineDep,
                    technician: TechnicianDep) -> TestVendPublic:
    """Turn one slot one revolution, no payment; 409 ``busy`` while a sale runs."""
    slot = body.slot.upper()
    vending = machine.hardware.vending
    if vending is None or vending.health.state is HealthState.OFFLINE:
        reason = machine.hardware.health(DeviceKind.VENDING).reason
        raise ApiError(503, "mechanism_unavailable", f"the vending mechanism is offline ({reason})")
    if slot not in vending.slots():
        raise ApiError(404, "unknown_slot", f"the vending mechanism has no slot {slot}")
    async with machine.sales.exclusive(f"test vend {slot}"):
        started = time.monotonic()
        try:
            async with asyncio.timeout(machine.settings.dispense_timeout):
                result = await vending.test_slot(slot)
        except (DeviceUnavailable, DeviceRejected) as exc:
            raise ApiError(503, "mechanism_unavailable",
                           f"nothing was turned: {exc.message}") from None
        except (DeviceError, TimeoutError) as exc:
            why = (exc.message if isinstance(exc, DeviceError)
                   else f"no result within {machine.settings.dispense_timeout:g} s")
            await run_in_threadpool(machine.ledger.audit, technician.name, "test_vend", slot,
                                    before=None, after={"outcome": "unknown", "reason": why})
            raise ApiError(503, "mechanism_error",
                           f"test vend of {slot}: {why}; check the slot") from None
        seconds = round(time.monotonic() - started, 3)
    before, after, price = await run_in_threadpool(_take_from_stock, machine, slot, result)
    await run_in_threadpool(
        machine.ledger.audit, technician.name, "test_vend", slot, before={"stock": before},
        after={"stock": after, "outcome": result.outcome.value, "nudges": result.nudges,
               "motor_seconds": result.motor_seconds, "price_cents": price})
    return TestVendPublic(slot=slot, outcome=result.outcome.value, delivered=result.delivered,
                          nudges=result.nudges, motor_seconds=result.motor_seconds,
                          seconds=seconds, detail=dict(result.detail), stock_before=before,
                          stock_after=after)


@router.get("/fingerprint", response_model=FingerprintDiagnostics)
async def fingerprint(machine: MachineDep, technician: TechnicianDep) -> FingerprintDiagnostics:
    """What the reader says about itself and its library, against the members' pages."""
    device = machine.hardware.describe()[DeviceKind.FINGERPRINT.value]
    detail = device["detail"]
    reader = machine.hardware.fingerprint
    templates: int | None = None
    used: frozenset[int] | None = None
    error = ""
    if reader is not None and reader.health.ok:
        try:
            async with asyncio.timeout(machine.settings.settle_timeout):
                templates = await reader.count()
                used = await reader.used_pages()
        except (DeviceError, TimeoutError) as exc:
            error = exc.message if isinstance(exc, DeviceError) else "no answer in time"
    else:
        error = f"the reader is {device['state']}: {device['reason']}"
    pages = await run_in_threadpool(_enrolled_pages, machine)
    current = enrolments_of(machine).current
    return FingerprintDiagnostics(
        device=DevicePublic(**device),
        capacity=_int(detail.get("capacity")),
        security_level=_int(detail.get("security_level")),
        templates=templates,
        used_pages=sorted(used) if used is not None else None,
        enrolled_members=len(pages),
        orphan_pages=sorted(used - pages) if used is not None else [],
        missing_pages=sorted(pages - used) if used is not None else [],
        error=error,
        enrolment=current.view() if current else None,
    )


@router.get("/card", response_model=CardDiagnostics)
async def card(machine: MachineDep, technician: TechnicianDep) -> CardDiagnostics:
    device = machine.hardware.describe()[DeviceKind.CARD.value]
    return CardDiagnostics(device=DevicePublic(**device),
                           enabled=machine.service.status().in_service)


@router.get("/event-loop", response_model=EventLoopDiagnostics)
async def event_loop(request: Request, technician: TechnicianDep) -> EventLoopDiagnostics:
    """How late the event loop ran lately: while it is held up, no motor can be stopped."""
    loop_watch: LoopWatch = request.app.state.loop_watch
    return EventLoopDiagnostics(event_loop=LoopLagPublic(**loop_watch.figures().as_dict()))


@router.post("/card/reinitialise", response_model=CardDiagnostics,
             responses={503: {"description": "The card reader is offline or did not answer"}})
async def reinitialise_card(machine: MachineDep,
                            technician: TechnicianDep) -> CardDiagnostics:
    """Disable the card reader and enable it again (if in service); 409 while a sale runs."""
    reader = machine.hardware.card
    health = machine.hardware.health(DeviceKind.CARD)
    if reader is None or health.state is HealthState.OFFLINE:
        raise ApiError(503, "reader_unavailable",
                       f"the card reader is offline ({health.reason}); "
                       "it reconnects and re-initialises by itself when it is back")
    before = {"state": health.state.value, "reason": health.reason}
    async with machine.sales.exclusive("card reader re-initialisation"):
        wanted = machine.service.status().in_service
        try:
            for enabled in (False, True) if wanted else (False,):
                async with asyncio.timeout(machine.settings.settle_timeout):
                    await reader.set_enabled(enabled)
        except (DeviceError, TimeoutError) as exc:
            why = exc.message if isinstance(exc, DeviceError) else "no answer in time"
            await run_in_threadpool(machine.ledger.audit, technician.name,
                                    "card_reinitialise", "card", before, after={"error": why})
            raise ApiError(503, "reader_error", f"re-initialising the card reader: {why}") from None
    machine.service_changed()
    device = machine.hardware.describe()[DeviceKind.CARD.value]
    await run_in_threadpool(machine.ledger.audit, technician.name, "card_reinitialise", "card",
                            before, after={"state": device["state"], "reason": device["reason"],
                                           "enabled": wanted})
    return CardDiagnostics(device=DevicePublic(**device), enabled=wanted)


@router.get("/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def device_events(request: Request, machine: MachineDep,
                        technician: TechnicianDep) -> StreamingResponse:
    """Server-sent events: every ``device`` and ``enrolment`` event, after a ``devices`` frame.

    The stream ends when the technician's session does (logout, expiry).
    """
    token = request.cookies.get(SESSION_COOKIE, "")
    return StreamingResponse(
        _tail(request, machine, token), media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _tail(request: Request, machine: Machine, token: str) -> AsyncIterator[str]:
    async with machine.bus.subscribe() as queue:
        yield frame("service", machine.service.status().as_dict())
        yield frame("devices", machine.hardware.describe())
        current = enrolments_of(machine).current
        if current is not None:
            yield frame("enrolment", current.event())
        while not await request.is_disconnected():
            try:
                event = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                if technicians.session_for(machine.db, token) is None:
                    yield frame("session_ended", {"reason": "log in again"})
                    return
                yield ": keepalive\n\n"
                continue
            if event.topic in TAIL_TOPICS:
                yield frame(event.topic, event.data, event.id)


def _take_from_stock(machine: Machine, slot: str,
                     result: DispenseResult) -> tuple[int | None, int | None, int]:
    """A product the test vend dropped left the slot; returns stock before, after, and price."""
    with machine.db.session() as session:
        row = session.exec(select(Slot).where(Slot.code == slot)).first()
        if row is None:
            return None, None, 0
        before = row.stock
        if result.delivered and row.stock > 0:
            row.stock -= 1
            session.add(row)
            machine.ledger.commit(session)
        return before, row.stock, row.price_cents


def _enrolled_pages(machine: Machine) -> set[int]:
    with machine.db.session() as session:
        return {page for page in session.exec(select(Member.fingerprint_page).where(
            col(Member.fingerprint_page).is_not(None))).all() if page is not None}


def _int(value: object) -> int | None:
    return value if isinstance(value, int) else None

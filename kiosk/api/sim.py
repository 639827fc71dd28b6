"""``/api/sim``: the developer's hands on the simulators (present a card, place a finger, jam a
slot, unplug a device). Mounted only when a simulator is configured; production refuses sim://.

Simulators run on their own threads and their methods wait for their effect on the wire, so
every call goes through a worker thread: the event loop must stay free to drive the driver that
is on the other end of that wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, cast

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from drivers.base import DeviceKind
from kiosk.api import access
from kiosk.api.deps import MachineDep
from kiosk.api.errors import ApiError
from kiosk.api.schemas import ERRORS
from kiosk.machine import Machine

if TYPE_CHECKING:  # the kiosk runs simulators only through the registry; these are for types
    from simulators.card import CardSimulator
    from simulators.fingerprint import FingerprintSimulator
    from simulators.vending import VendingSimulator

router = APIRouter(prefix="/api/sim", tags=["simulators"],
                   dependencies=[Depends(access.customer)], responses=ERRORS)


class CardPresented(BaseModel):
    outcome: Literal["approved", "declined", "insufficient_funds", "cancelled"] = "approved"


class CardAuto(BaseModel):
    #: Answer every vend request by itself with this outcome; "off" waits for the panel.
    outcome: Literal["approved", "declined", "insufficient_funds", "cancelled", "off"]
    delay: float = Field(1.5, ge=0, le=60)


class FingerPlaced(BaseModel):
    finger: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")


class SlotFault(BaseModel):
    slot: str = Field(min_length=1, max_length=8)
    fault: Literal["jammed", "motor_missing", "hang", "empty", "none"]


class BeamFaultSet(BaseModel):
    fault: Literal["stuck_blocked", "stuck_clear", "none"]


class Restock(BaseModel):
    slot: str = Field(min_length=1, max_length=8)
    count: int = Field(ge=0, le=100)


def simulator(machine: Machine, kind: DeviceKind) -> Any:
    sim = machine.hardware.simulators.get(kind)
    if sim is None:
        raise ApiError(404, "no_simulator", f"the {kind} device is not simulated")
    return sim


async def on_sim(machine: Machine, kind: DeviceKind, action: Callable[[Any], object]) -> Any:
    sim = simulator(machine, kind)
    try:
        return await asyncio.to_thread(action, sim)
    except (ValueError, KeyError) as exc:
        raise ApiError(422, "invalid_request", str(exc)) from None


@router.get("")
async def state(machine: MachineDep) -> dict[str, Any]:
    """What each simulator holds right now."""
    sims = machine.hardware.simulators
    result: dict[str, Any] = {}
    if DeviceKind.CARD in sims:
        card = cast("CardSimulator", sims[DeviceKind.CARD])
        result["card"] = await asyncio.to_thread(lambda: {
            "plugged": card.plugged,
            "reader_state": str(card.reader_state),
            "settlement": card.settlement().to_dict(),
        })
    if DeviceKind.FINGERPRINT in sims:
        finger = cast("FingerprintSimulator", sims[DeviceKind.FINGERPRINT])
        result["fingerprint"] = await asyncio.to_thread(lambda: {
            "plugged": finger.plugged,
            "finger": finger.finger,
            "library": {str(page): name for page, name in finger.library.items()},
        })
    if DeviceKind.VENDING in sims:
        vending = cast("VendingSimulator", sims[DeviceKind.VENDING])
        result["vending"] = await asyncio.to_thread(vending.snapshot)
    return result


@router.post("/card/present")
async def present_card(body: CardPresented, machine: MachineDep) -> dict[str, bool]:
    answered = await on_sim(machine, DeviceKind.CARD, lambda s: s.present_card(body.outcome))
    return {"answered_open_request": bool(answered)}


@router.post("/card/cancel")
async def cancel_at_reader(machine: MachineDep) -> dict[str, bool]:
    answered = await on_sim(machine, DeviceKind.CARD, lambda s: s.customer_cancels())
    return {"answered_open_request": bool(answered)}


@router.post("/card/auto")
async def card_auto(body: CardAuto, machine: MachineDep) -> dict[str, str]:
    outcome = None if body.outcome == "off" else body.outcome
    await on_sim(machine, DeviceKind.CARD, lambda s: s.set_auto(outcome, body.delay))
    return {"auto": body.outcome}


@router.get("/card/settlement")
async def settlement(machine: MachineDep) -> dict[str, Any]:
    """The settlement report a payment provider would send: what was captured or reverted."""
    report: dict[str, Any] = await on_sim(machine, DeviceKind.CARD,
                                          lambda s: s.settlement().to_dict())
    return report


@router.post("/fingerprint/place")
async def place_finger(body: FingerPlaced, machine: MachineDep) -> dict[str, str]:
    await on_sim(machine, DeviceKind.FINGERPRINT, lambda s: s.place_finger(body.finger))
    return {"finger": body.finger}


@router.post("/fingerprint/lift")
async def lift_finger(machine: MachineDep) -> dict[str, str]:
    await on_sim(machine, DeviceKind.FINGERPRINT, lambda s: s.lift_finger())
    return {"finger": ""}


@router.post("/vending/fault")
async def slot_fault(body: SlotFault, machine: MachineDep) -> dict[str, str]:
    if body.fault == "none":
        await on_sim(machine, DeviceKind.VENDING, lambda s: s.clear_fault(body.slot.upper()))
    else:
        await on_sim(machine, DeviceKind.VENDING,
                     lambda s: s.set_fault(body.slot.upper(), body.fault))
    return {"slot": body.slot.upper(), "fault": body.fault}


@router.post("/vending/beam")
async def beam_fault(body: BeamFaultSet, machine: MachineDep) -> dict[str, str]:
    fault = None if body.fault == "none" else body.fault
    await on_sim(machine, DeviceKind.VENDING, lambda s: s.set_beam_fault(fault))
    return {"beam": body.fault}


@router.post("/vending/restock")
async def restock(body: Restock, machine: MachineDep) -> dict[str, Any]:
    await on_sim(machine, DeviceKind.VENDING, lambda s: s.restock(body.slot.upper(), body.count))
    return {"slot": body.slot.upper(), "count": body.count}


@router.post("/{device}/unplug")
async def unplug(device: Literal["card", "fingerprint"], machine: MachineDep) -> dict[str, str]:
    await on_sim(machine, DeviceKind(device), lambda s: s.unplug())
    return {"device": device, "plugged": "no"}


@router.post("/{device}/replug")
async def replug(device: Literal["card", "fingerprint"], machine: MachineDep) -> dict[str, str]:
    await on_sim(machine, DeviceKind(device), lambda s: s.replug())
    return {"device": device, "plugged": "yes"}

"""Log in, see who is logged in, log out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from kiosk import technicians
from kiosk.api import login_limit
from kiosk.api.deps import MachineDep
from kiosk.api.errors import ApiError
from kiosk.api.maintenance.deps import SESSION_COOKIE, TechnicianDep, technician_network
from kiosk.api.schemas import ERRORS

router = APIRouter(prefix="/api/maintenance", tags=["maintenance: login"],
                   dependencies=[Depends(technician_network)], responses=ERRORS)


class Credentials(BaseModel):
    name: str = Field(min_length=1, max_length=40)
    secret: str = Field(min_length=1, max_length=200)


class Me(BaseModel):
    name: str
    #: Send back in the X-CSRF-Token header of every request that changes something.
    csrf_token: str
    expires_at: str


async def logins(request: Request) -> technicians.Logins:
    """The app's login attempts under way and remembered, made at its first login."""
    state = request.app.state
    found: technicians.Logins | None = getattr(state, "logins", None)
    if found is None:
        found = state.logins = technicians.Logins()
    return found


LoginsDep = Annotated[technicians.Logins, Depends(logins)]


@router.post("/login", response_model=Me, dependencies=[Depends(login_limit.admit)],
             responses={401: {}, 423: {}, 429: {"description": "Too many login attempts"}})
async def login(body: Credentials, request: Request, response: Response,
                machine: MachineDep, attempts: LoginsDep) -> Me:
    try:
        token, session = await attempts.login(machine.db, body.name, body.secret,
                                              machine.settings.session_hours)
    except technicians.LoginBusy as exc:
        raise ApiError(503, "busy", str(exc), headers={"Retry-After": "1"}) from None
    except technicians.LoginRefused as exc:
        await attempts.in_thread(machine.ledger.audit, body.name, "login_refused",
                                 after={"reason": str(exc)})
        raise ApiError(423 if exc.locked else 401,
                       "locked" if exc.locked else "login_failed", str(exc)) from None
    response.set_cookie(
        SESSION_COOKIE, token, httponly=True, samesite="strict", path="/",
        secure=request.url.scheme == "https",
        max_age=int(machine.settings.session_hours * 3600),
    )
    await attempts.in_thread(machine.ledger.audit, session.name, "login")
    return Me(name=session.name, csrf_token=session.csrf_token,
              expires_at=session.expires_at.isoformat())


@router.get("/me", response_model=Me)
async def me(technician: TechnicianDep) -> Me:
    return Me(name=technician.name, csrf_token=technician.csrf_token,
              expires_at=technician.expires_at.isoformat())


# A plain function: FastAPI runs it in a worker thread, and it writes to the database.
@router.post("/logout", status_code=204)
def logout(technician: TechnicianDep, request: Request, response: Response,
           machine: MachineDep) -> None:
    token = request.cookies.get(SESSION_COOKIE, "")
    technicians.logout(machine.db, token)
    response.delete_cookie(SESSION_COOKIE, path="/")
    machine.ledger.audit(technician.name, "logout")

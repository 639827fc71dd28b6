"""Who may use the maintenance API: a logged-in technician, from loopback or a technician
network, and for every request that changes something, with the session's CSRF token."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from kiosk import technicians
from kiosk.api import access
from kiosk.api.errors import ApiError
from kiosk.machine import Machine
from kiosk.technicians import LoggedIn

SESSION_COOKIE = "kiosk_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def technician_network(request: Request) -> None:
    """Dependency of every maintenance route, the login included."""
    machine: Machine = request.app.state.machine
    host = request.client.host if request.client else None
    if not access.address_allowed(host, machine.settings.technician_networks):
        raise ApiError(403, "forbidden", f"{host} may not use the maintenance API")
    if not access.origin_allowed(request, machine.settings):
        raise ApiError(403, "cross_origin",
                       f"requests from {request.headers.get('origin')} are not allowed")


def technician(request: Request) -> LoggedIn:
    machine: Machine = request.app.state.machine
    token = request.cookies.get(SESSION_COOKIE)
    found = technicians.session_for(machine.db, token) if token else None
    if found is None:
        raise ApiError(401, "login_required", "log in on the maintenance page first")
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not sent or sent != found.csrf_token:
            raise ApiError(403, "csrf", f"missing or wrong {CSRF_HEADER} header")
    return found


TechnicianDep = Annotated[LoggedIn, Depends(technician)]

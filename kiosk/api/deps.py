"""Dependencies the routes declare, once each."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from kiosk.machine import Machine


async def get_machine(request: Request) -> Machine:
    # Asynchronous so that FastAPI does not hand it to a worker thread on every request.
    machine: Machine = request.app.state.machine
    return machine


MachineDep = Annotated[Machine, Depends(get_machine)]

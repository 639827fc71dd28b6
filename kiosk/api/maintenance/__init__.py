"""The maintenance API under ``/api/maintenance``: technicians only, from technician networks.

One module a page of the maintenance UI; each has its router, listed here for the app.
"""

from fastapi import APIRouter

from kiosk.api.maintenance import auth, dashboard

MAINTENANCE_ROUTERS: tuple[APIRouter, ...] = (auth.router, dashboard.router)

"""The maintenance API under ``/api/maintenance``: technicians only, from technician networks.

One module a page of the maintenance UI, each with its ``router``; every module here that has
one is included by the app, so adding a page is adding a module.
"""

from __future__ import annotations

import importlib
import pkgutil

from fastapi import APIRouter


def _routers() -> tuple[APIRouter, ...]:
    found = []
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        router = getattr(importlib.import_module(f"{__name__}.{module.name}"), "router", None)
        if isinstance(router, APIRouter):
            found.append(router)
    return tuple(found)


MAINTENANCE_ROUTERS = _routers()

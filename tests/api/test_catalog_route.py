"""The catalog's lean route: it skips FastAPI's per-request work, never a declared part."""

from __future__ import annotations

import pytest
from fastapi import APIRouter, Depends, Request, Response

from kiosk.api.catalog import RequestOnlyRoute


async def _nobody() -> None:
    return None


def test_a_request_only_route_refuses_a_dependency_it_would_skip() -> None:
    router = APIRouter(route_class=RequestOnlyRoute, dependencies=[Depends(_nobody)])
    with pytest.raises(TypeError, match="takes the request and nothing else"):

        @router.get("/x")
        async def endpoint(request: Request) -> Response:
            return Response()


def test_a_request_only_route_refuses_parameters_it_would_not_parse() -> None:
    router = APIRouter(route_class=RequestOnlyRoute)
    with pytest.raises(TypeError, match="takes the request and nothing else"):

        @router.get("/x")
        async def endpoint(request: Request, limit: int = 5) -> Response:
            return Response()

"""``GET /api/catalog``: what the touchscreen offers right now."""

from __future__ import annotations

import inspect
import sqlite3
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from sqlalchemy import select
from sqlmodel import col
from starlette.concurrency import run_in_threadpool

from kiosk.api import access
from kiosk.api.schemas import ERRORS, CatalogPublic, ProductPublic, SlotPublic, StockState
from kiosk.machine import Machine
from kiosk.models import Product, Slot
from kiosk.states import PaymentMethod


class RequestOnlyRoute(APIRoute):
    """A route whose endpoint takes the request alone and returns its :class:`Response`.

    FastAPI's own work per request in between (solving dependencies, reading the body,
    telemetry hooks, the response model's validation) is skipped; the declaration still
    describes the operation (response model, errors) in the OpenAPI document. For the
    catalog, which the touchscreen asks after every sale and answers from cached bytes, that
    work cost more than the answer. An endpoint that declares anything but the request is
    refused, so that no dependency or parameter is ever silently left out; by the same token
    its router is included without dependencies (``create_app`` does).
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        takes_request_only = (self.dependant.request_param_name is not None
                              and len(inspect.signature(endpoint).parameters) == 1)
        # The router's dependencies are in the route's dependant too.
        if not takes_request_only or self.dependant.dependencies:
            raise TypeError(f"{self.path}: a {type(self).__name__} endpoint takes the "
                            "request and nothing else (no dependencies, no parameters)")
        if not inspect.iscoroutinefunction(endpoint):
            raise TypeError(f"{self.path}: a {type(self).__name__} endpoint is async")

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler: Callable[[Request], Coroutine[Any, Any, Response]] = self.endpoint
        return handler


# No router dependencies: a RequestOnlyRoute would refuse them; the endpoint checks the
# caller itself, as access.customer does for the other customer routes.
router = APIRouter(prefix="/api/catalog", tags=["catalog"], responses=ERRORS,
                   route_class=RequestOnlyRoute)

#: Plain columns, not ORM objects: the touchscreen asks often (after every sale, on every
#: catalog event), and building, tracking and closing a dozen mapped objects per ask cost
#: more than the rest of the request together.
ROWS = (
    select(col(Slot.code), col(Slot.price_cents), col(Slot.stock), col(Slot.enabled),
           col(Slot.fault), col(Product.id), col(Product.name), col(Product.description),
           col(Product.image))
    .join(Product, col(Slot.product_id) == col(Product.id))
    .where(col(Product.retired).is_(False))
    .order_by(col(Slot.code))
)


@router.get("", response_model=CatalogPublic)
async def catalog(request: Request) -> Response:
    await access.customer(request)
    machine: Machine = request.app.state.machine
    status = machine.service.status()
    mechanism = machine.hardware.vending
    known = mechanism.slots() if mechanism is not None else None
    answers = _answers.get(machine)
    if answers is None:
        answers = _answers[machine] = Answers(machine.db.path)
    # What the answer is built from besides the database, and whether the database changed.
    key = (answers.data_version(), status.in_service, status.payment_methods, known,
           bool(machine.hardware.simulators), machine.settings.currency)
    if answers.key != key:
        # Read on a worker thread: a cold page on a Pi's SD card must not hold up the loop.
        built = await run_in_threadpool(_catalog, machine, status.in_service,
                                        status.payment_methods, known)
        answers.key, answers.body = key, built.model_dump_json().encode()
    return Response(answers.body, media_type="application/json")


class Answers:
    """The last answer, kept while nothing it was built from changed.

    The touchscreen asks after every sale and on every catalog event, and between two changes
    gets the same bytes: reading the planogram and building a dozen models cost more than the
    rest of the request. A commit to the database by anyone (a sale, a technician, another
    process) is seen through SQLite's ``PRAGMA data_version`` on a connection of this cache's
    own, which never writes: the number changes whenever another connection has committed.
    """

    def __init__(self, database: Path) -> None:
        self.database = database
        self.key: tuple[object, ...] | None = None
        self.body = b""
        self._watcher: sqlite3.Connection | None = None

    def data_version(self) -> int:
        if self._watcher is None:
            self._watcher = sqlite3.connect(self.database, check_same_thread=False)
        version: int = self._watcher.execute("PRAGMA data_version").fetchone()[0]
        return version


_answers: WeakKeyDictionary[Machine, Answers] = WeakKeyDictionary()


def _catalog(machine: Machine, in_service: bool, methods: tuple[PaymentMethod, ...],
             known: frozenset[str] | None) -> CatalogPublic:
    slots = []
    with machine.db.engine.connect() as connection:
        rows = connection.execute(ROWS).all()
    for code, price, stock, enabled, fault, product_id, name, description, image in rows:
        sellable = enabled and not fault and (known is None or code in known)
        state = (StockState.DISABLED if not sellable
                 else StockState.SOLD_OUT if stock <= 0 else StockState.AVAILABLE)
        slots.append(SlotPublic(
            code=code, price_cents=price, stock_state=state,
            product=ProductPublic(id=product_id, name=name, description=description, image=image),
        ))
    return CatalogPublic(
        currency=machine.settings.currency,
        in_service=in_service,
        payment_methods=list(methods),
        simulated=bool(machine.hardware.simulators),
        slots=slots,
    )

"""One error shape for every 4xx and 5xx: ``{"error": {"code": "...", "message": "..."}}``."""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

from kiosk.db import waited_for_lock
from kiosk.ledger import (
    DatabaseBusy,
    IllegalTransition,
    LedgerError,
    NotRecorded,
    SaleBusy,
    SaleNotFound,
    SlotUnavailable,
)
from kiosk.sales import OutOfService, PaymentUnavailable, TooLate

log = logging.getLogger(__name__)

STATUS: dict[type[LedgerError], int] = {
    SaleBusy: 409,
    SlotUnavailable: 409,
    TooLate: 409,
    IllegalTransition: 409,
    PaymentUnavailable: 409,
    SaleNotFound: 404,
    OutOfService: 503,
    NotRecorded: 503,
}


class ApiError(Exception):
    """An error a route raises on purpose, with its status, code and message."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        #: Sent with the answer (``Retry-After`` on a refusal to try again soon).
        self.headers = headers


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status,
                            headers=exc.headers)

    @app.exception_handler(LedgerError)
    async def ledger_error(_request: Request, exc: LedgerError) -> JSONResponse:
        if isinstance(exc, DatabaseBusy):
            return _busy_answer()
        status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 400)
        return JSONResponse(error_body(exc.code, str(exc)), status_code=status)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
        message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        return JSONResponse(error_body(code, message), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors()[:5]:
            where = ".".join(str(part) for part in error.get("loc", ()))
            problems.append(f"{where}: {error.get('msg', 'invalid')}")
        return JSONResponse(error_body("invalid_request", "; ".join(problems)), status_code=422)

    @app.exception_handler(PoolTimeout)
    async def swamped(_request: Request, exc: PoolTimeout) -> JSONResponse:
        # Every pooled connection is busy (a flood of requests): say so at once; the sale
        # ledger has a connection of its own and is not affected.
        log.warning("no database connection free: %s", exc)
        return _busy_answer()

    @app.exception_handler(OperationalError)
    async def database_refused(request: Request, exc: OperationalError) -> JSONResponse:
        if waited_for_lock(exc):
            # Another writer held the lock past the request's patience: the disk is fine.
            log.warning("database busy: %s", exc)
            return _busy_answer()
        # A write outside the ledger (a login, a session) on a database that refuses writes:
        # the same answer as a sale gets, and the kiosk learns of it too.
        database = request.app.state.machine.db
        database.note_write_failure(exc)
        return JSONResponse(error_body(NotRecorded.code, database.write_error), status_code=503)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the log for the technician, never to the client.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            error_body("internal_error", "the kiosk hit an internal error; see its log"),
            status_code=500,
        )


def _busy_answer() -> JSONResponse:
    return JSONResponse(error_body("busy", "the kiosk is busy; try again in a moment"),
                        status_code=503, headers={"Retry-After": "2"})

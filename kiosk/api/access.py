"""Who may call which routes: by the caller's network address, and by the page's origin.

The customer API starts vends: only the kiosk's own browser (loopback) and networks named in
``trusted_networks`` may use it. Browsers on other origins are refused outright (the UIs are
same-origin), so a page elsewhere cannot make the kiosk's own browser start a sale.
"""

from __future__ import annotations

import functools
from ipaddress import ip_address

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kiosk.api.errors import ApiError, error_body
from kiosk.config import LOOPBACK, Network, Settings


# Cached: the same few callers ask again and again, and parsing an address on every request
# cost more than the rest of the check. Bounded, so that many callers cannot grow it.
@functools.lru_cache(maxsize=256)
def address_allowed(host: str | None, networks: tuple[Network, ...]) -> bool:
    if host is None:
        return False
    try:
        address = ip_address(host)
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped is not None:  # ::ffff:192.168.1.5
        address = address.ipv4_mapped
    return any(address in network for network in (*LOOPBACK, *networks))


def host_allowed(host_header: str, settings: Settings) -> bool:
    """Whether a request's Host names this kiosk: an address, localhost, or a configured name.

    A page on a domain its owner points at 127.0.0.1 (DNS rebinding) would otherwise be
    "same-origin" with the kiosk and could start a vend from the kiosk's own browser.
    """
    return _host_name_allowed(host_header, settings.allowed_hosts)


@functools.lru_cache(maxsize=256)
def _host_name_allowed(host_header: str, allowed_hosts: tuple[str, ...]) -> bool:
    name = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
    name = name.strip("[]").lower()
    if name in ("localhost", *allowed_hosts):
        return True
    try:
        ip_address(name)
    except ValueError:
        return False
    return True


def origin_allowed(request: Request, settings: Settings) -> bool:
    origin = request.headers.get("origin")
    if origin is None or (origin == "null" and request.method in ("GET", "HEAD")):
        return True  # not a cross-origin browser request
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    return origin.rstrip("/") in (own, *settings.allowed_origins)


async def customer(request: Request) -> None:
    """Dependency of every customer route: the kiosk's browser or a trusted network only.

    Asynchronous though it never waits: FastAPI would run a plain function in a worker thread."""
    settings: Settings = request.app.state.settings
    client = request.scope.get("client")
    host = client[0] if client else None
    if not address_allowed(host, settings.trusted_networks):
        raise ApiError(403, "forbidden", f"{host} may not use the customer API of this kiosk")
    if not origin_allowed(request, settings):
        raise ApiError(403, "cross_origin",
                       f"requests from {request.headers.get('origin')} are not allowed")


#: Every page is the kiosk's own files: no inline script, no framing, no other origin.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
#: The OpenAPI page loads its own script and styles; it gets a policy of its own.
DOCS_PATHS = ("/docs", "/redoc")


def install(app: FastAPI) -> None:
    """Refuse, before any route runs, a request whose Host does not name this kiosk; set the
    security headers on every answer."""
    app.add_middleware(HostAndHeaders)


class HostAndHeaders:
    """The Host check, the maintenance page's networks and the security headers, as a plain
    ASGI middleware: Starlette's ``BaseHTTPMiddleware`` (``@app.middleware``) would pass
    every answer, and every event of the event stream, through a task group and a memory
    stream of its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Straight from the scope rather than through a Request: this runs on every request,
        # and the catalog's whole answer costs about as much as building one.
        settings: Settings = scope["app"].state.settings
        host = next((value for name, value in scope["headers"] if name == b"host"),
                    b"").decode("latin-1")
        if not host_allowed(host, settings):
            message = (f"this kiosk does not answer to the host name {host!r}; "
                       "add it to KIOSK_ALLOWED_HOSTS if it should")
            await JSONResponse(error_body("bad_host", message), status_code=400)(
                scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith("/maintenance"):
            address = scope.get("client")
            client = address[0] if address else None
            if not address_allowed(client, settings.technician_networks):
                message = f"{client} may not open the maintenance page"
                await JSONResponse(error_body("forbidden", message), status_code=403)(
                    scope, receive, send)
                return
        # FastAPI's docs page is inline script from a CDN; off-line it is moot.
        headers = DOCS_HEADERS if path.startswith(DOCS_PATHS) else ALL_HEADERS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # A header the answer sets itself stays as it is. A copy: the list may be
                # the response object's own.
                raw = list(message.get("headers", ()))
                present = {name.lower() for name, _ in raw}
                raw.extend(header for header in headers if header[0] not in present)
                message["headers"] = raw
            await send(message)

        await self.app(scope, receive, send_with_headers)


#: The security headers as raw ASGI headers: lower-case names, bytes.
ALL_HEADERS = tuple((name.lower().encode("latin-1"), value.encode("latin-1"))
                    for name, value in SECURITY_HEADERS.items())
DOCS_HEADERS = tuple((name, value) for name, value in ALL_HEADERS
                     if name != b"content-security-policy")

"""``python -m bench.bare_app PORT BODY_FILE``: the reference for the catalog's requests per
second, a bare Starlette app answering ``GET /api/catalog`` with fixed JSON bytes.

It runs on uvicorn exactly as ``kiosk serve`` runs the kiosk (same ``uvicorn.Config``
arguments, same logging set-up, so the same access log line for every request), and says
READY=1 on ``$NOTIFY_SOCKET`` once it listens, as the kiosk does.
"""

from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kiosk import systemd


def bare_app(body: bytes) -> Starlette:
    async def catalog(request: Request) -> Response:
        return Response(body, media_type="application/json")

    return Starlette(routes=[Route("/api/catalog", catalog)])


class ReadyServer(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            systemd.notify("READY=1")


def main(argv: list[str]) -> int:
    port, body = int(argv[0]), Path(argv[1]).read_bytes()
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = uvicorn.Config(bare_app(body), host="127.0.0.1", port=port, log_config=None,
                            timeout_graceful_shutdown=5)
    ReadyServer(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

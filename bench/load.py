"""``python -m bench.load URL SECONDS CONNECTIONS``: GET one URL over keep-alive connections.

A load generator cheap enough not to be the bottleneck: bare asyncio streams writing one
HTTP/1.1 request and reading its answer (headers, then Content-Length bytes), again and
again, on each of CONNECTIONS connections. Prints ``{"requests": N, "seconds": S}`` as JSON.
It runs in its own process so that it takes no time from the server it loads.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from urllib.parse import urlsplit


async def client(host: str, port: int, request: bytes, until: float) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    done = 0
    try:
        while time.perf_counter() < until:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = head.split(b" ", 2)[1]
            if status != b"200":
                raise RuntimeError(f"{request!r} answered {head.decode(errors='replace')}")
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await reader.readexactly(length)
            done += 1
    finally:
        writer.close()
    return done


async def load(url: str, seconds: float, connections: int) -> dict[str, float]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n"
               "Accept: application/json\r\n\r\n").encode()
    started = time.perf_counter()
    counts = await asyncio.gather(*(client(host, port, request, started + seconds)
                                    for _ in range(connections)))
    return {"requests": sum(counts), "seconds": time.perf_counter() - started}


def main(argv: list[str]) -> int:
    url, seconds, connections = argv[0], float(argv[1]), int(argv[2])
    print(json.dumps(asyncio.run(load(url, seconds, connections))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""``GET /api/catalog`` requests per second, against a bare Starlette app on the same uvicorn.

``kiosk serve`` (simulated devices, the demo planogram) and ``bench.bare_app`` (a Starlette app
answering the very bytes the kiosk answered) run side by side, each in its own process with
the same uvicorn settings and logging. ``bench.load`` loads one, then the other, in turns, from
a third process over keep-alive loopback connections; the figure is the median of the turns.
What separates the two is everything the kiosk does per request: its middleware (Host check,
security headers), the customer-address dependency, the database read, the service status and
the response model's validation and serialisation.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from bench.figures import Figure
from bench.served import ROOT, free_port, seeded_database, serve, spawn

ROUNDS = 5
SECONDS = 3.0
CONNECTIONS = 8


def load(url: str, seconds: float = SECONDS) -> float:
    """Requests per second that ``bench.load`` got from ``url``."""
    output = subprocess.run(
        [sys.executable, "-m", "bench.load", url, str(seconds), str(CONNECTIONS)],
        check=True, capture_output=True, cwd=ROOT, text=True,
    ).stdout
    result = json.loads(output)
    return float(result["requests"]) / float(result["seconds"])


def run() -> list[Figure]:
    ours: list[float] = []
    bare: list[float] = []
    with tempfile.TemporaryDirectory(prefix="kiosk-bench-catalog-") as scratch:
        folder = Path(scratch)
        with serve(seeded_database(folder / "kiosk.db")) as kiosk:
            catalog_url = f"{kiosk.url}/api/catalog"
            body = httpx.get(catalog_url).raise_for_status().content
            (folder / "catalog.json").write_bytes(body)
            port = free_port()
            argv = [sys.executable, "-m", "bench.bare_app", str(port),
                    str(folder / "catalog.json")]
            with spawn(argv, dict(os.environ), folder / "bare.log"):
                bare_url = f"http://127.0.0.1:{port}/api/catalog"
                if httpx.get(bare_url).content != body:
                    raise RuntimeError("the bare app does not answer the kiosk's bytes")
                for url in (catalog_url, bare_url):  # warm up: imports, caches, statements
                    load(url, 1.0)
                for number in range(ROUNDS):
                    turns = [(catalog_url, ours), (bare_url, bare)]
                    for url, into in turns if number % 2 == 0 else reversed(turns):
                        into.append(load(url))
    median, reference = statistics.median(ours), statistics.median(bare)
    return [Figure(
        name="GET /api/catalog requests per second",
        ours=f"{median:.0f} req/s",
        reference=f"{reference:.0f} req/s bare Starlette, same uvicorn",
        ratio=median / reference, target="ratio >= 0.5", met=median / reference >= 0.5,
        note=(f"{CONNECTIONS} keep-alive connections from a separate process, {ROUNDS} turns "
              f"of {SECONDS:g} s each, alternating; {len(body)} bytes of JSON "
              "(12 slots). uvicorn as installed (h11, asyncio loop), access log on in both."),
    )]

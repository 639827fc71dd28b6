"""Fingerprint identify round trip through the R30x driver, against the simulator on a line
paced like a real 57600-baud UART, compared with the pure wire time of the same bytes.

The ratio says how much the driver and the event loop add on top of what the serial line
itself costs: 1.00 would be a driver that takes no time at all.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from bench.figures import Figure
from drivers.fingerprint.r30x import R30xFingerprintReader
from simulators.fingerprint import FingerprintSimulator

BAUD = 57600
ROUNDS = 40


async def measure() -> Figure:
    with FingerprintSimulator(baud=BAUD) as sim:
        sim.enrol("alice", 7)
        sim.wire.wire_baud = BAUD
        reader = R30xFingerprintReader(sim.port, baudrate=BAUD)
        await reader.open()
        try:
            sim.place_finger("alice")
            await reader.identify(5.0)  # warm up: the first call pays for imports and caches
            times, wire = [], []
            for _ in range(ROUNDS):
                before = sim.wire.bytes_in + sim.wire.bytes_out
                started = time.perf_counter()
                match = await reader.identify(5.0)
                times.append(time.perf_counter() - started)
                assert match is not None and match.page == 7
                wire.append((sim.wire.bytes_in + sim.wire.bytes_out - before) * 10 / BAUD)
        finally:
            await reader.close()
    ours, reference = statistics.median(times), statistics.median(wire)
    return Figure(
        name="fingerprint identify round trip (GenImg, Img2Tz, Search)",
        ours=f"{ours * 1000:.2f} ms", reference=f"{reference * 1000:.2f} ms wire time at {BAUD}",
        ratio=ours / reference, target="ratio <= 1.15", met=ours / reference <= 1.15,
    )


def run() -> Figure:
    return asyncio.run(measure())

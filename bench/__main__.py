"""``python -m bench``: run every benchmark and write BENCHMARKS.md.

``python -m bench NAME...`` runs only the named ones (``catalog``, ``card_sale`` ...) and
prints their figures without touching BENCHMARKS.md.
"""

from __future__ import annotations

import math
import os
import sys
import time
import traceback
from pathlib import Path

from bench import (
    card_sale,
    catalog,
    customer_screen,
    durable_transition,
    fingerprint_identify,
    pi_profile,
    sales_history,
    startup,
)
from bench.figures import Figure, ratio_cell, write_table

BENCHMARKS = (startup, durable_transition, catalog, card_sale, sales_history, customer_screen,
              fingerprint_identify, pi_profile)


def name_of(benchmark: object) -> str:
    return str(getattr(benchmark, "__name__", benchmark)).rsplit(".", 1)[-1]


def run(benchmark: object) -> list[Figure]:
    """The benchmark's figures; a benchmark that breaks gives one figure saying so."""
    started = time.perf_counter()
    try:
        figures: list[Figure] = benchmark.run()  # type: ignore[attr-defined]
    except Exception as exc:
        traceback.print_exc()
        figures = [Figure(name=f"{name_of(benchmark)}: did not run", ours="-", reference="-",
                          ratio=math.nan, target="-", met=False,
                          note=f"{type(exc).__name__}: {exc}")]
    print(f"[{name_of(benchmark)}: {time.perf_counter() - started:.0f} s]", flush=True)
    return figures


def main(argv: list[str]) -> int:
    chosen = [b for b in BENCHMARKS if not argv or name_of(b) in argv]
    unknown = set(argv) - {name_of(b) for b in BENCHMARKS}
    if unknown:
        print(f"unknown benchmark(s) {', '.join(sorted(unknown))}; "
              f"known: {', '.join(name_of(b) for b in BENCHMARKS)}", file=sys.stderr)
        return 2
    started, load = time.perf_counter(), os.getloadavg()[0]
    figures = []
    for benchmark in chosen:
        for figure in run(benchmark):
            print(f"{figure.name}: {figure.ours} vs {figure.reference}: ratio "
                  f"{ratio_cell(figure)} ({figure.target}: "
                  f"{'met' if figure.met else 'MISSED'})", flush=True)
            figures.append(figure)
    if not argv:
        write_table(figures, Path(__file__).resolve().parents[1] / "BENCHMARKS.md",
                    time.perf_counter() - started, (load, os.getloadavg()[0]))
    return 0  # a missed target is a finding, written in the table, not a failure to run


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""``python -m bench``: run every benchmark and write BENCHMARKS.md."""

from __future__ import annotations

import sys
from pathlib import Path

from bench import fingerprint_identify
from bench.figures import write_table

BENCHMARKS = (fingerprint_identify,)


def main() -> int:
    figures = []
    for benchmark in BENCHMARKS:
        for figure in benchmark.run():
            print(f"{figure.name}: {figure.ours} vs {figure.reference}: "
                  f"ratio {figure.ratio:.3f} ({figure.target}: "
                  f"{'met' if figure.met else 'MISSED'})")
            figures.append(figure)
    write_table(figures, Path(__file__).resolve().parents[1] / "BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

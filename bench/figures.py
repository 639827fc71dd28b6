"""One benchmark figure, and the BENCHMARKS.md table they are written to."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Figure:
    name: str
    ours: str
    reference: str
    ratio: float
    target: str
    met: bool
    #: Why a target is missed, or how to read the figure.
    note: str = ""


def machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write_table(figures: list[Figure], path: Path) -> None:
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench`. Each figure is a median over repeated runs, compared with its",
        "reference measured in the same run, because absolute times on a shared machine drift.",
        "",
        "| figure | ours | reference | ratio | target | met | machine |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {f.name} | {f.ours} | {f.reference} | {f.ratio:.3f} | {f.target} | "
        f"{'yes' if f.met else 'NO'} | {machine()} |"
        for f in figures
    ]
    notes = [f"- **{f.name}**: {f.note}" for f in figures if f.note]
    if notes:
        lines += ["", "## Notes", "", *notes]
    path.write_text("\n".join(lines) + "\n")

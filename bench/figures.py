"""One benchmark figure, and the BENCHMARKS.md table they are written to."""

from __future__ import annotations

import math
import os
import platform
import sqlite3
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class Figure:
    name: str
    ours: str
    #: What ours was compared with in the same run, or "-" for a figure with an absolute target.
    reference: str
    #: Ours over the reference; for a figure without one, ours over its target (see ``basis``).
    ratio: float
    target: str
    met: bool
    #: Why a target is missed, or how to read the figure.
    note: str = ""

    @property
    def basis(self) -> str:
        return "target" if self.reference == "-" else "reference"


def percentile(values: list[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def machine() -> str:
    """The machine in short, for every row of the table."""
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def machine_in_full() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in _cpuinfo()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    return (f"{machine()} ({cpu}; {platform.system()} {platform.release()}; "
            f"SQLite {sqlite3.sqlite_version}), shared with other work")


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def _commit(root: Path) -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                              capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=root, text=True, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" with uncommitted changes" if dirty.strip() else "")


def ratio_cell(figure: Figure) -> str:
    if math.isnan(figure.ratio):
        return "-"
    return f"{figure.ratio:.2f}" + (" of target" if figure.basis == "target" else "")


def write_table(figures: list[Figure], path: Path, seconds: float,
                load: tuple[float, float]) -> None:
    """``load``: the machine's load average (1 minute) before and after the run."""
    where = machine()
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench`); do not edit by hand. Each figure is a",
        "median over repeated runs and, where it has a reference, is compared with that",
        "reference measured in the same run, because absolute times on a shared machine drift.",
        "The ratio is ours over the reference; for a figure with only an absolute target it is",
        "ours over the target (so below 1.00 is within it, except for requests per second).",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on commit {_commit(path.parent)}, "
        f"{seconds / 60:.1f} minutes, on {machine_in_full()}; load average {load[0]:.1f} before "
        f"and {load[1]:.1f} after (the benchmarks themselves add about 1: above that, other "
        "work was running and the absolute times are pessimistic).",
        "",
        "| figure | ours | reference | ratio | target | met | machine |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {f.name} | {f.ours} | {f.reference} | {ratio_cell(f)} | {f.target} | "
        f"{'yes' if f.met else '**NO**'} | {where} |"
        for f in figures
    ]
    notes = [f"- **{f.name}**: {f.note}" for f in figures if f.note]
    if notes:
        lines += ["", "## Notes", "", *notes]
    path.write_text("\n".join(lines) + "\n")

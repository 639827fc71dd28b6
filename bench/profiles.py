"""Where the time (or the memory) goes, for the notes of figures that miss their target.

Three tools, each summarised into one line a reader can act on:

- pyinstrument, in this process: how a function's time splits among what it calls;
- py-spy, attached to a running ``kiosk serve``: its samples, each given to the innermost
  part of the kiosk it was in (a SQLite commit, the ledger, the HTTP layer ...);
- tracemalloc, in this process: which code the memory that stayed was allocated by.

The raw profiles are kept under ``var/bench/profiles/`` for a closer look.
"""

from __future__ import annotations

import collections
import ctypes
import shutil
import signal
import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pyinstrument import Profiler
from pyinstrument.frame import Frame

from bench.served import CACHE

PROFILES = CACHE / "profiles"


def split(work: Callable[[], None], function: str, file_suffix: str,
          name: str, leaf: str = "", top: int = 5) -> str:
    """Run ``work`` under pyinstrument; how the time of ``function`` (in a file ending with
    ``file_suffix``) splits among its callees, largest first, as "callee 41%, ...", and
    the share of it spent in ``leaf`` however deep (a C call such as SQLite's commit)."""
    profiler = Profiler(interval=0.0005)
    profiler.start()
    try:
        work()
    finally:
        profiler.stop()
    PROFILES.mkdir(parents=True, exist_ok=True)
    (PROFILES / f"{name}.txt").write_text(
        profiler.output_text(unicode=False, color=False, show_all=False))
    session = profiler.last_session
    if session is None:
        return "no profile"
    found: list[Frame] = []

    def collect(frame: Frame) -> None:
        if frame.function == function and (frame.file_path or "").endswith(file_suffix):
            found.append(frame)
            return
        for child in frame.children:
            collect(child)

    root = session.root_frame()
    if root is not None:
        collect(root)
    total = sum(frame.time for frame in found)
    if not total:
        return f"{function} was not seen"
    shares: dict[str, float] = collections.defaultdict(float)
    for frame in found:
        for child in frame.children:
            shares[_name(child)] += child.time

    def in_leaf(frame: Frame) -> float:
        if frame.function == leaf:
            return frame.time
        return sum(in_leaf(child) for child in frame.children)

    largest = sorted(shares.items(), key=lambda item: -item[1])[:top]
    text = ", ".join(f"{callee} {100 * seconds / total:.0f}%" for callee, seconds in largest)
    if leaf:
        text += (f"; {leaf} (inside those) "
                 f"{100 * sum(in_leaf(frame) for frame in found) / total:.0f}%")
    return text


def _name(frame: Frame) -> str:
    if frame.function == "[self]":
        return "its own lines"
    owner = getattr(frame, "class_name", None)
    return f"{owner}.{frame.function}" if owner and "." not in frame.function else frame.function


# --- py-spy on a served kiosk ----------------------------------------------------------------

#: The kiosk's parts, by a piece of a frame's text; a sample goes to the innermost one.
AREAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("SQLite commits through SQLAlchemy (a technician's changes)", ("do_commit",)),
    ("logging", ("logging/__init__.py",)),
    ("ledger: each transition's SQL and commit", ("kiosk/ledger.py",)),
    ("event stream to the screen", ("kiosk/api/events.py", "kiosk/events.py")),
    ("card driver", ("drivers/card/",)),
    ("vending driver", ("drivers/vending/", "gpiozero/")),
    ("fingerprint driver", ("drivers/fingerprint/",)),
    ("sale engine", ("kiosk/sales.py", "kiosk/settlement.py", "kiosk/sale_view.py")),
    ("HTTP layer (uvicorn, FastAPI, middleware, routes)",
     ("uvicorn/", "fastapi/", "starlette/", "h11/", "kiosk/api/")),
    ("event loop (asyncio; on a busy machine, also waiting for a CPU after a wake-up)",
     ("asyncio/", "selectors.py")),
)


def pyspy() -> str | None:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return found if Path(found).exists() else None


@contextmanager
def pyspy_record(pid: int, name: str, rate: int = 200) -> Iterator[Path]:
    """Record ``pid`` with py-spy (raw, without pausing it) for the body of the ``with``."""
    tool = pyspy()
    if tool is None:
        raise RuntimeError("py-spy is not installed (pip install -e '.[dev]')")
    PROFILES.mkdir(parents=True, exist_ok=True)
    output = PROFILES / f"{name}.raw.txt"
    spy = subprocess.Popen([tool, "record", "--pid", str(pid), "--format", "raw", "--threads",
                            "--rate", str(rate), "--nonblocking", "--output", str(output)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield output
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes what it has and exits
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()


def areas(raw: Path, rate: int, per: int, unit: str) -> str:
    """The samples of a py-spy raw profile by kiosk area, in ms of CPU per ``unit``."""
    if not raw.exists():
        return "py-spy could not record (it needs permission to ptrace the server)"
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if not number.isdigit():
            continue
        frames = stack.split(";")
        if "MainThread" not in frames[0]:
            counts["simulator threads"] += int(number)
            continue
        area = next((label for frame in reversed(frames[1:]) for label, marks in AREAS
                     if any(mark in frame for mark in marks)), "other")
        counts[area] += int(number)
    total = sum(counts.values())
    if not total:
        return "py-spy took no samples"
    parts = [f"{label} {1000 * samples / rate / per:.1f}" for label, samples in
             counts.most_common()]
    return (f"CPU per {unit} by area, in ms ({1000 * total / rate / per:.1f} in all): "
            + ", ".join(parts))


# --- tracemalloc -------------------------------------------------------------------------------

#: Who allocated memory that stayed, by a piece of the innermost project or library frame.
OWNERS: tuple[tuple[str, str], ...] = (
    ("simulators/", "simulators"), ("gpiozero/", "gpiozero (mock pins' history)"),
    ("drivers/", "drivers"), ("kiosk/", "kiosk"), ("sqlalchemy/", "SQLAlchemy"),
)


def sqlite_memory_used() -> int | None:
    """Bytes SQLite itself has allocated in this process (page caches, statements), or None."""
    try:
        import _sqlite3

        library = ctypes.CDLL(_sqlite3.__file__)  # finds the SQLite that _sqlite3 is linked to
        used = library.sqlite3_memory_used
    except (ImportError, OSError, AttributeError):
        return None
    used.restype = ctypes.c_int64
    return int(used())


@contextmanager
def allocations() -> Iterator[list[str]]:
    """What the body of the ``with`` left allocated: the list gets, afterwards, what stayed
    by owner, largest first, as "owner KB" strings (first item: the total).

    Start tracing (``tracemalloc.start(10)``) before a warm-up, and this uses it and leaves it
    running: an object freed in the body counts against what the body allocated only if its
    own allocation was traced, so a bounded buffer that replaces its oldest entries would
    otherwise look like growth. Without tracing already on, this traces the body alone.
    """
    summary: list[str] = []
    ours = not tracemalloc.is_tracing()
    if ours:
        tracemalloc.start(10)
    before = tracemalloc.take_snapshot()
    try:
        yield summary
    finally:
        after = tracemalloc.take_snapshot()
        if ours:
            tracemalloc.stop()
    owners: collections.Counter[str] = collections.Counter()
    for stat in after.compare_to(before, "traceback"):
        owner = next((label for frame in reversed(stat.traceback) for mark, label in OWNERS
                      if mark in frame.filename), "other")
        owners[owner] += stat.size_diff
    summary.append(f"{sum(owners.values()) / 1024:.0f} KB")
    summary += [f"{owner} {size / 1024:.0f} KB" for owner, size in owners.most_common()]

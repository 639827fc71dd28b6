"""The slow-sync shim (bench/slow_sync.c): built once with the machine's C compiler, loaded
into a kiosk process with LD_PRELOAD to give it a Raspberry Pi's SD card."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).with_name("slow_sync.c")


def build(directory: Path) -> Path:
    """The shared library, compiled into ``directory`` unless a build of this source is there."""
    source = SOURCE.read_bytes()
    library = directory / f"slow_sync-{hashlib.sha256(source).hexdigest()[:12]}.so"
    if library.exists():
        return library
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler (cc or gcc) to build bench/slow_sync.c")
    directory.mkdir(parents=True, exist_ok=True)
    partial = library.with_suffix(".partial")
    subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(partial), str(SOURCE),
                    "-ldl"], check=True, capture_output=True)
    partial.replace(library)
    return library


def environment(library: Path, median_ms: float, tail_ms: float = 0.0, tail_every: int = 0,
                count_file: Path | None = None) -> dict[str, str]:
    """What a process needs in its environment to sync as slowly as that."""
    env = {
        "LD_PRELOAD": str(library),
        "KIOSK_SLOW_SYNC_MS": f"{median_ms:g}",
        "KIOSK_SLOW_SYNC_TAIL_MS": f"{tail_ms:g}",
        "KIOSK_SLOW_SYNC_TAIL_EVERY": str(tail_every),
    }
    if count_file is not None:
        env["KIOSK_SLOW_SYNC_COUNT_FILE"] = str(count_file)
    return env

#!/usr/bin/python3
"""Nightly online backup of the kiosk's SQLite database, keeping the newest few.

SQLite's backup API copies the database inside one read transaction, so the copy is a
consistent snapshot even while the kiosk writes in WAL mode; copying the file with cp would not
be. The copy is checked and then renamed into place, so a backup that exists is complete.
Run by kiosk-backup.service with the system Python (standard library only).
"""

from __future__ import annotations

import argparse
import datetime
import sqlite3
import sys
from pathlib import Path

NAME_PREFIX = "kiosk-"
NAME_SUFFIX = ".db"


def backup(database: Path, directory: Path, today: datetime.date) -> Path:
    """Copy ``database`` to ``directory/kiosk-YYYYMMDD.db`` and return the new file."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = directory / f"{NAME_PREFIX}{today:%Y%m%d}{NAME_SUFFIX}"
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    # Read-only: a backup never creates a database that is not there, nor changes one.
    source = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        copy = sqlite3.connect(partial)
        try:
            source.backup(copy)
            result = copy.execute("PRAGMA integrity_check").fetchone()[0]
            if result != "ok":
                raise RuntimeError(f"{partial}: integrity check says {result!r}")
            # A standalone copy: restoring it is copying one file back.
            copy.execute("PRAGMA journal_mode=DELETE")
        finally:
            copy.close()
    finally:
        source.close()
    partial.replace(target)
    return target


def prune(directory: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` backups; return what was deleted."""
    backups = sorted(
        path for path in directory.glob(f"{NAME_PREFIX}[0-9]*{NAME_SUFFIX}")
        if path.stem.removeprefix(NAME_PREFIX).isdigit()
    )
    doomed = backups[:-keep] if keep > 0 else backups
    for path in doomed:
        path.unlink()
    return doomed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", type=Path, default=Path("/var/lib/kiosk/kiosk.db"))
    parser.add_argument("--directory", type=Path, default=Path("/var/lib/kiosk/backups"))
    parser.add_argument("--keep", type=int, default=14, help="backups to keep (default 14)")
    args = parser.parse_args(argv)
    if args.keep < 1:
        parser.error("--keep must be at least 1")
    if not args.database.is_file():
        print(f"kiosk-backup: {args.database} does not exist; nothing to back up",
              file=sys.stderr)
        return 1
    try:
        target = backup(args.database, args.directory, datetime.date.today())
    except (sqlite3.Error, RuntimeError, OSError) as exc:
        print(f"kiosk-backup: backing up {args.database} failed: {exc}", file=sys.stderr)
        return 1
    print(f"kiosk-backup: {args.database} -> {target}")
    for path in prune(args.directory, args.keep):
        print(f"kiosk-backup: removed {path} (keeping the newest {args.keep})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

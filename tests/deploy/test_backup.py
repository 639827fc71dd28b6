"""kiosk-backup.py: a consistent copy of a database another connection is writing in WAL mode,
and only the newest backups kept."""

from __future__ import annotations

import datetime
import importlib.util
import sqlite3
from pathlib import Path
from types import ModuleType

from tests.deploy.tools import SYSTEMD_DIR


def _backup_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kiosk_backup", SYSTEMD_DIR / "kiosk-backup.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


kiosk_backup = _backup_module()


def _live_database(path: Path) -> sqlite3.Connection:
    """A database in WAL mode with committed rows still only in the WAL, as while the kiosk runs."""
    kiosk = sqlite3.connect(path, isolation_level=None)
    kiosk.execute("PRAGMA journal_mode=WAL")
    kiosk.execute("PRAGMA wal_autocheckpoint=0")
    kiosk.execute("CREATE TABLE sale (id INTEGER PRIMARY KEY, cents INTEGER NOT NULL)")
    kiosk.executemany("INSERT INTO sale (cents) VALUES (?)", [(150,)] * 100)
    return kiosk


def test_backup_holds_what_was_committed_even_if_still_in_the_wal(tmp_path: Path) -> None:
    database = tmp_path / "kiosk.db"
    kiosk = _live_database(database)
    # An open, uncommitted transaction is not part of the backup.
    kiosk.execute("BEGIN")
    kiosk.execute("INSERT INTO sale (cents) VALUES (999)")

    target = kiosk_backup.backup(database, tmp_path / "backups", datetime.date(2025, 3, 1))

    assert target.name == "kiosk-20250301.db"
    copy = sqlite3.connect(target)
    assert copy.execute("SELECT count(*), sum(cents) FROM sale").fetchone() == (100, 15000)
    assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    copy.close()
    kiosk.execute("ROLLBACK")
    kiosk.close()
    assert not list((tmp_path / "backups").glob("*.partial"))


def test_only_the_newest_backups_are_kept(tmp_path: Path) -> None:
    directory = tmp_path / "backups"
    directory.mkdir()
    for day in range(1, 21):
        (directory / f"kiosk-202501{day:02d}.db").write_bytes(b"")
    (directory / "notes.txt").write_text("a technician's file")

    removed = kiosk_backup.prune(directory, keep=14)

    assert [path.name for path in removed] == [f"kiosk-202501{d:02d}.db" for d in range(1, 7)]
    assert len(list(directory.glob("kiosk-*.db"))) == 14
    assert (directory / "notes.txt").exists()


def test_command_backs_up_and_prunes(tmp_path: Path) -> None:
    database = tmp_path / "kiosk.db"
    _live_database(database).close()
    directory = tmp_path / "backups"
    directory.mkdir()
    (directory / "kiosk-20000101.db").write_bytes(b"")

    status = kiosk_backup.main(["--database", str(database), "--directory", str(directory),
                                "--keep", "1"])

    assert status == 0
    assert [path.name for path in directory.iterdir()] == [
        f"kiosk-{datetime.date.today():%Y%m%d}.db"
    ]


def test_a_missing_database_is_an_error_not_a_new_empty_backup(tmp_path: Path) -> None:
    status = kiosk_backup.main(["--database", str(tmp_path / "absent.db"),
                                "--directory", str(tmp_path / "backups")])
    assert status == 1
    assert not (tmp_path / "backups").exists()

"""The SQLite file: opened durably, its schema checked against the code's migrations.

Every commit is durable before it returns (WAL with synchronous=FULL): the sale engine relies
on that to record a transition before the next physical side effect.
"""

from __future__ import annotations

import ast
import functools
import json
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, event
from sqlmodel import Session, create_engine

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

#: How long the ledger's scribe waits for another writer (a technician's write, a second
#: process) before a sale's step counts as not recorded.
BUSY_TIMEOUT_MS = 5000
#: ... and a technician's request, which is answered 503 "busy" instead: short, since a
#: worker thread is held meanwhile.
REQUEST_BUSY_TIMEOUT_MS = 2000
#: How long a request waits for a pooled connection before it is answered 503 ("busy"): the
#: waiting happens on a worker thread, but a client should hear soon that the kiosk is swamped.
POOL_TIMEOUT = 2.0
#: What recording one sale writes to the WAL, with a margin: each of its commits writes every
#: page it touches whole (a sale from start to end writes about 150 kB).
ROOM_FOR_A_SALE = 256 * 1024
#: The ``kiosk_state`` row the probe fills and deletes again to make that room.
ROOM_PROBE_KEY = "room_probe"


def waited_for_lock(exc: BaseException) -> bool:
    """Whether SQLite gave up waiting for another connection's lock (not a failing disk)."""
    cause = getattr(exc, "orig", None) or exc.__cause__ or exc
    code = getattr(cause, "sqlite_errorcode", 0) & 0xFF
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class SchemaError(Exception):
    """The database's schema is not the one this code was written for."""


#: The migration scripts. Alembic itself is imported only to run them (``kiosk db upgrade``):
#: with what it pulls in (Mako, Pygments) it takes 10 MB and a tenth of a second that every
#: start of the kiosk would pay just to learn the newest revision's name.
MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database: Path) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", f"sqlite:///{database}")
    return config


#: SQLite's page cache per connection, in KiB.
CACHE_KIB = 1024


def _pragmas(busy_timeout_ms: int, dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    # Each pooled connection keeps its own page cache; SQLite's default (2 MB each) is most of
    # what a Pi's kiosk grows by as its ledger grows. The OS caches the file as well.
    cursor.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    cursor.close()


def make_engine(database: Path, pool_size: int = 5, max_overflow: int = 10,
                busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> Engine:
    database.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        f"sqlite:///{database}", connect_args={"check_same_thread": False},
        pool_size=pool_size, max_overflow=max_overflow, pool_timeout=POOL_TIMEOUT,
    )
    event.listen(engine, "connect", functools.partial(_pragmas, busy_timeout_ms))
    return engine


def upgrade(database: Path) -> str:
    """Bring the database to the newest schema; returns the revision it is at."""
    from alembic import command

    engine = make_engine(database)
    try:
        with engine.begin() as connection:
            config = alembic_config(database)
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        return current_revision(engine) or ""
    finally:
        engine.dispose()


def head_revision(database: Path) -> str:
    """The newest schema revision this code knows."""
    return _chain()[0]


@functools.cache
def _chain() -> tuple[str, frozenset[str]]:
    """The newest revision and every revision of the migration chain, read from the scripts'
    ``revision`` and ``down_revision`` as Alembic reads them, without importing Alembic."""
    parents: dict[str, tuple[str, ...]] = {}
    for script in sorted((MIGRATIONS / "versions").glob("*.py")):
        found: dict[str, object] = {}
        for node in ast.parse(script.read_text(), str(script)).body:
            target: ast.expr
            if isinstance(node, ast.AnnAssign) and node.value is not None:
                target, value = node.target, node.value
            elif isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
            else:
                continue
            if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                found[target.id] = ast.literal_eval(value)
        revision, down = found.get("revision"), found.get("down_revision")
        if isinstance(revision, str):
            parents[revision] = ((down,) if isinstance(down, str)
                                 else tuple(map(str, down)) if isinstance(down, tuple | list)
                                 else ())
    heads = set(parents) - {parent for ups in parents.values() for parent in ups}
    if len(heads) != 1:
        raise SchemaError(f"the migrations in {MIGRATIONS} have {len(heads)} newest revisions "
                          f"({', '.join(sorted(heads)) or 'none'}), not one")
    return heads.pop(), frozenset(parents)


def current_revision(engine: Engine) -> str | None:
    """The revision recorded in the database; None before its first migration."""
    with engine.connect() as connection:
        migrated = connection.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
        ).first()
        if migrated is None:
            return None
        revision = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        return None if revision is None else str(revision)


def check_schema(engine: Engine, database: Path) -> None:
    """Refuse a database that is behind the code, or ahead of it (written by a newer kiosk)."""
    head, known = _chain()
    current = current_revision(engine)
    if current == head:
        return
    if current is None:
        raise SchemaError(f"{database} has no schema yet: run `kiosk db upgrade`")
    if current not in known:
        raise SchemaError(
            f"{database} has schema {current}, newer than this kiosk knows (up to {head}): "
            "install the kiosk version that wrote it"
        )
    raise SchemaError(f"{database} has schema {current}, older than {head}: run `kiosk db upgrade`")


class Database:
    """The kiosk's one SQLite file, and whether it can still be written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.engine = make_engine(path, busy_timeout_ms=REQUEST_BUSY_TIMEOUT_MS)
        #: The sale ledger's scribe's own connection (see kiosk.scribe): never shared with
        #: technician requests, so a flood of them cannot keep a sale from being recorded.
        self.ledger_engine = make_engine(path, pool_size=1, max_overflow=1)
        #: Why the last write through the kiosk's own connections failed.
        self._failed = ""
        #: ... and whether the disk was full or failing: only the probe may clear that.
        self._disk_failed = False
        #: Why a connection opened now cannot write ("" once the probe finds that it can).
        self._probed = ""

    @property
    def write_error(self) -> str:
        """Empty while the database takes writes; otherwise why it does not."""
        return self._failed or self._probed

    @write_error.setter
    def write_error(self, error: str) -> None:
        # The ledger sets "" after each commit that went through. That ends a lock held too
        # long, but not a full or failing disk: one small write says nothing about room for a
        # sale. Nor the probe's finding that a new connection cannot write (the pooled ones
        # opened the file while it was writable).
        if error or not self._disk_failed:
            self._failed = error
            self._disk_failed = False

    @property
    def writable(self) -> bool:
        return not self.write_error

    def check(self) -> None:
        check_schema(self.engine, self.path)
        self.probe_write()

    def probe_write(self) -> None:
        """Find out whether the database takes writes, as a connection opened now would.

        The kiosk's pooled connections keep the descriptors they opened: a file or directory
        made read-only since then goes unnoticed by them, but not by the next connection, nor
        by the kiosk after a restart. So the probe opens a connection of its own, takes the
        write lock and touches a row (SQLite writes nothing for a value that does not change).
        After a write failed, that is not enough: the probe must then make room for a whole
        sale and show that it can be recorded (see :meth:`_make_room`).
        """
        after_refusal = bool(self._failed)
        try:
            connection = sqlite3.connect(f"file:{self.path}?mode=rw", uri=True,
                                         timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
            try:
                if after_refusal:
                    self._make_room(connection)
                else:
                    connection.execute("BEGIN IMMEDIATE")
                    connection.execute("UPDATE alembic_version SET version_num = version_num")
                    connection.execute("ROLLBACK")
            finally:
                connection.close()
        except sqlite3.Error as exc:
            self._probed = self._refusal(exc)
            log.error("%s", self._probed)
            return
        if self._probed:
            # A connection the pool opened meanwhile may have opened the file read-only.
            self.engine.dispose()
            self.ledger_engine.dispose()
        if self._probed or after_refusal:
            log.info("database %s takes writes again", self.path)
        self._probed = ""
        if after_refusal:
            self._failed = ""
            self._disk_failed = False

    def _make_room(self, connection: sqlite3.Connection) -> None:
        """Show that a whole sale can be recorded again, and keep the room for it.

        A full disk lets a one-page write through long before a sale's dozen commits fit, so
        the probe writes as much as a sale would: it first folds the WAL into the database (a
        WAL that filled the disk is then written over from its start), then commits a filler
        row of :data:`ROOM_FOR_A_SALE` bytes and deletes it, and folds the WAL in again. What
        stays behind is room a sale can use: free pages in the database, and the WAL's length.
        """
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
        connection.execute("BEGIN IMMEDIATE")
        connection.execute(
            "INSERT OR REPLACE INTO kiosk_state (key, value, updated_at) VALUES (?, ?, ?)",
            # Letters, not digits: the freed pages keep it, and a long digit run in the file
            # would look like a card number to anyone auditing it.
            (ROOM_PROBE_KEY, json.dumps({"filler": "x" * ROOM_FOR_A_SALE}),
             datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")),
        )
        connection.execute("COMMIT")
        connection.execute("DELETE FROM kiosk_state WHERE key = ?", (ROOM_PROBE_KEY,))
        connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()

    def note_write_failure(self, exc: Exception) -> None:
        cause = exc.__cause__ or exc
        code = getattr(cause, "sqlite_errorcode", 0) & 0xFF
        self._failed = self._refusal(cause)
        self._disk_failed = code in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR)
        log.error("%s", self._failed)

    def _refusal(self, exc: BaseException) -> str:
        return f"database {self.path} refuses writes: {exc}"

    @contextmanager
    def session(self, engine: Engine | None = None) -> Iterator[Session]:
        """A session for one unit of work; the caller commits what must last."""
        with Session(engine or self.engine, expire_on_commit=False) as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
        self.ledger_engine.dispose()

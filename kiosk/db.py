"""The SQLite file: opened durably, its schema checked against the code's migrations.

Every commit is durable before it returns (WAL with synchronous=FULL): the sale engine relies
on that to record a transition before the next physical side effect.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, create_engine

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000


class SchemaError(Exception):
    """The database's schema is not the one this code was written for."""


def alembic_config(database: Path) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.set_main_option("sqlalchemy.url", f"sqlite:///{database}")
    return config


def _pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


def make_engine(database: Path) -> Engine:
    database.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        f"sqlite:///{database}", connect_args={"check_same_thread": False}
    )
    event.listen(engine, "connect", _pragmas)
    return engine


def upgrade(database: Path) -> str:
    """Bring the database to the newest schema; returns the revision it is at."""
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
    return ScriptDirectory.from_config(alembic_config(database)).get_current_head() or ""


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def check_schema(engine: Engine, database: Path) -> None:
    """Refuse a database that is behind the code, or ahead of it (written by a newer kiosk)."""
    script = ScriptDirectory.from_config(alembic_config(database))
    head = script.get_current_head()
    current = current_revision(engine)
    if current == head:
        return
    if current is None:
        raise SchemaError(f"{database} has no schema yet: run `kiosk db upgrade`")
    known = {revision.revision for revision in script.walk_revisions()}
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
        self.engine = make_engine(path)
        #: Empty while writes succeed; otherwise why the last one failed.
        self.write_error = ""

    @property
    def writable(self) -> bool:
        return not self.write_error

    def check(self) -> None:
        check_schema(self.engine, self.path)
        self.probe_write()

    def probe_write(self) -> None:
        """Take the write lock and touch a row, then roll back: learns early that writes fail."""
        try:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("BEGIN IMMEDIATE")
                connection.exec_driver_sql("UPDATE alembic_version SET version_num = version_num")
                connection.exec_driver_sql("ROLLBACK")
            self.write_error = ""
        except OperationalError as exc:
            self.note_write_failure(exc)

    def note_write_failure(self, exc: Exception) -> None:
        self.write_error = f"database {self.path} refuses writes: {exc.__cause__ or exc}"
        log.error("%s", self.write_error)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session for one unit of work; the caller commits what must last."""
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()

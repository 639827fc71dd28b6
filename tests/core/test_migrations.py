"""The schema: built by the migration chain, matching the models, newer schemas refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

import kiosk.models  # noqa: F401  (tables on the metadata)
from kiosk import db
from kiosk.cli import main

TABLES = {"product", "slot", "sale", "sale_event", "member", "account_entry", "audit_log",
          "technician", "technician_session", "kiosk_state"}


def test_upgrade_from_empty_creates_every_table(tmp_path: Path) -> None:
    path = tmp_path / "new" / "kiosk.db"
    assert db.upgrade(path) == db.head_revision(path) != ""
    engine = db.make_engine(path)
    assert set(inspect(engine).get_table_names()) >= TABLES
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    db.check_schema(engine, path)
    engine.dispose()


# The one-open-sale index is an expression index, which SQLAlchemy cannot reflect.
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection")
def test_models_match_the_migrations(tmp_path: Path) -> None:
    path = tmp_path / "kiosk.db"
    db.upgrade(path)
    engine = db.make_engine(path)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    engine.dispose()
    assert differences == []


def test_upgrade_twice_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "kiosk.db"
    assert db.upgrade(path) == db.upgrade(path) == db.head_revision(path)


def test_newer_schema_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "kiosk.db"
    db.upgrade(path)
    engine = db.make_engine(path)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0099'")
    with pytest.raises(db.SchemaError, match="newer than this kiosk knows"):
        db.check_schema(engine, path)
    engine.dispose()
    monkeypatch.setenv("KIOSK_DATABASE", str(path))
    assert main(["serve"]) == 2
    assert "newer than this kiosk knows" in capsys.readouterr().err


def test_unmigrated_database_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "kiosk.db"
    engine = db.make_engine(path)
    with pytest.raises(db.SchemaError, match="run `kiosk db upgrade`"):
        db.check_schema(engine, path)
    engine.dispose()


def test_the_schema_check_reads_the_migration_chain_as_alembic_does(tmp_path: Path) -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(db.alembic_config(tmp_path / "kiosk.db"))
    assert db.head_revision(tmp_path / "kiosk.db") == script.get_current_head()
    assert db._chain()[1] == {revision.revision for revision in script.walk_revisions()}


def test_serving_does_not_import_alembic() -> None:
    # Alembic and what it pulls in take 10 MB and a tenth of a second at every start.
    import subprocess
    import sys

    code = ("import sys, kiosk.cli, kiosk.app, kiosk.server; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, cwd=Path(__file__).parents[2]).stdout.strip()
    assert found == "[]"

"""A running kiosk with a technician, and HTTP clients logged in (or not) as that technician."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlmodel import col, select

from kiosk import technicians
from kiosk.config import Settings
from kiosk.db import Database
from kiosk.models import AuditLog
from tests.api.conftest import RunningKiosk
from tests.conftest import Doubles

NAME, SECRET = "tess", "correct horse battery"


def audit(settings: Settings, action: str) -> list[AuditLog]:
    """The audit entries for ``action``, oldest first, read from the kiosk's database file."""
    database = Database(settings.database)
    with database.session() as session:
        rows = session.exec(select(AuditLog).where(AuditLog.action == action)
                            .order_by(col(AuditLog.id))).all()
    database.dispose()
    return list(rows)


@pytest.fixture
def technician(settings: Settings) -> str:
    database = Database(settings.database)
    technicians.add(database, NAME, SECRET)
    database.dispose()
    return NAME


@pytest.fixture
def kiosk(settings: Settings, doubles: Doubles, technician: str) -> Iterator[RunningKiosk]:
    with RunningKiosk(settings, doubles) as running:
        yield running


@pytest.fixture
def anonymous(kiosk: RunningKiosk) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=kiosk.url, timeout=20) as client:
        yield client


@pytest.fixture
def tech(kiosk: RunningKiosk) -> Iterator[httpx.Client]:
    """Logged in, sending the CSRF token on every request as the maintenance page does."""
    with httpx.Client(base_url=kiosk.url, timeout=20) as client:
        me = client.post("/api/maintenance/login", json={"name": NAME, "secret": SECRET})
        assert me.status_code == 200, me.text
        client.headers["X-CSRF-Token"] = me.json()["csrf_token"]
        yield client

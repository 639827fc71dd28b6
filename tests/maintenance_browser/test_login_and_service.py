"""Logging in, and taking the kiosk out of service and back from the dashboard."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlmodel import select

from drivers.base import HealthState
from kiosk.config import Settings
from kiosk.db import Database
from kiosk.models import Technician, utcnow
from tests.browser.conftest import Kiosk
from tests.maintenance_browser.conftest import (
    NAME,
    PHONE,
    SECRET,
    MaintenancePage,
    OpenMaintenance,
)


def test_wrong_secret_is_refused_and_the_right_one_opens_the_dashboard(
    open_maintenance: OpenMaintenance,
) -> None:
    tech = open_maintenance(logged_in=False)
    tech.log_in(secret="not the secret at all")
    error = tech.page.get_by_role("alert")
    expect(error).to_contain_text("Wrong name or secret")
    tech.expect_page("login")
    tech.shot("wrong-secret")
    tech.log_in(secret=SECRET)
    tech.expect_page("dashboard")
    expect(tech.page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(tech.page.locator("#who")).to_have_text(NAME)
    expect(tech.page.locator("[data-device='vending']")).to_contain_text("ok")
    expect(tech.page.locator("#attention")).to_contain_text("C3")  # 1 of 8 left
    tech.shot("dashboard")
    tech.button("Log out").click()
    tech.expect_page("login")
    tech.page.reload()  # the session is over on the server too
    tech.expect_page("login")


def test_locked_name_says_so_on_a_phone(
    open_maintenance: OpenMaintenance, settings: Settings
) -> None:
    database = Database(settings.database)
    with database.session() as session:
        technician = session.exec(select(Technician).where(Technician.name == NAME)).one()
        technician.locked_until = utcnow() + timedelta(minutes=15)
        session.add(technician)
        session.commit()
    database.dispose()
    tech = open_maintenance(size=PHONE, logged_in=False)
    tech.log_in()  # even the right secret
    expect(tech.page.get_by_role("alert")).to_contain_text("locked")
    tech.expect_page("login")
    tech.shot("locked")


def in_service(kiosk: Kiosk) -> bool:
    answer: bool = kiosk.http.get("/api/catalog").json()["in_service"]
    return answer


def test_out_of_service_toggle_reaches_the_customer_api_and_back(
    tech: MaintenancePage, kiosk: Kiosk
) -> None:
    status = tech.page.locator("#service-state")
    expect(status).to_have_text("In service")
    assert in_service(kiosk)
    tech.page.get_by_label("Reason").fill("cleaning the drop tray")
    tech.button("Take out of service").click()
    expect(status).to_have_text("Out of service")
    tech.notice("out of service")
    assert not in_service(kiosk)
    expect(tech.page.locator("#service-reasons")).to_contain_text("cleaning the drop tray")
    expect(tech.page.locator("#service-pill")).to_have_text("Out of service")
    tech.shot("out-of-service")
    assert kiosk.machine.service.held_by == f"{NAME}: cleaning the drop tray"

    tech.button("Put back in service").click()
    expect(status).to_have_text("In service")
    assert in_service(kiosk)
    expect(tech.button("Take out of service")).to_be_visible()
    tech.shot("back-in-service")


def test_dashboard_follows_a_device_going_offline_and_back(
    tech: MaintenancePage, kiosk: Kiosk
) -> None:
    vending = kiosk.doubles.vending
    card = tech.page.locator("[data-device='vending']")
    expect(card).to_contain_text("ok")
    kiosk.on_server(lambda: vending._set_health(HealthState.OFFLINE, "unplugged at the back"))
    expect(card).to_contain_text("offline")
    expect(card).to_contain_text("unplugged at the back")
    expect(tech.page.locator("#service-state")).to_have_text("Out of service")
    tech.shot("mechanism-offline")
    kiosk.on_server(lambda: vending._set_health(HealthState.OK, "plugged in again"))
    expect(card).to_contain_text("plugged in again")
    expect(tech.page.locator("#service-state")).to_have_text("In service")


def test_dashboard_says_why_the_database_refuses_writes_and_when_it_takes_them_again(
    tech: MaintenancePage, kiosk: Kiosk, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Database, "probe_write", lambda self: None)  # the test says when
    machine = kiosk.machine
    why = f"database {machine.db.path} refuses writes: database or disk is full"

    def refuse(error: str) -> Callable[[], None]:
        def change() -> None:
            machine.db.write_error = error
            machine.service_changed()
        return change

    kiosk.on_server(refuse(why))
    expect(tech.page.locator("#service-state")).to_have_text("Out of service")
    expect(tech.page.locator("#service-reasons")).to_contain_text(why)
    expect(tech.page.locator("#database")).to_contain_text(f"NOT writable: {why}")
    tech.shot("database-refuses-writes")
    kiosk.on_server(refuse(""))
    expect(tech.page.locator("#service-state")).to_have_text("In service")
    expect(tech.page.locator("#database")).to_have_text(f"Database {machine.db.path}: writable")

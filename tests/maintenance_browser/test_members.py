"""Members: enrolling a new member's finger, step by step, on the fingerprint simulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect
from sqlmodel import select

from drivers.base import DeviceKind
from kiosk.config import Settings
from kiosk.db import Database
from kiosk.models import AuditLog, Member
from simulators.fingerprint import FingerprintSimulator
from tests.api.conftest import RunningKiosk
from tests.browser.conftest import Kiosk
from tests.conftest import Doubles
from tests.maintenance_browser.conftest import OpenMaintenance


@pytest.fixture
def kiosk(settings: Settings, doubles: Doubles, technician: str) -> Iterator[Kiosk]:
    """Every device simulated; the fingerprint module waits for the test's fingers."""
    settings = Settings(database=settings.database, state_dir=settings.state_dir,
                        vending="sim://?revolution=0.1", card="sim://?auto=off",
                        fingerprint="sim://")
    with RunningKiosk(settings) as running:
        kiosk = Kiosk(running, doubles)  # the doubles stay unused: the simulators stand in
        try:
            yield kiosk
        finally:
            kiosk.http.close()


def test_member_fingerprint_is_enrolled_step_by_step_on_the_simulator(
    open_maintenance: OpenMaintenance, kiosk: Kiosk, settings: Settings
) -> None:
    sensor = kiosk.machine.hardware.simulators[DeviceKind.FINGERPRINT]
    assert isinstance(sensor, FingerprintSimulator)
    tech = open_maintenance()
    tech.go("Members")
    tech.expect_page("members")
    tech.page.get_by_label("New member's name").fill("Carol Tester")
    tech.button("Add member").click()
    expect(tech.page.get_by_role("heading", name="Carol Tester")).to_be_visible()

    start = tech.button("Start enrolment")
    expect(start).to_be_disabled()  # consent first
    tech.page.get_by_label("agrees that a template of their fingerprint").check()
    tech.shot("consent")
    start.click()

    instruction = tech.page.locator("#enrol-instruction")
    steps = tech.page.locator("#enrol-steps")
    expect(instruction).to_have_text("Place the finger flat on the sensor")
    expect(steps.locator("[aria-current=step]")).to_have_attribute("data-step", "place_finger")
    tech.shot("place-finger")
    sensor.place_finger("carol")
    expect(instruction).to_have_text("Lift the finger off the sensor")
    tech.shot("lift-finger")
    sensor.lift_finger()
    expect(instruction).to_have_text("Place the same finger again")
    tech.shot("place-again")
    sensor.place_finger("carol")
    expect(instruction).to_have_text("Fingerprint stored")
    expect(steps.locator("li.done")).to_have_count(6)
    tech.shot("stored")
    sensor.lift_finger()
    expect(tech.page.locator("#fingerprint-state")).to_contain_text("Enrolled on page")
    tech.shot("enrolled")

    database = Database(settings.database)
    with database.session() as session:
        member = session.exec(select(Member).where(Member.name == "Carol Tester")).one()
        actions = session.exec(select(AuditLog.action).where(
            AuditLog.target == f"member {member.id}")).all()
    database.dispose()
    assert member.fingerprint_page is not None and member.consent_at is not None
    assert sensor.library[member.fingerprint_page] == "carol"
    assert "fingerprint_enrolled" in actions

"""Sales: a sale a crash left under review is found from the dashboard and resolved with a note."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from kiosk.config import Settings
from kiosk.db import Database
from kiosk.ledger import Ledger
from kiosk.states import PaymentMethod, SaleState
from tests.api.conftest import RunningKiosk
from tests.browser.conftest import Kiosk
from tests.conftest import Doubles
from tests.maintenance_browser.conftest import NAME, OpenMaintenance


def crash_during_the_vend(settings: Settings) -> str:
    """A card sale recorded up to ``dispensing``, as a process killed mid-vend leaves it."""
    database = Database(settings.database)
    ledger = Ledger(database)
    sale = ledger.open_sale("B2", PaymentMethod.CARD)
    ledger.move(sale.id, SaleState.AUTHORIZING)
    ledger.move(sale.id, SaleState.AUTHORIZED, effect=lambda _session, s: setattr(
        s, "reader_reference", "ref-before-crash"))
    ledger.move(sale.id, SaleState.DISPENSING)
    database.dispose()
    return sale.id


class Crashed:
    sale_id = ""


@pytest.fixture
def crashed() -> Crashed:
    return Crashed()


@pytest.fixture
def kiosk(settings: Settings, doubles: Doubles, technician: str,
          crashed: Crashed) -> Iterator[Kiosk]:
    """Started after a crash in the middle of a vend: recovery sends that sale to review."""
    crashed.sale_id = crash_during_the_vend(settings)
    with RunningKiosk(settings, doubles) as running:
        kiosk = Kiosk(running, doubles)
        try:
            yield kiosk
        finally:
            kiosk.http.close()


def test_sale_under_review_is_resolved_with_a_note(
    open_maintenance: OpenMaintenance, kiosk: Kiosk, crashed: Crashed
) -> None:
    assert kiosk.machine.ledger.get(crashed.sale_id).state == SaleState.NEEDS_REVIEW
    tech = open_maintenance()
    expect(tech.page.locator("#review-count")).to_have_text("1")
    tech.page.get_by_role("link", name="Review them").click()
    tech.expect_page("sales")
    row = tech.page.locator(f"tr[data-sale='{crashed.sale_id}']")
    expect(row).to_contain_text("needs review")
    expect(tech.page.get_by_label("State")).to_have_value("review")
    tech.shot("waiting-for-review")

    row.get_by_role("link", name="details").click()
    expect(tech.page.locator("#sale-state")).to_contain_text("waiting for review")
    history = tech.page.locator("#sale-detail table")
    expect(history).to_contain_text("dispensing")
    expect(history).to_contain_text("recovered from")
    tech.button("Resolve").click()  # neither a choice nor a note yet
    expect(tech.page.locator(".resolve [role=alert]")).to_have_text("Choose delivered or refunded.")
    tech.page.get_by_label("not delivered: refund the customer").check()
    tech.page.get_by_label("Note (required)").fill("Counted B2: all 6 still there; refund.")
    tech.shot("resolve-form")
    tech.button("Resolve").click()

    tech.notice("Sale resolved as refunded")
    expect(tech.page.locator("#sale-resolution")).to_contain_text("refunded by tess")
    expect(tech.page.locator(".resolve")).to_have_count(0)
    expect(history).to_contain_text("Counted B2: all 6 still there")
    tech.shot("resolved")
    sale = kiosk.machine.ledger.get(crashed.sale_id)
    assert sale.state == SaleState.NEEDS_REVIEW  # terminal: the verdict is kept beside it
    assert (sale.resolution, sale.resolved_by) == ("refunded", NAME)

    tech.page.get_by_role("link", name="← All sales").click()
    expect(tech.page.locator(f"tr[data-sale='{crashed.sale_id}']")).to_contain_text(
        "resolved: refunded")
    tech.go("Dashboard")  # nothing waits for a technician any more
    expect(tech.page.locator("#review-count")).to_have_text("0")

"""Stock and prices: the planogram, restocking, products; audited and live on the touchscreen."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlmodel import select

from kiosk.config import Settings
from kiosk.db import Database
from kiosk.events import Event
from kiosk.machine import Machine
from kiosk.models import AuditLog, Slot
from tests.api.conftest import RunningKiosk
from tests.maintenance.conftest import NAME, audit

CHANGES = [
    ("PATCH", "/api/maintenance/planogram/A1", {"price_cents": 150}),
    ("POST", "/api/maintenance/planogram/A1/restock", {}),
    ("POST", "/api/maintenance/restock", None),
    ("POST", "/api/maintenance/products", {"name": "Tea"}),
    ("PATCH", "/api/maintenance/products/1", {"name": "Tea"}),
    ("POST", "/api/maintenance/products/1/retire", None),
]
READS = [("GET", "/api/maintenance/planogram", None), ("GET", "/api/maintenance/products", None)]




def set_slot(settings: Settings, code: str, **values: Any) -> None:
    """What the kiosk does by itself (a jam flags a slot): written straight to the database."""
    database = Database(settings.database)
    with database.session() as session:
        slot = session.exec(select(Slot).where(Slot.code == code)).one()
        for name, value in values.items():
            setattr(slot, name, value)
        session.add(slot)
        session.commit()
    database.dispose()


def on_screen(client: httpx.Client, code: str) -> dict[str, Any] | None:
    """The slot as the touchscreen's catalog shows it, or None when it is not shown."""
    slots = client.get("/api/catalog").json()["slots"]
    return next((slot for slot in slots if slot["code"] == code), None)


def slot_row(client: httpx.Client, code: str) -> dict[str, Any]:
    slots = client.get("/api/maintenance/planogram").json()["slots"]
    row: dict[str, Any] = next(slot for slot in slots if slot["code"] == code)
    return row


@pytest.fixture
def published(kiosk: RunningKiosk) -> Iterator[list[Event]]:
    """Every event the kiosk publishes on its bus from now on (the server runs in a thread)."""
    machine: Machine = kiosk.app.state.machine
    seen: list[Event] = []
    original = machine.bus.publish

    def publish(topic: str, data: dict[str, Any]) -> Event:
        event = original(topic, data)
        seen.append(event)
        return event

    machine.bus.publish = publish  # type: ignore[method-assign]
    yield seen
    machine.bus.publish = original  # type: ignore[method-assign]


def catalog_events(events: list[Event]) -> list[dict[str, Any]]:
    return [event.data for event in events if event.topic == "catalog"]


# --- access -----------------------------------------------------------------------------------


def test_stock_routes_want_a_login(anonymous: httpx.Client) -> None:
    for method, path, body in CHANGES + READS:
        answer = anonymous.request(method, path, json=body)
        assert answer.status_code == 401, (method, path)
        assert answer.json() == {"error": {"code": "login_required",
                                           "message": "log in on the maintenance page first"}}


def test_stock_changes_want_the_csrf_token(tech: httpx.Client, settings: Settings) -> None:
    for method, path, body in CHANGES:
        for token in ("", "forged"):
            answer = tech.request(method, path, json=body, headers={"X-CSRF-Token": token})
            assert answer.status_code == 403, (method, path, token)
            assert answer.json()["error"]["code"] == "csrf"
    database = Database(settings.database)
    with database.session() as session:
        changes = session.exec(select(AuditLog).where(AuditLog.actor == NAME,
                                                      AuditLog.action != "login")).all()
    database.dispose()
    assert changes == []
    assert tech.get("/api/maintenance/planogram").json()["slots"][0]["price_cents"] == 120


# --- the planogram ----------------------------------------------------------------------------


def test_planogram_shows_every_slot_with_its_product_price_and_stock(tech: httpx.Client) -> None:
    planogram = tech.get("/api/maintenance/planogram").json()
    assert planogram["currency"] == "EUR"
    assert [slot["code"] for slot in planogram["slots"]] == [
        "A1", "A2", "A3", "A4", "B1", "B2", "B3", "B4", "C1", "C2", "C3", "C4"]
    first = planogram["slots"][0]
    assert first == {"code": "A1", "product": {"id": 1, "name": "Still Water 500 ml",
                                               "retired": False},
                     "price_cents": 120, "stock": 8, "capacity": 10, "enabled": True,
                     "fault": "", "for_sale": True}


def test_price_change_is_audited_and_the_touchscreen_shows_it(
    tech: httpx.Client, settings: Settings, published: list[Event]
) -> None:
    changed = tech.patch("/api/maintenance/planogram/A1", json={"price_cents": 150})
    assert changed.status_code == 200 and changed.json()["price_cents"] == 150
    on_sale = on_screen(tech, "A1")
    assert on_sale is not None and on_sale["price_cents"] == 150
    entry = audit(settings, "change_slot")[-1]
    assert (entry.actor, entry.target) == (NAME, "A1")
    assert (entry.before, entry.after) == ({"price_cents": 120}, {"price_cents": 150})
    assert catalog_events(published) == [{"slot": "A1", "change": "change_slot"}]


def test_capacity_and_enabled_change_together_with_before_and_after(
    tech: httpx.Client, settings: Settings
) -> None:
    answer = tech.patch("/api/maintenance/planogram/b2", json={"capacity": 12, "enabled": False})
    assert answer.json()["capacity"] == 12 and answer.json()["for_sale"] is False
    entry = audit(settings, "change_slot")[-1]
    assert entry.before == {"capacity": 8, "enabled": True}
    assert entry.after == {"capacity": 12, "enabled": False}
    shown = on_screen(tech, "B2")
    assert shown is not None and shown["stock_state"] == "disabled"


def test_clearing_a_fault_puts_the_slot_back_on_sale(tech: httpx.Client,
                                                      settings: Settings) -> None:
    set_slot(settings, "B1", fault="jammed: clear the spiral")
    assert slot_row(tech, "B1")["for_sale"] is False
    shown = on_screen(tech, "B1")
    assert shown is not None and shown["stock_state"] == "disabled"
    cleared = tech.patch("/api/maintenance/planogram/B1", json={"fault": ""}).json()
    assert cleared["fault"] == "" and cleared["for_sale"] is True
    shown = on_screen(tech, "B1")
    assert shown is not None and shown["stock_state"] == "available"
    entry = audit(settings, "change_slot")[-1]
    assert entry.before == {"fault": "jammed: clear the spiral"} and entry.after == {"fault": ""}


def test_moving_a_product_into_a_slot_and_emptying_one(tech: httpx.Client,
                                                       settings: Settings) -> None:
    moved = tech.patch("/api/maintenance/planogram/A1", json={"product_id": 4}).json()
    assert moved["product"]["name"] == "Cola 330 ml"
    shown = on_screen(tech, "A1")
    assert shown is not None and shown["product"]["name"] == "Cola 330 ml"
    emptied = tech.patch("/api/maintenance/planogram/A1",
                         json={"product_id": None, "price_cents": 0})
    assert emptied.json()["product"] is None and emptied.json()["for_sale"] is False
    assert on_screen(tech, "A1") is None
    entries = audit(settings, "change_slot")
    assert entries[0].before == {"product_id": 1} and entries[0].after == {"product_id": 4}
    assert entries[1].before == {"product_id": 4, "price_cents": 120}
    assert entries[1].after == {"product_id": None, "price_cents": 0}
    refused = tech.post("/api/maintenance/planogram/A1/restock")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "empty_slot"
    assert tech.post("/api/maintenance/planogram/A1/restock",
                     json={"stock": 0}).json()["stock"] == 0


SLOT_REFUSALS = [
    ("A1", {"price_cents": -1}, 422, "invalid_request"),
    ("A1", {"price_cents": 100_001}, 422, "invalid_request"),
    ("A1", {"price_cents": "1.20"}, 422, "invalid_request"),
    ("A1", {"price_cents": None}, 422, "invalid_request"),
    ("A1", {"capacity": -1}, 422, "invalid_request"),
    ("A1", {"capacity": 5}, 409, "stock_above_capacity"),  # it holds 8
    ("A1", {"product_id": 999}, 422, "unknown_product"),
    ("A1", {"fault": "broken"}, 422, "invalid_request"),
    ("A1", {"stock": 3}, 422, "invalid_request"),  # stock is set by restocking
    ("A1", {}, 422, "invalid_request"),
    ("Z9", {"price_cents": 100}, 404, "not_found"),
    ("A-1", {"price_cents": 100}, 422, "invalid_request"),
]


def test_slot_changes_are_validated_and_a_change_to_nothing_records_nothing(
    tech: httpx.Client, settings: Settings, published: list[Event]
) -> None:
    for code, body, status, error in SLOT_REFUSALS:
        answer = tech.patch(f"/api/maintenance/planogram/{code}", json=body)
        assert answer.status_code == status, (code, body, answer.text)
        assert answer.json()["error"]["code"] == error and answer.json()["error"]["message"]
    same = tech.patch("/api/maintenance/planogram/A1", json={"price_cents": 120, "enabled": True})
    assert same.status_code == 200
    assert audit(settings, "change_slot") == [] and catalog_events(published) == []
    assert slot_row(tech, "A1") == {
        "code": "A1", "product": {"id": 1, "name": "Still Water 500 ml", "retired": False},
        "price_cents": 120, "stock": 8, "capacity": 10, "enabled": True, "fault": "",
        "for_sale": True}


# --- restocking -------------------------------------------------------------------------------


def test_restock_a_sold_out_slot_to_full_and_to_a_count(
    tech: httpx.Client, settings: Settings, published: list[Event]
) -> None:
    set_slot(settings, "C3", stock=0)
    shown = on_screen(tech, "C3")
    assert shown is not None and shown["stock_state"] == "sold_out"
    full = tech.post("/api/maintenance/planogram/C3/restock")
    assert full.status_code == 200 and full.json()["stock"] == 8
    shown = on_screen(tech, "C3")
    assert shown is not None and shown["stock_state"] == "available"
    counted = tech.post("/api/maintenance/planogram/C3/restock", json={"stock": 5})
    assert counted.json()["stock"] == 5
    first, second = audit(settings, "restock_slot")
    assert (first.actor, first.target, first.before, first.after) == (
        NAME, "C3", {"stock": 0}, {"stock": 8})
    assert (second.before, second.after) == ({"stock": 8}, {"stock": 5})
    assert catalog_events(published) == [{"slot": "C3", "change": "restock_slot"}] * 2


def test_restock_is_validated(tech: httpx.Client, settings: Settings) -> None:
    for body, status, code in [({"stock": 11}, 422, "above_capacity"),
                               ({"stock": -1}, 422, "invalid_request"),
                               ({"count": 3}, 422, "invalid_request")]:
        answer = tech.post("/api/maintenance/planogram/A1/restock", json=body)
        assert answer.status_code == status and answer.json()["error"]["code"] == code, body
    missing = tech.post("/api/maintenance/planogram/Z9/restock")
    assert missing.status_code == 404
    assert audit(settings, "restock_slot") == [] and slot_row(tech, "A1")["stock"] == 8


def test_restock_all_fills_every_slot_in_one_audited_round(
    tech: httpx.Client, settings: Settings, published: list[Event]
) -> None:
    set_slot(settings, "C3", stock=0)
    answer = tech.post("/api/maintenance/restock")
    assert answer.status_code == 200
    assert all(slot["stock"] == slot["capacity"] for slot in answer.json()["slots"])
    assert all(slot["stock_state"] == "available"
               for slot in tech.get("/api/catalog").json()["slots"])
    entry = audit(settings, "restock_all")[-1]
    assert entry.actor == NAME
    assert entry.before == {"A1": 8, "A2": 8, "A3": 6, "A4": 8, "B1": 6, "B2": 6, "B3": 5,
                            "B4": 6, "C1": 6, "C2": 6, "C3": 0, "C4": 3}
    assert entry.after == {"A1": 10, "A2": 10, "A3": 8, "A4": 10, "B1": 8, "B2": 8, "B3": 8,
                           "B4": 8, "C1": 8, "C2": 8, "C3": 8, "C4": 5}
    assert catalog_events(published)[-1]["change"] == "restock_all"


def test_a_catalog_event_reaches_the_touchscreens_event_stream(
    tech: httpx.Client, kiosk: RunningKiosk
) -> None:
    with httpx.Client(base_url=kiosk.url, timeout=10) as screen, \
            screen.stream("GET", "/api/events") as stream:
        lines = stream.iter_lines()
        assert next(lines) == "event: service"  # the snapshot is there: the screen listens
        assert tech.post("/api/maintenance/planogram/A2/restock").status_code == 200
        for line in lines:
            if line == "event: catalog":
                assert next(lines) == 'data: {"slot":"A2","change":"restock_slot"}'
                break


# --- products ---------------------------------------------------------------------------------


def test_add_and_list_products(tech: httpx.Client, settings: Settings,
                               published: list[Event]) -> None:
    added = tech.post("/api/maintenance/products", json={
        "name": "  Green Tea 330 ml ", "description": "Unsweetened", "image": "img/tea.png"})
    assert added.status_code == 201
    product = added.json()
    assert product["name"] == "Green Tea 330 ml" and product["slots"] == []
    assert product["retired"] is False and product["id"] == 13
    listed = tech.get("/api/maintenance/products").json()["products"]
    assert [p["name"] for p in listed][:2] == ["Cola 330 ml", "Dark Chocolate Bar"]
    assert next(p for p in listed if p["id"] == 4)["slots"] == ["A4"]
    assert product in listed and len(listed) == 13
    entry = audit(settings, "add_product")[-1]
    assert (entry.actor, entry.target, entry.before) == (NAME, "product 13", None)
    assert entry.after == {"name": "Green Tea 330 ml", "description": "Unsweetened",
                           "image": "img/tea.png"}
    assert catalog_events(published) == [{"product": 13, "change": "add_product"}]


def test_renaming_a_product_shows_on_the_touchscreen_and_is_audited(
    tech: httpx.Client, settings: Settings
) -> None:
    renamed = tech.patch("/api/maintenance/products/1",
                         json={"name": "Still Water 0.5 l", "description": "Spring water"})
    assert renamed.status_code == 200 and renamed.json()["slots"] == ["A1"]
    shown = on_screen(tech, "A1")
    assert shown is not None and shown["product"]["name"] == "Still Water 0.5 l"
    entry = audit(settings, "change_product")[-1]
    assert entry.target == "product 1"
    assert (entry.before, entry.after) == ({"name": "Still Water 500 ml"},
                                           {"name": "Still Water 0.5 l"})


PRODUCT_REFUSALS: list[dict[str, Any]] = [
    {"name": ""}, {"name": "   "}, {"name": "x" * 81}, {"name": "Tea\u0007"},
    {"name": "Tea", "description": "d" * 401}, {"name": "Tea", "image": "../secret.png"},
    {"name": "Tea", "image": "https://tracker.example/t.png"}, {"name": "Tea", "image": "a.exe"},
    {"name": "Tea", "image": "/etc/passwd.png"}, {"name": "Tea", "price_cents": 100},
    {"name": None}, {"description": "no name"},
]


def test_products_are_validated(tech: httpx.Client, settings: Settings) -> None:
    for body in PRODUCT_REFUSALS:
        added = tech.post("/api/maintenance/products", json=body)
        assert added.status_code == 422, body
        assert added.json()["error"]["code"] == "invalid_request"
        if "name" in body:
            assert tech.patch("/api/maintenance/products/1", json=body).status_code == 422, body
    assert tech.patch("/api/maintenance/products/1", json={}).status_code == 422
    for answer in (tech.patch("/api/maintenance/products/999", json={"name": "x"}),
                   tech.post("/api/maintenance/products/999/retire")):
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
    assert audit(settings, "add_product") == audit(settings, "change_product") == []
    assert len(tech.get("/api/maintenance/products").json()["products"]) == 12


def test_retiring_a_product_takes_its_slot_out_of_sale(
    tech: httpx.Client, settings: Settings, published: list[Event]
) -> None:
    retired = tech.post("/api/maintenance/products/2/retire")
    assert retired.status_code == 200 and retired.json()["retired"] is True
    assert on_screen(tech, "A2") is None
    row = slot_row(tech, "A2")
    assert row["product"]["retired"] is True and row["for_sale"] is False
    refused = tech.post("/api/sales", json={"slot": "A2", "method": "card"})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "slot_unavailable"
    names = [p["name"] for p in tech.get("/api/maintenance/products").json()["products"]]
    assert "Sparkling Water 500 ml" not in names
    everything = tech.get("/api/maintenance/products", params={"retired": "true"}).json()
    assert any(p["id"] == 2 and p["retired"] for p in everything["products"])
    again = tech.post("/api/maintenance/products/2/retire")
    assert again.status_code == 200 and again.json()["retired"] is True
    (entry,) = audit(settings, "retire_product")
    assert (entry.actor, entry.target) == (NAME, "product 2")
    assert (entry.before, entry.after) == ({"retired": False}, {"retired": True,
                                                                 "slots": ["A2"]})
    assert catalog_events(published) == [{"product": 2, "change": "retire_product"}]


def test_a_retired_product_goes_into_no_slot_and_is_not_edited(tech: httpx.Client) -> None:
    tech.post("/api/maintenance/products/2/retire")
    into = tech.patch("/api/maintenance/planogram/A1", json={"product_id": 2})
    assert into.status_code == 409 and into.json()["error"]["code"] == "product_retired"
    edit = tech.patch("/api/maintenance/products/2", json={"name": "Back again"})
    assert edit.status_code == 409 and edit.json()["error"]["code"] == "product_retired"
    assert slot_row(tech, "A1")["product"]["id"] == 1

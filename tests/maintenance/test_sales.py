"""Sales: the filtered list, a sale's story, resolving a review (with the money), the CSV export."""

from __future__ import annotations

import csv
import gc
import io
import sqlite3
import time
import tracemalloc
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from drivers.base import DeviceTimeout
from kiosk.api.maintenance import sales as sales_api
from kiosk.config import Settings
from kiosk.db import Database
from kiosk.ledger import Ledger, debit
from kiosk.states import PaymentMethod, SaleState
from tests.conftest import Doubles
from tests.maintenance.conftest import NAME, audit

S = SaleState
BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
STATES = [S.COMPLETED, S.VOIDED, S.CANCELLED, S.DECLINED, S.NEEDS_REVIEW]
SLOTS = ["A1", "A2", "A3", "A4"]
ALICE = 1  # the demo member with 20.00, whose finger the fingerprint double matches
INSERT = (
    "INSERT INTO sale (id, slot_code, product_name, price_cents, method, state, "
    "reader_reference, member_id, reason, created_at, updated_at, resolution, resolution_note, "
    "resolved_by, resolved_at) VALUES (?, ?, ?, ?, ?, ?, '', NULL, ?, ?, ?, '', '', '', NULL)"
)


def stored(at: datetime) -> str:
    """A time as SQLAlchemy keeps it in SQLite: naive UTC text."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def insert_sales(database: Path, rows: Iterable[tuple[Any, ...]]) -> None:
    """Sales written straight into the file, thousands a second (what years of selling leave)."""
    connection = sqlite3.connect(database)
    with connection:
        connection.executemany(INSERT, rows)
    connection.close()


def history(count: int) -> list[dict[str, Any]]:
    """``count`` ended sales a minute apart, every state, method and slot mixed; three share a
    time, so that pages must break ties."""
    sales = []
    for i in range(count):
        at = BASE + timedelta(minutes=10 if i in (10, 11, 12) else i)
        sales.append({
            "id": str(uuid.UUID(int=i + 1)), "slot": SLOTS[i % 4], "product": f"Product {i}",
            "price_cents": 100 + i, "method": "card" if i % 2 == 0 else "account",
            "state": STATES[i % 5].value, "reason": "" if i % 3 else "because, \"quoted\"",
            "created_at": at,
        })
    return sales


def as_rows(sales: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(s["id"], s["slot"], s["product"], s["price_cents"], s["method"], s["state"],
             s["reason"], stored(s["created_at"]), stored(s["created_at"])) for s in sales]


def newest_first(sales: list[dict[str, Any]]) -> list[str]:
    return [s["id"] for s in sorted(sales, key=lambda s: (s["created_at"], s["id"]),
                                    reverse=True)]


def walk(client: httpx.Client, limit: int, **filters: Any) -> tuple[list[str], int]:
    """Every page of the list; returns the ids in order and how many pages it took."""
    ids: list[str] = []
    pages = 0
    cursor = None
    while True:
        params = {**filters, "limit": limit, **({"cursor": cursor} if cursor else {})}
        answer = client.get("/api/maintenance/sales", params=params)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        pages += 1
        ids += [sale["id"] for sale in page["sales"]]
        assert len(page["sales"]) <= limit
        cursor = page["next_cursor"]
        if cursor is None:
            return ids, pages




def balance(settings: Settings, member: int = ALICE) -> int:
    database = Database(settings.database)
    try:
        return Ledger(database).balance(member)
    finally:
        database.dispose()


def sale_ending(settings: Settings, method: PaymentMethod, path: list[SaleState],
                **move: Any) -> str:
    """A sale walked through ``path`` by the ledger, as the engine or recovery would leave it."""
    database = Database(settings.database)
    ledger = Ledger(database)
    sale = ledger.open_sale("A1", method)
    for state in path:
        effect = debit(ALICE) if state is S.AUTHORIZED and method is PaymentMethod.ACCOUNT \
            else None
        ledger.move(sale.id, state, effect=effect, **(move if state is path[-1] else {}))
    database.dispose()
    return sale.id


UNSETTLED = [S.AUTHORIZING, S.AUTHORIZED, S.DISPENSING, S.NEEDS_REVIEW]


def account_sale_with_unknown_outcome(tech: httpx.Client, doubles: Doubles) -> str:
    """Alice pays with her finger and the mechanism stops answering mid-vend: the engine
    credits her back, flags the slot and leaves the sale for a technician."""
    doubles.vending.error = DeviceTimeout("vending", "no answer from the motor controller")
    started = tech.post("/api/sales", json={"slot": "A1", "method": "account"})
    assert started.status_code == 201, started.text
    sale_id: str = started.json()["id"]
    deadline = time.monotonic() + 10
    while not tech.get(f"/api/sales/{sale_id}").json()["terminal"]:
        assert time.monotonic() < deadline, "the sale did not end"
        time.sleep(0.02)
    assert tech.get(f"/api/sales/{sale_id}").json()["state"] == "needs_review"
    return sale_id


def resolve(client: httpx.Client, sale_id: str, resolution: str,
            note: str = "counted the spiral") -> httpx.Response:
    return client.post(f"/api/maintenance/sales/{sale_id}/resolve",
                       json={"resolution": resolution, "note": note})


# --- access -----------------------------------------------------------------------------------


def test_sales_routes_want_a_login_and_the_resolution_a_csrf_token(
    anonymous: httpx.Client, tech: httpx.Client, settings: Settings
) -> None:
    sale_id = sale_ending(settings, PaymentMethod.CARD, UNSETTLED)
    for method, path in [("GET", "/api/maintenance/sales"), ("GET", "/api/maintenance/sales.csv"),
                         ("GET", f"/api/maintenance/sales/{sale_id}"),
                         ("POST", f"/api/maintenance/sales/{sale_id}/resolve")]:
        answer = anonymous.request(method, path, json={"resolution": "refunded", "note": "x"}
                                   if method == "POST" else None)
        assert answer.status_code == 401, path
        assert answer.json()["error"]["code"] == "login_required"
    for token in ("", "forged"):
        refused = tech.post(f"/api/maintenance/sales/{sale_id}/resolve",
                            json={"resolution": "refunded", "note": "x"},
                            headers={"X-CSRF-Token": token})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf"
    assert tech.get(f"/api/maintenance/sales/{sale_id}").json()["sale"]["resolution"] == ""
    assert audit(settings, "resolve_sale") == []


# --- the list ---------------------------------------------------------------------------------


def test_pages_cover_every_sale_once_newest_first(tech: httpx.Client,
                                                   settings: Settings) -> None:
    sales = history(30)
    insert_sales(settings.database, as_rows(sales))
    ids, pages = walk(tech, limit=7)
    assert ids == newest_first(sales) and pages == 5
    first = tech.get("/api/maintenance/sales", params={"limit": 1}).json()["sales"][0]
    newest = sales[-1]
    assert first == {
        "id": newest["id"], "created_at": "2026-03-01T12:29:00Z",
        "updated_at": "2026-03-01T12:29:00Z", "slot": "A2", "product": "Product 29",
        "price_cents": 129, "method": "account", "state": "needs_review", "terminal": True,
        "reason": "", "member_id": None, "reader_reference": "", "resolution": "",
        "resolution_note": "", "resolved_by": "", "resolved_at": None, "awaiting_review": True,
    }
    everything = tech.get("/api/maintenance/sales", params={"limit": 200}).json()
    assert len(everything["sales"]) == 30 and everything["next_cursor"] is None
    # A page size that cuts through the three sales made in the same instant still sees each.
    assert walk(tech, limit=2)[0] == newest_first(sales)


def test_each_filter_selects_its_sales(tech: httpx.Client, settings: Settings) -> None:
    sales = history(40)
    insert_sales(settings.database, as_rows(sales))

    def expect(keep: Any) -> list[str]:
        return newest_first([s for s in sales if keep(s)])

    since, until = BASE + timedelta(minutes=5), BASE + timedelta(minutes=15)
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"from": "2026-03-01T12:05:00Z", "to": "2026-03-01T12:15:00Z"},
         expect(lambda s: since <= s["created_at"] < until)),
        ({"from": "2026-03-01T13:05:00+01:00"},  # the same instant as 12:05 UTC
         expect(lambda s: since <= s["created_at"])),
        ({"to": "2026-03-01T12:15:00Z"}, expect(lambda s: s["created_at"] < until)),
        ({"state": "voided"}, expect(lambda s: s["state"] == "voided")),
        ({"state": ["voided", "needs_review"]},
         expect(lambda s: s["state"] in ("voided", "needs_review"))),
        ({"method": "account"}, expect(lambda s: s["method"] == "account")),
        ({"slot": "a2"}, expect(lambda s: s["slot"] == "A2")),
        ({"slot": "A3", "method": "card", "state": "cancelled"},
         expect(lambda s: (s["slot"], s["method"], s["state"]) == ("A3", "card", "cancelled"))),
        ({"state": "needs_review", "resolved": "false"},
         expect(lambda s: s["state"] == "needs_review")),
        ({"resolved": "true"}, []),
    ]
    for filters, expected in cases:
        assert expected or filters == {"resolved": "true"}
        assert walk(tech, limit=4, **filters)[0] == expected, filters


def test_list_queries_are_validated(tech: httpx.Client) -> None:
    for params in [{"limit": 0}, {"limit": 201}, {"limit": "many"},
                   {"from": "2026-03-01T12:00:00"},  # no time zone: which noon?
                   {"from": "yesterday"},
                   {"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"},
                   {"state": "lost"}, {"method": "cash"}, {"slot": "A-1"}, {"colour": "red"}]:
        answer = tech.get("/api/maintenance/sales", params=params)
        assert answer.status_code == 422, params
        assert answer.json()["error"]["code"] == "invalid_request"
    for cursor in ("not a cursor", "bm90IGEgY3Vyc29y"):
        answer = tech.get("/api/maintenance/sales", params={"cursor": cursor})
        assert answer.status_code == 422 and answer.json()["error"]["code"] == "bad_cursor"
    assert tech.get("/api/maintenance/sales", params={"limit": 200}).status_code == 200
    missing = tech.get("/api/maintenance/sales/no-such-sale")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


# --- one sale and its resolution ---------------------------------------------------------------


def test_detail_tells_the_whole_story_of_a_sale(tech: httpx.Client, doubles: Doubles) -> None:
    sale_id = account_sale_with_unknown_outcome(tech, doubles)
    detail = tech.get(f"/api/maintenance/sales/{sale_id}").json()
    assert detail["sale"]["state"] == "needs_review" and detail["sale"]["awaiting_review"]
    assert detail["sale"]["member_id"] == ALICE
    assert detail["member"] == {"id": ALICE, "name": "Alice Demo"}
    assert [(e["from_state"], e["to_state"]) for e in detail["events"]] == [
        (None, "created"), ("created", "authorizing"), ("authorizing", "authorized"),
        ("authorized", "dispensing"), ("dispensing", "needs_review")]
    assert detail["events"][0]["detail"] == {"slot": "A1", "method": "account"}
    assert [e["amount_cents"] for e in detail["account_entries"]] == [-120, 120]
    assert detail["account_net_cents"] == 0


def test_delivered_account_sale_is_debited_again_exactly_once(
    tech: httpx.Client, doubles: Doubles, settings: Settings
) -> None:
    sale_id = account_sale_with_unknown_outcome(tech, doubles)
    assert balance(settings) == 2000  # the engine credited the unknown vend back
    answer = resolve(tech, sale_id, "delivered", "  customer took it; stock was 7 not 8 ")
    assert answer.status_code == 200, answer.text
    detail = answer.json()
    assert balance(settings) == 1880
    assert [e["amount_cents"] for e in detail["account_entries"]] == [-120, 120, -120]
    assert detail["account_net_cents"] == -120
    sale = detail["sale"]
    assert sale["state"] == "needs_review" and sale["terminal"] and not sale["awaiting_review"]
    assert (sale["resolution"], sale["resolution_note"], sale["resolved_by"]) == (
        "delivered", "customer took it; stock was 7 not 8", NAME)
    assert sale["resolved_at"] is not None
    last = detail["events"][-1]
    assert (last["from_state"], last["to_state"]) == ("needs_review", "needs_review")
    assert last["detail"]["resolution"] == "delivered" and last["detail"]["by"] == NAME
    assert last["detail"]["note"] == "customer took it; stock was 7 not 8"
    assert last["detail"]["account_cents"] == -120
    (entry,) = audit(settings, "resolve_sale")
    assert (entry.actor, entry.target) == (NAME, f"sale {sale_id}")
    assert entry.before == {"state": "needs_review", "resolution": "", "account_net_cents": 0}
    assert entry.after == {"state": "needs_review", "resolution": "delivered",
                           "note": "customer took it; stock was 7 not 8",
                           "account_net_cents": -120}
    for again in ("delivered", "refunded"):
        refused = resolve(tech, sale_id, again)
        assert refused.status_code == 409 and refused.json()["error"]["code"] == \
            "already_resolved"
        assert NAME in refused.json()["error"]["message"]
    assert balance(settings) == 1880 and len(audit(settings, "resolve_sale")) == 1
    reviews = tech.get("/api/maintenance/sales",
                       params={"state": "needs_review", "resolved": "false"}).json()
    assert reviews["sales"] == []


def test_a_standing_debit_is_refunded_or_kept(tech: httpx.Client, settings: Settings) -> None:
    # Recovery could not settle these: Alice's debit still stands on each.
    refund = sale_ending(settings, PaymentMethod.ACCOUNT, UNSETTLED,
                         reason="could not be settled automatically")
    assert balance(settings) == 1880
    answer = resolve(tech, refund, "refunded", "spiral was empty")
    assert answer.status_code == 200
    assert balance(settings) == 2000
    detail = answer.json()
    assert [e["amount_cents"] for e in detail["account_entries"]] == [-120, 120]
    assert detail["events"][-1]["detail"]["money"] == "credited 120 cents back to member 1"
    assert audit(settings, "resolve_sale")[0].after == {
        "state": "needs_review", "resolution": "refunded", "note": "spiral was empty",
        "account_net_cents": 0}
    keep = sale_ending(settings, PaymentMethod.ACCOUNT, UNSETTLED)
    detail = resolve(tech, keep, "delivered").json()
    assert balance(settings) == 1880 and detail["account_net_cents"] == -120
    assert detail["events"][-1]["detail"]["money"] == "the debit stands"


def test_card_sale_resolution_is_recorded_for_the_card_provider(tech: httpx.Client,
                                                                 settings: Settings) -> None:
    sale_id = sale_ending(settings, PaymentMethod.CARD, UNSETTLED)
    detail = resolve(tech, sale_id, "refunded", "refunded at the provider's portal").json()
    assert detail["sale"]["resolution"] == "refunded" and detail["account_entries"] == []
    assert "card provider" in detail["events"][-1]["detail"]["money"]
    assert balance(settings) == 2000


def test_two_technicians_resolving_at_once_give_one_verdict(tech: httpx.Client,
                                                            settings: Settings) -> None:
    sale_id = sale_ending(settings, PaymentMethod.ACCOUNT, UNSETTLED)
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda r: resolve(tech, sale_id, r).status_code,
                                ["refunded", "delivered", "refunded", "delivered"]))
    assert sorted(answers) == [200, 409, 409, 409]
    verdict = tech.get(f"/api/maintenance/sales/{sale_id}").json()["sale"]["resolution"]
    assert balance(settings) == (2000 if verdict == "refunded" else 1880)


def test_only_a_sale_under_review_is_resolved_and_only_with_a_note(
    tech: httpx.Client, settings: Settings
) -> None:
    completed = sale_ending(settings, PaymentMethod.CARD,
                            [S.AUTHORIZING, S.AUTHORIZED, S.DISPENSING, S.DISPENSED,
                             S.COMPLETED])
    refused = resolve(tech, completed, "refunded")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "not_under_review"
    missing = resolve(tech, "no-such-sale", "refunded")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    review = sale_ending(settings, PaymentMethod.CARD, UNSETTLED)
    for body in [{"resolution": "refunded"}, {"resolution": "refunded", "note": "   "},
                 {"resolution": "lost", "note": "x"}, {"note": "x"},
                 {"resolution": "refunded", "note": "x" * 401},
                 {"resolution": "refunded", "note": "x", "amount_cents": 5}]:
        answer = tech.post(f"/api/maintenance/sales/{review}/resolve", json=body)
        assert answer.status_code == 422, body
        assert answer.json()["error"]["code"] == "invalid_request"
    assert tech.get(f"/api/maintenance/sales/{review}").json()["sale"]["awaiting_review"]
    assert audit(settings, "resolve_sale") == []


def test_the_database_refuses_to_rewrite_a_resolution(tech: httpx.Client,
                                                      settings: Settings) -> None:
    sale_id = sale_ending(settings, PaymentMethod.CARD, UNSETTLED)
    resolve(tech, sale_id, "refunded")
    connection = sqlite3.connect(settings.database, isolation_level=None)  # no open transaction
    with pytest.raises(sqlite3.IntegrityError, match="resolved once"):
        connection.execute("UPDATE sale SET resolution = 'delivered' WHERE id = ?", (sale_id,))
    completed = sale_ending(settings, PaymentMethod.CARD,
                            [S.AUTHORIZING, S.AUTHORIZED, S.DISPENSING, S.DISPENSED,
                             S.COMPLETED])
    with pytest.raises(sqlite3.IntegrityError, match="sale_resolution_known"):
        connection.execute("UPDATE sale SET resolution = 'refunded' WHERE id = ?", (completed,))
    connection.close()


# --- the CSV export ---------------------------------------------------------------------------


def test_csv_export_has_the_filtered_sales_oldest_first(
    tech: httpx.Client, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sales_api, "EXPORT_BATCH", 4)  # batches that split the same-time trio
    sales = history(20)
    sales[4]["product"] = "=HYPERLINK(\"http://evil.example\")"
    insert_sales(settings.database, as_rows(sales))
    review = sale_ending(settings, PaymentMethod.CARD, UNSETTLED)
    resolve(tech, review, "refunded", "at the provider")
    answer = tech.get("/api/maintenance/sales.csv", params={"state": "needs_review"})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert answer.headers["content-disposition"].startswith('attachment; filename="sales-')
    table = list(csv.reader(io.StringIO(answer.text)))
    assert table[0] == ["id", "created_at", "slot", "product", "price_cents", "method", "state",
                        "reason", "resolution"]
    expected = [s for s in sales if s["state"] == "needs_review"]
    assert [row[0] for row in table[1:]] == [s["id"] for s in expected] + [review]
    assert table[1] == [expected[0]["id"], "2026-03-01T12:04:00+00:00", "A1",
                        "'=HYPERLINK(\"http://evil.example\")", "104", "card", "needs_review",
                        "", ""]
    assert table[-1][6:] == ["needs_review", "", "refunded"]
    assert any(row[7] == 'because, "quoted"' for row in table[1:])
    every = tech.get("/api/maintenance/sales.csv", params={"slot": "a1", "method": "card"})
    assert len(list(csv.reader(io.StringIO(every.text)))) == 1 + 5 + 1  # header, history, ours
    whole = list(csv.reader(io.StringIO(tech.get("/api/maintenance/sales.csv").text)))
    assert [row[0] for row in whole[1:]] == [*newest_first(sales)[::-1], review]
    bad = tech.get("/api/maintenance/sales.csv", params={"from": "2026-03-01"})
    assert bad.status_code == 422


def export_peak(client: httpx.Client) -> tuple[int, int]:
    """Lines of the export and the peak of Python memory (server thread included) meanwhile."""
    gc.collect()
    tracemalloc.start()
    lines = 0
    try:
        with client.stream("GET", "/api/maintenance/sales.csv") as answer:
            assert answer.status_code == 200
            for chunk in answer.iter_bytes():
                lines += chunk.count(b"\n")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return lines, peak


def generated(start: int, count: int) -> Iterable[tuple[Any, ...]]:
    """Ended sales a second apart, made quickly (ids and times formatted by hand)."""
    base = BASE.replace(tzinfo=None)
    for i in range(start, start + count):
        at = f"{base + timedelta(seconds=i)}.000000"
        yield (f"00000000-0000-4000-8000-{i:012x}", SLOTS[i % 4], f"Product {i % 12}",
               100 + i % 500, "card" if i % 2 else "account", STATES[i % 5].value, "", at, at)


def test_csv_export_of_100000_sales_runs_in_flat_memory(tech: httpx.Client,
                                                        settings: Settings) -> None:
    insert_sales(settings.database, generated(0, 10_000))
    small_lines, small_peak = export_peak(tech)
    insert_sales(settings.database, generated(10_000, 90_000))
    large_lines, large_peak = export_peak(tech)
    assert (small_lines, large_lines) == (10_001, 100_001)
    print(f"export peak: {small_peak / 1e6:.2f} MB for 10,000 sales, "
          f"{large_peak / 1e6:.2f} MB for 100,000")
    assert large_peak < 20_000_000
    # Ten times the rows must not take anywhere near ten times the memory.
    assert large_peak < 2 * small_peak


PLANNED_FILTERS: list[dict[str, Any]] = [
    {}, {"state": ["needs_review"], "resolved": False}, {"state": ["voided", "needs_review"]},
    {"method": "account"}, {"slot": "B2", "method": "account"}, {"resolved": True},
    {"state": ["voided"], "slot": "C1", "to": "2024-07-01T00:00:00Z"},
    {"from": "2024-09-01T00:00:00Z", "to": "2024-10-01T00:00:00Z", "method": "account"},
    {"state": ["declined"], "cursor": sales_api._cursor(sales_api.Sale(
        id=str(uuid.UUID(int=7)), slot_code="A1", product_name="x", price_cents=1,
        method=PaymentMethod.CARD, created_at=BASE))},
]


@pytest.mark.parametrize("filters", PLANNED_FILTERS, ids=lambda f: "&".join(f) or "all")
def test_every_sale_list_page_is_read_along_an_index_with_its_filters(
    database: Database, filters: dict[str, Any]
) -> None:
    """With a million sales a page stays quick only if SQLite walks an index in time order and
    tests the filters in it: no scan of the sales, no sort of every match (see migration 0005)."""
    statement = sales_api.page_statement(sales_api.SalePageQuery.model_validate(filters))
    with database.engine.connect() as connection:
        sql = str(statement.compile(connection, compile_kwargs={"literal_binds": True}))
        plan = [row[3] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]
    reads = [step for step in plan if step.startswith(("SCAN", "SEARCH"))]
    assert len(reads) == 1 and "USING INDEX ix_sale_" in reads[0], plan
    assert reads[0].endswith("_filters") or "_filters (" in reads[0], plan
    assert "USE TEMP B-TREE FOR ORDER BY" not in plan, plan  # a sort of every match

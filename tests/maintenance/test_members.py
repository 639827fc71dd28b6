"""Members and fingerprints: accounts, exact balances, audit, and enrolment on a real simulator."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import httpx
import pytest
from sqlmodel import select

from drivers.base import Device, DeviceKind
from kiosk.config import Settings
from kiosk.db import Database
from kiosk.machine import Machine
from kiosk.models import AccountEntry
from simulators.fingerprint import FingerprintSimulator
from tests.api.conftest import RunningKiosk
from tests.conftest import Doubles
from tests.doubles import FakeCard, FakeVending, OfflineFingerprint
from tests.maintenance.conftest import NAME, SECRET, audit

MEMBERS = "/api/maintenance/members"
ALICE, BOB = 1, 2  # the demo members: 20.00 and 1.50, fingers on pages 1 and 2

#: Every members route, with a body that would be valid.
ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", MEMBERS, None),
    ("POST", MEMBERS, {"name": "Carol"}),
    ("GET", f"{MEMBERS}/1", None),
    ("PATCH", f"{MEMBERS}/1", {"name": "Alice"}),
    ("POST", f"{MEMBERS}/1/balance", {"kind": "top_up", "amount_cents": 100, "reason": "cash"}),
    ("POST", f"{MEMBERS}/1/enrolment", {"consent": True}),
    ("GET", f"{MEMBERS}/1/enrolment", None),
    ("DELETE", f"{MEMBERS}/1/enrolment", None),
    ("DELETE", f"{MEMBERS}/1/fingerprint", None),
]




def ledger_balance(settings: Settings, member_id: int) -> int:
    database = Database(settings.database)
    with database.session() as session:
        entries = session.exec(select(AccountEntry).where(AccountEntry.member_id == member_id))
        total = sum(entry.amount_cents for entry in entries)
    database.dispose()
    return total


def until(what: Callable[[], Any], seconds: float = 10.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = what()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("waited too long")
        time.sleep(0.02)


def add_member(tech: httpx.Client, name: str = "Carol") -> dict[str, Any]:
    answer = tech.post(MEMBERS, json={"name": name})
    assert answer.status_code == 201, answer.text
    return cast(dict[str, Any], answer.json())


# --- access ----------------------------------------------------------------------------------


BAD_MEMBERS: list[dict[str, Any]] = [
    {"name": ""},
    {"name": "   "},
    {"name": "x" * 81},
    {"name": "Carol", "balance": 5},
    {},
]

BAD_BALANCE_CHANGES: list[dict[str, Any]] = [
    {"kind": "top_up", "amount_cents": -100, "reason": "oops"},
    {"kind": "top_up", "amount_cents": 0, "reason": "nothing"},
    {"kind": "correction", "amount_cents": 0, "reason": "nothing"},
    {"kind": "top_up", "amount_cents": 100, "reason": ""},
    {"kind": "top_up", "amount_cents": 100, "reason": "  "},
    {"kind": "top_up", "amount_cents": 100},
    {"kind": "gift", "amount_cents": 100, "reason": "why not"},
    {"kind": "top_up", "amount_cents": 1.5, "reason": "half a cent"},
    {"kind": "top_up", "amount_cents": 10_000_000, "reason": "typo"},
]


def test_every_members_route_wants_a_login(anonymous: httpx.Client) -> None:
    for method, path, body in ROUTES:
        answer = anonymous.request(method, path, json=body)
        assert answer.status_code == 401, (method, path)
        assert answer.json()["error"]["code"] == "login_required"


def test_members_changes_without_csrf_token_are_refused(tech: httpx.Client,
                                                        settings: Settings) -> None:
    for method, path, body in ROUTES:
        if method == "GET":
            continue
        answer = tech.request(method, path, json=body, headers={"X-CSRF-Token": ""})
        assert answer.status_code == 403, (method, path)
        assert answer.json()["error"]["code"] == "csrf"
    assert ledger_balance(settings, ALICE) == 2000
    assert [m["name"] for m in tech.get(MEMBERS).json()] == ["Alice Demo", "Bob Demo"]


def test_bad_member_is_refused_in_the_error_shape(tech: httpx.Client) -> None:
    for body in BAD_MEMBERS:
        answer = tech.post(MEMBERS, json=body)
        assert answer.status_code == 422, body
        assert set(answer.json()) == {"error"}
        assert answer.json()["error"]["code"] == "invalid_request"
        assert answer.json()["error"]["message"]
    assert len(tech.get(MEMBERS).json()) == 2


def test_bad_balance_change_is_refused_and_changes_nothing(tech: httpx.Client,
                                                           settings: Settings) -> None:
    for body in BAD_BALANCE_CHANGES:
        answer = tech.post(f"{MEMBERS}/{ALICE}/balance", json=body)
        assert answer.status_code == 422, body
        assert answer.json()["error"]["code"] == "invalid_request"
    assert ledger_balance(settings, ALICE) == 2000
    assert audit(settings, "balance_top_up") == audit(settings, "balance_correction") == []


def test_unknown_member_is_404(tech: httpx.Client) -> None:
    for method, path, body in ROUTES[2:]:
        answer = tech.request(method, path.replace("/1", "/999"), json=body)
        assert answer.status_code == 404, (method, path)
        assert answer.json()["error"]["code"] == "not_found"


# --- members and balances ----------------------------------------------------------------------


def test_members_list_with_balance_and_fingerprint(tech: httpx.Client) -> None:
    carol = add_member(tech)
    listed = {m["name"]: m for m in tech.get(MEMBERS).json()}
    assert listed["Alice Demo"]["balance_cents"] == 2000
    assert listed["Bob Demo"]["balance_cents"] == 150
    assert listed["Alice Demo"]["fingerprint"] is True
    assert listed["Alice Demo"]["fingerprint_page"] == 1
    assert listed["Carol"] == {**carol, "balance_cents": 0, "fingerprint": False}
    assert carol["active"] is True and carol["consent_at"] is None


def test_adding_a_member_is_audited(tech: httpx.Client, settings: Settings) -> None:
    carol = add_member(tech, "  Carol  ")
    assert carol["name"] == "Carol"
    entry = audit(settings, "member_add")[-1]
    assert (entry.actor, entry.target) == (NAME, f"member {carol['id']}")
    assert entry.before is None and entry.after == {"name": "Carol", "active": True}


def test_renaming_deactivating_and_reactivating_are_audited(
    tech: httpx.Client, settings: Settings
) -> None:
    renamed = tech.patch(f"{MEMBERS}/{BOB}", json={"name": "Robert"}).json()
    assert renamed["name"] == "Robert" and renamed["balance_cents"] == 150
    assert tech.patch(f"{MEMBERS}/{BOB}", json={"active": False}).json()["active"] is False
    assert tech.patch(f"{MEMBERS}/{BOB}", json={"active": True}).json()["active"] is True
    assert tech.patch(f"{MEMBERS}/{BOB}", json={"name": "Robert"}).status_code == 200
    edit = audit(settings, "member_edit")
    assert [(e.before, e.after) for e in edit] == [({"name": "Bob Demo"}, {"name": "Robert"})]
    off, on = audit(settings, "member_deactivate"), audit(settings, "member_reactivate")
    assert (off[0].before, off[0].after) == ({"active": True}, {"active": False})
    assert (on[0].before, on[0].after) == ({"active": False}, {"active": True})
    active = [m["name"] for m in tech.get(MEMBERS, params={"include_inactive": False}).json()]
    assert "Robert" in active


def test_deactivated_member_is_left_out_when_asked(tech: httpx.Client) -> None:
    tech.patch(f"{MEMBERS}/{BOB}", json={"active": False})
    names = [m["name"] for m in tech.get(MEMBERS, params={"include_inactive": False}).json()]
    assert names == ["Alice Demo"]


def test_top_up_adds_an_entry_with_the_reason(tech: httpx.Client, settings: Settings) -> None:
    answer = tech.post(f"{MEMBERS}/{BOB}/balance",
                       json={"kind": "top_up", "amount_cents": 1005, "reason": " cash at desk "})
    assert answer.status_code == 201
    result = answer.json()
    assert result["member"]["balance_cents"] == 1155
    assert result["entry"]["amount_cents"] == 1005
    assert result["entry"]["reason"] == f"top-up by {NAME}: cash at desk"
    assert ledger_balance(settings, BOB) == 1155
    entry = audit(settings, "balance_top_up")[-1]
    assert entry.target == f"member {BOB}"
    assert entry.before == {"balance_cents": 150}
    assert entry.after == {"balance_cents": 1155, "amount_cents": 1005,
                           "reason": "cash at desk", "forced": False}
    detail = tech.get(f"{MEMBERS}/{BOB}").json()
    assert detail["balance_cents"] == 1155
    assert [e["amount_cents"] for e in detail["entries"]] == [1005, 150]


def test_correction_below_zero_is_refused_unless_forced(
    tech: httpx.Client, settings: Settings
) -> None:
    down = tech.post(f"{MEMBERS}/{BOB}/balance",
                     json={"kind": "correction", "amount_cents": -100, "reason": "double top-up"})
    assert down.status_code == 201 and down.json()["member"]["balance_cents"] == 50
    refused = tech.post(f"{MEMBERS}/{BOB}/balance",
                        json={"kind": "correction", "amount_cents": -51, "reason": "snack"})
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "negative_balance"
    assert "from 50 to -1 cents" in refused.json()["error"]["message"]
    assert ledger_balance(settings, BOB) == 50
    forced = tech.post(f"{MEMBERS}/{BOB}/balance",
                       json={"kind": "correction", "amount_cents": -51, "reason": "snack",
                             "force": True})
    assert forced.status_code == 201 and forced.json()["member"]["balance_cents"] == -1
    assert ledger_balance(settings, BOB) == -1
    corrections = audit(settings, "balance_correction")
    assert [(e.before, e.after["balance_cents"], e.after["forced"])  # type: ignore[index]
            for e in corrections] == [({"balance_cents": 150}, 50, False),
                                      ({"balance_cents": 50}, -1, True)]
    up = tech.post(f"{MEMBERS}/{BOB}/balance",
                   json={"kind": "correction", "amount_cents": 1, "reason": "even"})
    assert up.json()["member"]["balance_cents"] == 0


# --- fingerprints with the test doubles --------------------------------------------------------


def test_enrolment_needs_consent(tech: httpx.Client, settings: Settings) -> None:
    carol = add_member(tech)
    for body in ({"consent": False}, {}):
        answer = tech.post(f"{MEMBERS}/{carol['id']}/enrolment", json=body)
        assert answer.status_code == 422, body
    code = tech.post(f"{MEMBERS}/{carol['id']}/enrolment", json={"consent": False}).json()
    assert code["error"]["code"] == "consent_required"
    assert tech.get(f"{MEMBERS}/{carol['id']}").json()["consent_at"] is None
    assert audit(settings, "fingerprint_enrolment_started") == []


def test_enrolment_on_the_doubles_records_consent_and_the_lowest_free_page(
    tech: httpx.Client, settings: Settings, doubles: Doubles
) -> None:
    carol = add_member(tech)
    started = tech.post(f"{MEMBERS}/{carol['id']}/enrolment", json={"consent": True})
    assert started.status_code == 202
    assert started.json()["page"] == 0  # pages 1 and 2 hold the demo fingers
    path = f"{MEMBERS}/{carol['id']}/enrolment"
    done = until(lambda: (job := tech.get(path).json())["state"] != "running" and job)
    assert done["state"] == "succeeded" and done["instruction"] == "fingerprint stored"
    assert 0 in doubles.fingerprint.pages
    member = tech.get(f"{MEMBERS}/{carol['id']}").json()
    assert member["fingerprint"] is True and member["fingerprint_page"] == 0
    assert member["consent_at"] is not None
    begun = audit(settings, "fingerprint_enrolment_started")[-1]
    assert begun.before == {"consent_at": None, "fingerprint_page": None}
    assert begun.after == {"consent_at": member["consent_at"], "page": 0}
    enrolled = audit(settings, "fingerprint_enrolled")[-1]
    assert (enrolled.actor, enrolled.before, enrolled.after) == (
        NAME, {"fingerprint_page": None}, {"fingerprint_page": 0})


def test_enrolment_is_refused_for_an_enrolled_or_inactive_member(tech: httpx.Client) -> None:
    again = tech.post(f"{MEMBERS}/{ALICE}/enrolment", json={"consent": True})
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_enrolled"
    carol = add_member(tech)
    tech.patch(f"{MEMBERS}/{carol['id']}", json={"active": False})
    inactive = tech.post(f"{MEMBERS}/{carol['id']}/enrolment", json={"consent": True})
    assert inactive.status_code == 409
    assert inactive.json()["error"]["code"] == "member_inactive"
    assert tech.get(f"{MEMBERS}/{carol['id']}/enrolment").status_code == 404


def test_enrolment_waits_for_a_running_sale(tech: httpx.Client, anonymous: httpx.Client,
                                            doubles: Doubles) -> None:
    carol = add_member(tech)
    doubles.card.gate.close()
    sale = anonymous.post("/api/sales", json={"slot": "A1", "method": "card"}).json()
    busy = tech.post(f"{MEMBERS}/{carol['id']}/enrolment", json={"consent": True})
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "busy"
    assert tech.get(f"{MEMBERS}/{carol['id']}").json()["consent_at"] is None
    assert anonymous.post(f"/api/sales/{sale['id']}/cancel").json()["state"] == "cancelled"
    after = tech.post(f"{MEMBERS}/{carol['id']}/enrolment", json={"consent": True})
    assert after.status_code == 202


def test_removing_a_fingerprint_erases_it_from_the_reader_first(
    tech: httpx.Client, settings: Settings, doubles: Doubles
) -> None:
    answer = tech.delete(f"{MEMBERS}/{ALICE}/fingerprint")
    assert answer.status_code == 200
    assert answer.json()["fingerprint"] is False and answer.json()["fingerprint_page"] is None
    assert doubles.fingerprint.pages == {2}
    entry = audit(settings, "fingerprint_remove")[-1]
    assert (entry.before, entry.after) == ({"fingerprint_page": 1}, {"fingerprint_page": None})
    twice = tech.delete(f"{MEMBERS}/{ALICE}/fingerprint")
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "no_fingerprint"


@pytest.fixture
def offline_reader_tech(settings: Settings, technician: str) -> Iterator[httpx.Client]:
    doubles = Doubles(FakeVending(), FakeCard(), OfflineFingerprint())
    with RunningKiosk(settings, doubles) as running, \
            httpx.Client(base_url=running.url, timeout=20) as client:
        me = client.post("/api/maintenance/login", json={"name": NAME, "secret": SECRET})
        client.headers["X-CSRF-Token"] = me.json()["csrf_token"]
        yield client


def test_offline_reader_refuses_removal_and_enrolment_with_503(
    offline_reader_tech: httpx.Client, settings: Settings
) -> None:
    tech = offline_reader_tech
    removal = tech.delete(f"{MEMBERS}/{ALICE}/fingerprint")
    assert removal.status_code == 503
    assert removal.json()["error"]["code"] == "reader_unavailable"
    assert "nothing was erased" in removal.json()["error"]["message"]
    assert tech.get(f"{MEMBERS}/{ALICE}").json()["fingerprint_page"] == 1
    carol = add_member(tech)
    enrol = tech.post(f"{MEMBERS}/{carol['id']}/enrolment", json={"consent": True})
    assert enrol.status_code == 503 and enrol.json()["error"]["code"] == "reader_unavailable"
    assert audit(settings, "fingerprint_remove") == []


# --- enrolment through the simulated R30x module -------------------------------------------


class WithSimulatedReader(Doubles):
    """Doubles for the mechanism and the card; the fingerprint reader from its sim:// URL."""

    def as_devices(self) -> dict[DeviceKind, Device]:
        devices = super().as_devices()
        del devices[DeviceKind.FINGERPRINT]
        return devices


@pytest.fixture
def simulated(settings: Settings, technician: str) -> Iterator[RunningKiosk]:
    sim_settings = Settings(database=settings.database, state_dir=settings.state_dir,
                            vending=settings.vending, fingerprint="sim://",
                            payment_timeout=5.0, dispense_timeout=3.0,
                            settle_timeout=2.0)
    doubles = WithSimulatedReader(FakeVending(), FakeCard(), OfflineFingerprint())
    with RunningKiosk(sim_settings, doubles) as running:
        yield running


@pytest.fixture
def sim_tech(simulated: RunningKiosk) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=simulated.url, timeout=20) as client:
        me = client.post("/api/maintenance/login", json={"name": NAME, "secret": SECRET})
        client.headers["X-CSRF-Token"] = me.json()["csrf_token"]
        yield client


def reader_of(kiosk: RunningKiosk) -> FingerprintSimulator:
    machine: Machine = kiosk.app.state.machine
    return cast(FingerprintSimulator, machine.hardware.simulators[DeviceKind.FINGERPRINT])


def wait_for_step(tech: httpx.Client, member_id: int, step: str) -> dict[str, Any]:
    path = f"{MEMBERS}/{member_id}/enrolment"
    job = until(lambda: (job := tech.get(path).json())["step"] == step and job)
    assert job["state"] == "running", job
    return cast(dict[str, Any], job)


def wait_for_end(tech: httpx.Client, member_id: int) -> dict[str, Any]:
    path = f"{MEMBERS}/{member_id}/enrolment"
    return cast(dict[str, Any],
                until(lambda: (job := tech.get(path).json())["state"] != "running" and job))


def test_enrolled_finger_buys_from_the_members_balance(
    simulated: RunningKiosk, sim_tech: httpx.Client, settings: Settings
) -> None:
    tech, sensor = sim_tech, reader_of(simulated)
    assert sensor.library == {1: "alice", 2: "bob"}
    carol = add_member(tech)
    tech.post(f"{MEMBERS}/{carol['id']}/balance",
              json={"kind": "top_up", "amount_cents": 500, "reason": "first top-up"})
    started = tech.post(f"{MEMBERS}/{carol['id']}/enrolment",
                        json={"consent": True, "timeout_s": 5})
    assert started.status_code == 202, started.text
    assert started.json()["page"] == 0 and started.json()["state"] == "running"

    assert wait_for_step(tech, carol["id"], "place_finger")["instruction"].startswith("place")
    sensor.place_finger("carol")
    wait_for_step(tech, carol["id"], "lift_finger")
    sensor.lift_finger()
    wait_for_step(tech, carol["id"], "place_again")
    sensor.place_finger("carol")
    done = wait_for_end(tech, carol["id"])
    sensor.lift_finger()
    assert done["state"] == "succeeded", done
    assert [s["step"] for s in done["steps"]] == [
        "starting", "place_finger", "lift_finger", "place_again", "merging", "stored"]
    assert sensor.library == {0: "carol", 1: "alice", 2: "bob"}
    assert tech.get(f"{MEMBERS}/{carol['id']}").json()["fingerprint_page"] == 0
    details = tech.get("/api/maintenance/diagnostics/fingerprint").json()
    assert (details["capacity"], details["templates"], details["used_pages"]) == (200, 3,
                                                                                  [0, 1, 2])

    with httpx.Client(base_url=simulated.url, timeout=20) as customer:
        sale = customer.post("/api/sales", json={"slot": "A1", "method": "account"}).json()
        until(lambda: customer.get(f"/api/sales/{sale['id']}").json()["state"] == "authorizing")
        sensor.place_finger("carol")
        ended = until(lambda: (s := customer.get(f"/api/sales/{sale['id']}").json())["terminal"]
                      and s)
        sensor.lift_finger()
    assert ended["state"] == "completed", ended
    assert tech.get(f"{MEMBERS}/{carol['id']}").json()["balance_cents"] == 500 - 120
    assert ledger_balance(settings, carol["id"]) == 380

    removed = tech.delete(f"{MEMBERS}/{carol['id']}/fingerprint")
    assert removed.status_code == 200 and removed.json()["fingerprint"] is False
    assert sensor.library == {1: "alice", 2: "bob"}


def test_enrolment_that_times_out_fails_and_frees_the_kiosk(
    simulated: RunningKiosk, sim_tech: httpx.Client, settings: Settings
) -> None:
    tech, sensor = sim_tech, reader_of(simulated)
    carol = add_member(tech)
    tech.post(f"{MEMBERS}/{carol['id']}/enrolment", json={"consent": True, "timeout_s": 1})
    done = wait_for_end(tech, carol["id"])
    assert done["state"] == "failed" and done["step"] == "place_finger"
    assert done["reason"].startswith("timed out") and "no finger" in done["reason"]
    assert sensor.library == {1: "alice", 2: "bob"}
    assert tech.get(f"{MEMBERS}/{carol['id']}").json()["fingerprint"] is False
    failed = audit(settings, "fingerprint_enrolment_failed")[-1]
    assert failed.after == {"state": "failed", "reason": done["reason"]}
    assert failed.before == {"state": "running", "step": "place_finger", "page": 0}
    vend = tech.post("/api/maintenance/diagnostics/test-vend", json={"slot": "A1"})
    assert vend.status_code == 200  # the mechanism is free again


def test_two_different_fingers_do_not_merge_and_nothing_is_stored(
    simulated: RunningKiosk, sim_tech: httpx.Client
) -> None:
    tech, sensor = sim_tech, reader_of(simulated)
    carol = add_member(tech)
    tech.post(f"{MEMBERS}/{carol['id']}/enrolment", json={"consent": True, "timeout_s": 5})
    wait_for_step(tech, carol["id"], "place_finger")
    sensor.place_finger("carol")
    wait_for_step(tech, carol["id"], "lift_finger")
    sensor.lift_finger()
    wait_for_step(tech, carol["id"], "place_again")
    sensor.place_finger("dave")
    done = wait_for_end(tech, carol["id"])
    sensor.lift_finger()
    assert done["state"] == "failed" and "do not merge" in done["reason"]
    assert sensor.library == {1: "alice", 2: "bob"}


def test_cancelled_enrolment_stores_nothing_and_can_start_again(
    simulated: RunningKiosk, sim_tech: httpx.Client, settings: Settings
) -> None:
    tech, sensor = sim_tech, reader_of(simulated)
    carol = add_member(tech)
    tech.post(f"{MEMBERS}/{carol['id']}/enrolment", json={"consent": True, "timeout_s": 5})
    wait_for_step(tech, carol["id"], "place_finger")
    cancelled = tech.delete(f"{MEMBERS}/{carol['id']}/enrolment")
    assert cancelled.status_code == 200
    assert cancelled.json()["state"] == "cancelled"
    assert cancelled.json()["reason"] == f"cancelled by {NAME}"
    assert tech.delete(f"{MEMBERS}/{carol['id']}/enrolment").json()["state"] == "cancelled"
    assert sensor.library == {1: "alice", 2: "bob"}
    entry = audit(settings, "fingerprint_enrolment_cancelled")[-1]
    assert entry.actor == NAME and entry.after == {"state": "cancelled",
                                                   "reason": f"cancelled by {NAME}"}
    again = tech.post(f"{MEMBERS}/{carol['id']}/enrolment", json={"consent": True})
    assert again.status_code == 202
    tech.delete(f"{MEMBERS}/{carol['id']}/enrolment")


def test_a_second_enrolment_waits_for_the_first(simulated: RunningKiosk,
                                                sim_tech: httpx.Client) -> None:
    tech = sim_tech
    carol, dave = add_member(tech), add_member(tech, "Dave")
    tech.post(f"{MEMBERS}/{carol['id']}/enrolment", json={"consent": True, "timeout_s": 5})
    second = tech.post(f"{MEMBERS}/{dave['id']}/enrolment", json={"consent": True})
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "enrolment_running"
    tech.delete(f"{MEMBERS}/{carol['id']}/enrolment")

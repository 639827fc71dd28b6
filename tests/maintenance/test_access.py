"""Technicians: login, lockout, sessions, CSRF, networks, the audit log, the service toggle."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlmodel import select

from kiosk import technicians
from kiosk.api import login_limit
from kiosk.app import create_app
from kiosk.config import Settings
from kiosk.db import Database
from kiosk.models import Technician, utcnow
from tests.api.conftest import RunningKiosk
from tests.conftest import Doubles
from tests.doubles import FakeCard, FakeFingerprint, FakeVending
from tests.maintenance.conftest import NAME, SECRET, audit


def test_every_maintenance_route_wants_a_login(kiosk: RunningKiosk,
                                               anonymous: httpx.Client) -> None:
    routes = [(method.upper(), path) for path, operations in kiosk.app.openapi()["paths"].items()
              if path.startswith("/api/maintenance") for method in operations]
    assert len(routes) >= 5
    for method, path in routes:
        if path == "/api/maintenance/login":
            continue
        answer = anonymous.request(method, path.replace("{", "").replace("}", ""))
        assert answer.status_code == 401, (method, path, answer.status_code)
        assert answer.json()["error"]["code"] == "login_required"


def test_login_sets_a_strict_http_only_cookie_and_logout_ends_it(
    anonymous: httpx.Client, settings: Settings
) -> None:
    answer = anonymous.post("/api/maintenance/login", json={"name": NAME, "secret": SECRET})
    assert answer.status_code == 200 and answer.json()["name"] == NAME
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
    csrf = {"X-CSRF-Token": answer.json()["csrf_token"]}
    assert anonymous.get("/api/maintenance/me").status_code == 200
    assert anonymous.post("/api/maintenance/logout", headers=csrf).status_code == 204
    assert anonymous.get("/api/maintenance/me").status_code == 401
    assert [a.actor for a in audit(settings, "login")] == [NAME]


def test_wrong_secret_waits_and_is_refused(anonymous: httpx.Client, settings: Settings) -> None:
    started = time.monotonic()
    answer = anonymous.post("/api/maintenance/login", json={"name": NAME, "secret": "guess"})
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "login_failed"
    assert time.monotonic() - started >= technicians.DELAY_BASE * 0.9
    unknown = anonymous.post("/api/maintenance/login", json={"name": "eve", "secret": "guess"})
    assert unknown.json()["error"]["message"] == answer.json()["error"]["message"]
    assert len(audit(settings, "login_refused")) == 2


def test_repeated_failures_lock_the_name_even_for_the_right_secret(
    kiosk: RunningKiosk, anonymous: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(technicians, "DELAY_BASE", 0.001)
    for _ in range(technicians.LOCK_AFTER):
        anonymous.post("/api/maintenance/login", json={"name": NAME, "secret": "guess"})
    with from_address(kiosk, "127.0.0.2") as elsewhere:  # the first one's tries are used up
        locked = elsewhere.post("/api/maintenance/login", json={"name": NAME, "secret": SECRET})
    assert locked.status_code == 423 and locked.json()["error"]["code"] == "locked"


def from_address(kiosk: RunningKiosk, address: str) -> httpx.Client:
    """A client whose requests come from another loopback address (127.0.0.0/8 is all ours)."""
    return httpx.Client(base_url=kiosk.url, timeout=20,
                        transport=httpx.HTTPTransport(local_address=address))


class CountingHasher:
    """The kiosk's argon2 hasher, counting the verifications it is asked for."""

    def __init__(self, real: PasswordHasher) -> None:
        self.real = real
        self.verified = 0

    def verify(self, stored: str, secret: str) -> bool:
        self.verified += 1
        return self.real.verify(stored, secret)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@pytest.fixture
def hasher(monkeypatch: pytest.MonkeyPatch) -> CountingHasher:
    counting = CountingHasher(technicians._hasher)
    monkeypatch.setattr(technicians, "_hasher", counting)
    return counting


def timed_login(client: httpx.Client, name: str, secret: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    answer = client.post("/api/maintenance/login", json={"name": name, "secret": secret})
    return answer, time.monotonic() - started


def test_an_unknown_name_costs_a_verification_and_waits_as_long_as_a_known_one(
    anonymous: httpx.Client, hasher: CountingHasher
) -> None:
    for failures in (1, 2):
        before = hasher.verified
        unknown, unknown_took = timed_login(anonymous, "eve", "guess")
        assert hasher.verified == before + 1
        known, known_took = timed_login(anonymous, NAME, "guess")
        assert hasher.verified == before + 2
        assert unknown.status_code == known.status_code == 401
        assert unknown.json() == known.json()
        expected = technicians.delay(failures)
        assert unknown_took >= expected * 0.95 and known_took >= expected * 0.95
        assert abs(unknown_took - known_took) < 0.1, (failures, unknown_took, known_took)


def test_an_unknown_name_is_locked_like_a_known_one(
    kiosk: RunningKiosk, anonymous: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Else a lock would tell an attacker which names exist.
    monkeypatch.setattr(technicians, "DELAY_BASE", 0.001)
    with from_address(kiosk, "127.0.0.2") as client:
        for _ in range(technicians.LOCK_AFTER):
            assert timed_login(client, "eve", "guess")[0].status_code == 401
    locked, took = timed_login(anonymous, "eve", SECRET)
    assert locked.status_code == 423 and took < 0.1
    assert locked.json()["error"] == {
        "code": "locked", "message": "too many failed logins: locked for 15 more minute(s)"}


def test_the_sixth_rapid_attempt_is_refused_before_verifying_and_others_are_still_served(
    kiosk: RunningKiosk, anonymous: httpx.Client, hasher: CountingHasher, settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(technicians, "DELAY_BASE", 0.001)
    for _ in range(login_limit.BURST):
        assert timed_login(anonymous, "eve", "guess")[0].status_code == 401
    assert hasher.verified == login_limit.BURST
    refused, took = timed_login(anonymous, NAME, SECRET)  # even the right secret
    assert refused.status_code == 429 and took < 0.1
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= login_limit.REFILL_SECONDS
    assert hasher.verified == login_limit.BURST
    # Refusals are not audited one by one (a flood would fill the audit log).
    assert len(audit(settings, "login_refused")) == login_limit.BURST
    with from_address(kiosk, "127.0.0.2") as elsewhere:
        assert timed_login(elsewhere, NAME, SECRET)[0].status_code == 200
    assert hasher.verified == login_limit.BURST + 1


def test_a_lock_that_is_over_leaves_the_name_a_fresh_count(
    kiosk: RunningKiosk, anonymous: httpx.Client, settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(technicians, "DELAY_BASE", 0.001)
    database = Database(settings.database)
    try:
        with database.session() as session:
            technician = session.exec(select(Technician).where(Technician.name == NAME)).one()
            technician.failed_logins = technicians.LOCK_AFTER
            technician.locked_until = utcnow() - timedelta(seconds=1)
            session.add(technician)
            session.commit()
        assert timed_login(anonymous, NAME, "guess")[0].status_code == 401
        with database.session() as session:
            technician = session.exec(select(Technician).where(Technician.name == NAME)).one()
        assert technician.failed_logins == 1 and technician.locked_until is None
    finally:
        database.dispose()
    assert timed_login(anonymous, NAME, SECRET)[0].status_code == 200  # not locked again
    with from_address(kiosk, "127.0.0.2") as elsewhere:
        for _ in range(technicians.LOCK_AFTER):
            assert timed_login(elsewhere, NAME, "guess")[0].status_code == 401
    assert timed_login(anonymous, NAME, SECRET)[0].status_code == 423


def test_changes_without_the_csrf_token_are_refused(tech: httpx.Client) -> None:
    token = tech.headers.pop("X-CSRF-Token")
    bare = tech.post("/api/maintenance/service", json={"in_service": False})
    assert bare.status_code == 403 and bare.json()["error"]["code"] == "csrf"
    forged = tech.post("/api/maintenance/service", json={"in_service": False},
                       headers={"X-CSRF-Token": "forged"})
    assert forged.status_code == 403
    tech.headers["X-CSRF-Token"] = token
    assert tech.post("/api/maintenance/service", json={"in_service": True}).status_code == 200


def test_out_of_service_toggle_is_audited_and_survives_a_restart(
    tech: httpx.Client, settings: Settings, doubles: Doubles
) -> None:
    held = tech.post("/api/maintenance/service",
                     json={"in_service": False, "reason": "restocking"}).json()
    assert held["service"]["in_service"] is False and held["held_by"] == f"{NAME}: restocking"
    assert tech.get("/readyz").status_code == 503
    assert tech.get("/api/catalog").json()["in_service"] is False
    entry = audit(settings, "set_service")[-1]
    assert entry.actor == NAME and entry.before == {"held_by": ""}
    assert entry.after == {"held_by": f"{NAME}: restocking"}
    others = Doubles(FakeVending(), FakeCard(), FakeFingerprint())  # a second machine's own
    with RunningKiosk(settings, others) as again, httpx.Client(base_url=again.url) as client:
        assert client.get("/readyz").status_code == 503
    back = tech.post("/api/maintenance/service", json={"in_service": True}).json()
    assert back["service"]["in_service"] is True


def test_dashboard_shows_devices_takings_and_attention(tech: httpx.Client) -> None:
    board = tech.get("/api/maintenance/dashboard").json()
    assert board["devices"]["card"]["state"] == "ok"
    assert board["today"] == {"sales": 0, "revenue_cents": 0}
    assert any(item["slot"] == "C3" for item in board["attention"])  # 1 of 8 left


def test_maintenance_is_refused_outside_technician_networks(
    settings: Settings, doubles: Doubles, technician: str
) -> None:
    app = create_app(settings, doubles.as_devices())
    with TestClient(app, client=("192.168.7.7", 1), base_url="http://192.168.1.2") as client:
        answer = client.post("/api/maintenance/login", json={"name": NAME, "secret": SECRET})
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "forbidden"


def test_technician_command_adds_and_lists(settings: Settings) -> None:
    env = {"KIOSK_DATABASE": str(settings.database), "PATH": "/usr/bin:/bin"}
    add = subprocess.run([sys.executable, "-m", "kiosk.cli", "technician", "add", "rosa",
                          "--secret-stdin"], input="a long enough secret\n", env=env,
                         capture_output=True, text=True, timeout=60)
    assert add.returncode == 0, add.stderr
    short = subprocess.run([sys.executable, "-m", "kiosk.cli", "technician", "add", "ana",
                            "--secret-stdin"], input="short\n", env=env,
                           capture_output=True, text=True, timeout=60)
    assert short.returncode == 1 and "at least" in short.stderr
    listed = subprocess.run([sys.executable, "-m", "kiosk.cli", "technician", "list"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert listed.stdout.split() == ["rosa"]


def test_a_login_the_database_cannot_record_yet_is_a_503_busy_not_an_internal_error(
    anonymous: httpx.Client, settings: Settings
) -> None:
    # Another process holds the write lock past the busy timeout: the login cannot be recorded.
    holder = sqlite3.connect(settings.database, timeout=1, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        answer = anonymous.post("/api/maintenance/login", json={"name": NAME, "secret": SECRET})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "busy" and answer.headers["Retry-After"]
    # The lock is gone: the technician logs in.
    assert anonymous.post("/api/maintenance/login",
                          json={"name": NAME, "secret": SECRET}).status_code == 200

"""Technicians: login, lockout, sessions, CSRF, networks, the audit log, the service toggle."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from kiosk import technicians
from kiosk.app import create_app
from kiosk.config import Settings
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
    anonymous: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(technicians, "DELAY_BASE", 0.001)
    for _ in range(technicians.LOCK_AFTER):
        anonymous.post("/api/maintenance/login", json={"name": NAME, "secret": "guess"})
    locked = anonymous.post("/api/maintenance/login", json={"name": NAME, "secret": SECRET})
    assert locked.status_code == 423 and locked.json()["error"]["code"] == "locked"


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


def test_a_login_the_database_cannot_record_is_a_503_not_an_internal_error(
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
    error = answer.json()["error"]
    assert error["code"] == "not_recorded" and "refuses writes" in error["message"]
    assert "locked" in error["message"]
    # The lock is gone: the technician logs in.
    assert anonymous.post("/api/maintenance/login",
                          json={"name": NAME, "secret": SECRET}).status_code == 200

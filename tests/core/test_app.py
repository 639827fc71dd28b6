"""The app: lifespan order, /healthz and /readyz, and one error shape for every failure."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from kiosk.app import create_app
from kiosk.config import Settings
from kiosk.db import Database
from kiosk.ledger import Ledger
from kiosk.states import PaymentMethod, SaleState
from tests.conftest import Doubles
from tests.doubles import OfflineCard, OfflineFingerprint


def client_for(settings: Settings, doubles: Doubles) -> TestClient:
    app = create_app(settings, doubles.as_devices())
    boom = APIRouter()

    @boom.get("/boom")
    async def explode() -> None:
        raise RuntimeError("secret internals")

    app.include_router(boom)
    app.router.routes.insert(0, app.router.routes.pop())  # ahead of the static UI's mount
    return TestClient(app, raise_server_exceptions=False, base_url="http://localhost",
                      client=("127.0.0.1", 50000))


@pytest.fixture
def client(settings: Settings, doubles: Doubles) -> Iterator[TestClient]:
    with client_for(settings, doubles) as client:
        yield client


def test_alive_and_ready_with_every_device_ok(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True
    assert body["service"]["payment_methods"] == ["card", "account"]
    assert {name: d["state"] for name, d in body["devices"].items()} == {
        "vending": "ok", "card": "ok", "fingerprint": "ok"}


def test_readyz_tells_a_trusted_caller_how_late_the_event_loop_runs(
    client: TestClient, settings: Settings
) -> None:
    lag = client.get("/readyz").json()["event_loop"]
    assert set(lag) == {"lag_p99_ms", "lag_max_ms", "window_s", "blocked_episodes",
                        "threshold_ms"}
    assert 0 <= lag["lag_p99_ms"] <= lag["lag_max_ms"]
    assert lag["threshold_ms"] == settings.loop_lag_warning * 1000 and lag["window_s"] == 300
    assert client.app.state.loop_watch is not None  # type: ignore[attr-defined]


def test_not_ready_says_why_in_the_error_shape(settings: Settings, doubles: Doubles) -> None:
    doubles.card = OfflineCard()
    doubles.fingerprint = OfflineFingerprint()
    with client_for(settings, doubles) as client:
        ready = client.get("/readyz")
    assert ready.status_code == 503
    error = ready.json()["error"]
    assert error["code"] == "not_ready"
    assert "no way to pay" in error["message"] and "unplugged" in error["message"]


def test_one_payment_path_is_enough_to_sell(settings: Settings, doubles: Doubles) -> None:
    doubles.card = OfflineCard()
    with client_for(settings, doubles) as client:
        body = client.get("/readyz").json()
    assert body["ready"] is True and body["service"]["payment_methods"] == ["account"]


def test_errors_share_one_shape_and_never_leak_a_traceback(client: TestClient) -> None:
    missing = client.get("/no/such/page")
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": "not_found", "message": "Not Found"}}
    crashed = client.get("/boom")
    assert crashed.status_code == 500
    assert crashed.json()["error"]["code"] == "internal_error"
    assert "secret" not in crashed.text and "Traceback" not in crashed.text
    wrong_method = client.post("/healthz")
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()


def test_lifespan_recovers_before_serving(settings: Settings, doubles: Doubles) -> None:
    database = Database(settings.database)
    sale = Ledger(database).open_sale("A1", PaymentMethod.CARD)
    database.dispose()
    with client_for(settings, doubles) as client:
        assert client.get("/readyz").status_code == 200
        machine = client.app.state.machine  # type: ignore[attr-defined]
        assert machine.ledger.get(sale.id).state == SaleState.CANCELLED


def test_default_devices_without_drivers_are_offline_not_faked(tmp_path: object,
                                                               settings: Settings) -> None:
    # With nothing given, the configured URLs are built through the registry; a device
    # whose driver cannot be built is reported offline with the reason.
    broken = settings.model_copy(update={"card": settings.card.__class__(
        raw="qibixx:///dev/does-not-exist", scheme="qibixx", path="/dev/does-not-exist")})
    app = create_app(broken)
    with TestClient(app, base_url="http://localhost", client=("127.0.0.1", 1)) as client:
        card = client.get("/readyz").json()["devices"]["card"]
    assert card["state"] == "offline" and card["reason"]

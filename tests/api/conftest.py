"""A real uvicorn server on a free loopback port, running the app with device doubles."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from kiosk.app import create_app
from kiosk.config import Settings
from tests.conftest import Doubles


class RunningKiosk:
    def __init__(self, settings: Settings, doubles: Doubles | None = None) -> None:
        self.app = create_app(settings, doubles.as_devices() if doubles else None)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                log_config=None, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> RunningKiosk:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the kiosk did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


@pytest.fixture
def kiosk(settings: Settings, doubles: Doubles) -> Iterator[RunningKiosk]:
    with RunningKiosk(settings, doubles) as running:
        yield running


@pytest.fixture
def http(kiosk: RunningKiosk) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=kiosk.url, timeout=10) as client:
        yield client

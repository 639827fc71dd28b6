"""What the soak test needs besides the process harness: the screen's event stream and the
technician's hands."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.faults.processes import ProcessFailed


class EventStream:
    """``/api/events`` followed as the touchscreen does, on a thread: every sale's states.

    A plain HTTP/1.0 socket rather than an HTTP client: the server then ends the body by closing
    the connection (no chunked framing to undo), and :meth:`close` can cut the stream from the
    test's thread at any moment, which the server needs to see before it can stop gracefully.
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._socket = socket.create_connection((parts.hostname, parts.port), timeout=10)
        self._socket.sendall(f"GET /api/events HTTP/1.0\r\nHost: {parts.netloc}\r\n"
                             "Accept: text/event-stream\r\n\r\n".encode())
        self._socket.settimeout(None)
        self._changed = threading.Condition()
        #: Every state each sale was announced in, in order.
        self.states: dict[str, list[str]] = {}
        #: The last announcement of each sale that ended.
        self.ended: dict[str, dict[str, Any]] = {}
        #: The kiosk's service state as last announced.
        self.service: dict[str, Any] = {}
        self._closed = False
        self._failure = ""
        self._thread = threading.Thread(target=self._follow, name="event stream", daemon=True)
        self._thread.start()
        self.wait("the event stream's first service state", lambda: self.service, 15)

    def _follow(self) -> None:
        try:
            with self._socket.makefile("rb") as lines:
                status = lines.readline().decode()
                if " 200 " not in status:
                    raise ProcessFailed(f"/api/events answered {status.strip()!r}")
                while lines.readline().strip():  # the headers
                    pass
                topic = data = ""
                for raw in lines:
                    line = raw.decode().rstrip("\r\n")
                    if line.startswith("event: "):
                        topic = line.removeprefix("event: ")
                    elif line.startswith("data: "):
                        data = line.removeprefix("data: ")
                    elif not line and topic:
                        self._take(topic, json.loads(data))
                        topic = data = ""
        except Exception as exc:  # the test's thread reports it
            if not self._closed:
                self._failure = f"the event stream broke: {exc!r}"
        finally:
            if not self._closed and not self._failure:
                self._failure = "the server ended the event stream"
            with self._changed:
                self._changed.notify_all()

    def _take(self, topic: str, data: dict[str, Any]) -> None:
        with self._changed:
            if topic == "sale":
                self.states.setdefault(data["id"], []).append(data["state"])
                if data["terminal"]:
                    self.ended[data["id"]] = data
            elif topic == "service":
                self.service = data
            self._changed.notify_all()

    def wait(self, what: str, check: Any, timeout: float) -> Any:
        """Wait until ``check()`` (called under the stream's lock) returns something truthy."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (found := check()):
                if self._failure:
                    raise ProcessFailed(f"{self._failure} while waiting for {what}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {what} on /api/events within {timeout:g} s")
                self._changed.wait(left)
            return found

    def ending(self, sale_id: str, timeout: float) -> dict[str, Any]:
        """The sale as announced when it ended."""
        found: dict[str, Any] = self.wait(f"end of sale {sale_id}",
                                          lambda: self.ended.get(sale_id), timeout)
        return found

    def endings(self) -> dict[str, str]:
        """Each sale that ended, and the state it ended in."""
        with self._changed:
            return {sale_id: sale["state"] for sale_id, sale in self.ended.items()}

    def reached(self, sale_id: str, state: str, timeout: float) -> None:
        self.wait(f"sale {sale_id} in {state}",
                  lambda: state in self.states.get(sale_id, ()) or sale_id in self.ended, timeout)

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)
        self._socket.close()


class Technician:
    """The maintenance API, logged in as a technician (session cookie and CSRF token)."""

    def __init__(self, url: str, name: str, secret: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=15)
        me = self.http.post("/api/maintenance/login", json={"name": name, "secret": secret})
        assert me.status_code == 200, me.text
        self.http.headers["X-CSRF-Token"] = me.json()["csrf_token"]

    def call(self, method: str, path: str, body: Any = None) -> Any:
        answer = self.http.request(method, f"/api/maintenance{path}", json=body)
        assert answer.is_success, f"{method} {path}: {answer.status_code} {answer.text}"
        return answer.json()

    def slot_checked(self, code: str) -> None:
        """The technician looked at a slot the kiosk took out of sale: back on sale."""
        assert self.call("PATCH", f"/planogram/{code}", {"fault": ""})["for_sale"]

    def close(self) -> None:
        self.http.close()


@contextlib.contextmanager
def technician(url: str, name: str, secret: str) -> Iterator[Technician]:
    tech = Technician(url, name, secret)
    try:
        yield tech
    finally:
        tech.close()

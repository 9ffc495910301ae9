"""Helpers shared by the integration, fault-injection and browser tests."""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flamechat.devnet import DevNetwork, Server, http_json

T = TypeVar("T")


@dataclass
class ApiSession:
    """A logged-in user on a node, speaking the local API like the browser does."""

    node: Server
    username: str
    cookie: str
    csrf: str

    def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, csrf: bool = True
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Cookie": self.cookie}
        if csrf:
            headers["X-CSRF-Token"] = self.csrf
        status, payload, _ = http_json(method, self.node.url + path, body, headers=headers)
        return status, payload

    def send(self, peer: str, text: str, message_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"body": text}
        if message_id:
            body["id"] = message_id
        status, payload = self.call("POST", f"/api/v1/conversations/{peer}/messages", body)
        assert status == 201, (status, payload)
        return payload

    def history(self, peer: str, limit: int = 200) -> list[dict[str, Any]]:
        status, payload = self.call("GET", f"/api/v1/conversations/{peer}/messages?limit={limit}")
        assert status == 200, (status, payload)
        messages: list[dict[str, Any]] = payload["messages"]
        return messages

    def users(self) -> dict[str, Any]:
        """The user list as this user's page gets it."""
        status, payload = self.call("GET", "/api/v1/users")
        assert status == 200, (status, payload)
        return payload

    def listed(self, username: str) -> dict[str, Any]:
        """``username`` as this user's list shows them, once listed. A node learns of
        an account created after its last look at the directory's list when that copy
        (at most ``user_list_max_age`` old) is next refreshed: the wait is bounded."""

        def entry() -> dict[str, Any] | None:
            return next((u for u in self.users()["users"] if u["username"] == username), None)

        found: dict[str, Any] = eventually(entry, what=f"{username} in {self.username}'s user list")
        return found


def login(node: Server, username: str, password: str) -> ApiSession:
    status, body, headers = http_json(
        "POST", node.url + "/api/v1/sessions", {"username": username, "password": password}, timeout=30
    )
    assert status == 201, (status, body)
    cookie = headers["set-cookie"].split(";")[0]
    return ApiSession(node, username, cookie, body["csrf_token"])


def eventually(
    check: Callable[[], T], *, timeout: float = 15.0, interval: float = 0.1, what: str = "condition"
) -> T:
    """Poll ``check`` until it returns something truthy; bounded in time."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout}s (last: {last!r})")


@dataclass
class Answer:
    """An HTTP answer: status, JSON body (``{"raw": text}`` if not JSON), headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def code(self) -> str | None:
        error = self.body.get("error")
        return error.get("code") if isinstance(error, dict) else None


def raw_request(
    method: str, url: str, data: bytes | None, headers: dict[str, str], *, timeout: float = 10.0
) -> Answer:
    """Send exactly these bytes and headers (for malformed or hand-signed requests)."""
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw, got = response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        status, raw, got = exc.code, exc.read(), exc.headers
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        body = {"raw": raw.decode(errors="replace")}
    return Answer(status, body if isinstance(body, dict) else {"raw": body}, dict(got.items()))


class EventStream:
    """One open browser tab: the live event stream (SSE) of a session, read in a
    thread. Presence follows these streams, so holding one makes the user online.
    Like the page, it answers each ``alive`` event with the tab's heartbeat (unless
    ``heartbeat=False``: a tab whose heartbeats stop); ``alive`` events are not kept."""

    def __init__(self, session: ApiSession, *, timeout: float = 60.0, heartbeat: bool = True) -> None:
        self.session = session
        self.heartbeat = heartbeat
        self.heartbeats = 0
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        parts = urlsplit(session.node.url)
        self._conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
        self._thread: threading.Thread | None = None
        self._closing = False
        self.error: Exception | None = None

    def __enter__(self) -> EventStream:
        self._conn.request(
            "GET", "/api/v1/events", headers={"Cookie": self.session.cookie, "Accept": "text/event-stream"}
        )
        response = self._conn.getresponse()
        assert response.status == 200, (response.status, response.read()[:500])
        self._thread = threading.Thread(target=self._read, args=(response,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _read(self, response: http.client.HTTPResponse) -> None:
        data: list[str] = []
        try:
            while True:
                line = response.readline()
                if not line:
                    return
                text = line.decode().rstrip("\r\n")
                if text.startswith("data:"):
                    data.append(text[5:].strip())
                elif not text and data:
                    event = json.loads("\n".join(data))
                    data = []
                    if event.get("type") == "alive":
                        if self.heartbeat:
                            with contextlib.suppress(OSError):  # a node going away: the stream ends too
                                status, _ = self.session.call(
                                    "PUT", f"/api/v1/me/tabs/{event['tab']}?via=stream"
                                )
                                self.heartbeats += status == 200
                        continue
                    with self._lock:
                        self.events.append(event)
        except Exception as exc:  # closed under us by close(), or the server went away
            if not self._closing:
                self.error = exc

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.events)

    def close(self) -> None:
        self._closing = True
        sock = self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._conn.close()
        if self._thread is not None:
            self._thread.join(10)


STACK_TRACE_MARKERS = ("unhandled error", "Exception in ASGI application", "Traceback")


def log_errors(log_path: Path, name: str) -> list[str]:
    """Lines of one server log that show a 500 or a stack trace, each with what follows it.

    A marker line is reported together with the lines after it (the
    traceback's frames and the exception), so a failure in CI names its cause.
    """
    if not log_path.exists():
        return []
    lines = log_path.read_text(errors="replace").splitlines()
    return [
        "\n".join([f"{name}: {line}", *itertools.islice(lines, at + 1, at + 40)])
        for at, line in enumerate(lines)
        if any(sign in line for sign in STACK_TRACE_MARKERS)
    ]


def server_errors(net: DevNetwork) -> list[str]:
    """:func:`log_errors` of every process of ``net``."""
    servers = [*net.nodes, *([net.directory] if net.directory else [])]
    return [found for server in servers for found in log_errors(server.log_path, server.name)]


def flame(*args: str) -> None:
    """Run the ``flame`` CLI (as an operator would), failing loudly."""
    subprocess.run([sys.executable, "-m", "flamechat", *args], check=True, capture_output=True, timeout=60)


def data_dir(server: Server) -> str:
    return server.args[server.args.index("--data-dir") + 1]


def reset_password(net: DevNetwork, username: str, password: str, home: Server) -> ApiSession:
    """The administrator resets ``username``'s password, the operator of their
    node confirms it, and they log in again: their node makes and publishes
    new keys."""
    assert net.directory is not None
    reset = ["user", "reset-password", username, "--password", password, "--password-profile", "minimal"]
    flame(*reset, "--data-dir", data_dir(net.directory))
    flame("node-admin", "forget-user", username, "--data-dir", data_dir(home))
    return login(home, username, password)

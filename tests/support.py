"""Helpers shared by the integration, fault-injection and browser tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flamechat.devnet import Server, http_json

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

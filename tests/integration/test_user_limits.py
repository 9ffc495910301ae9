"""Per-user rates on a real node, over HTTP: messages per minute, bytes of
message text per minute, bytes of files per hour, login attempts per client
address, and the login backoff's settings. Each limit is set low on the
command line, so each test meets it in a few requests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from flamechat.devnet import DevNetwork, http_json
from tests.conftest import PASSWORDS, make_network
from tests.support import ApiSession, login, server_errors

pytestmark = pytest.mark.integration

MESSAGES = 5  # per user and minute, on node 1
TEXT_BYTES = 3000  # per user and minute, on node 1
FILE_BYTES = 4000  # per user and hour, on node 1
ADDRESS_LOGINS = 6  # per client address and minute, on node 1
USERS = {**PASSWORDS, "erin": "erin-password"}


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevNetwork]:
    network = make_network(
        tmp_path_factory.mktemp("user-limits"),
        node_args=[
            [
                "--messages-per-minute",
                str(MESSAGES),
                "--bytes-per-minute",
                str(TEXT_BYTES),
                "--file-bytes-per-hour",
                str(FILE_BYTES),
                "--logins-per-minute-per-address",
                str(ADDRESS_LOGINS),
            ],
            [
                "--login-free-failures",
                "1",
                "--login-max-lockout",
                "2",
                "--logins-per-minute-per-account",
                "30",
            ],
        ],
        users=USERS,
    )
    try:
        yield network
    finally:
        network.stop()


def on_node1(net: DevNetwork, username: str) -> ApiSession:
    return login(net.nodes[0], username, USERS[username])


def call(
    session: ApiSession, method: str, path: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any], dict[str, str]]:
    status, payload, headers = http_json(
        method,
        session.node.url + path,
        body,
        headers={"Cookie": session.cookie, "X-CSRF-Token": session.csrf},
    )
    return status, payload, {k.lower(): v for k, v in headers.items()}


def send(session: ApiSession, text: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    return call(session, "POST", "/api/v1/conversations/bob/messages", {"body": text})


def declare_file(session: ApiSession, size: int, name: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    body = {"id": str(uuid.uuid4()), "name": name, "size": size, "type": "application/octet-stream"}
    return call(session, "POST", "/api/v1/conversations/bob/uploads", body)


def test_a_user_sending_too_many_messages_is_told_when_to_try_again(net: DevNetwork, bob: ApiSession) -> None:
    alice = on_node1(net, "alice")
    statuses = [send(alice, f"message {i}")[0] for i in range(MESSAGES)]
    assert statuses == [201] * MESSAGES
    status, body, headers = send(alice, "one too many")
    assert (status, body["error"]["code"]) == (429, "rate_limited")
    assert 1 <= int(headers["retry-after"]) <= 61
    assert body["error"]["details"]["retry_after"] == int(headers["retry-after"])
    assert "one too many" not in [m["body"] for m in alice.history("bob")]  # refused, not queued


def test_text_beyond_the_byte_budget_waits_and_one_message_larger_than_it_is_too_large(
    net: DevNetwork, bob: ApiSession
) -> None:
    carol = on_node1(net, "carol")
    assert send(carol, "a" * 2000)[0] == 201
    status, body, headers = send(carol, "b" * 2000)  # 4000 bytes in the minute: over 3000
    assert (status, body["error"]["code"]) == (429, "rate_limited")
    assert 1 <= int(headers["retry-after"]) <= 61
    # More than the whole minute's budget at once: waiting would never help.
    status, body, headers = send(carol, "c" * (TEXT_BYTES + 1))
    assert (status, body["error"]["code"]) == (413, "payload_too_large")
    assert "retry-after" not in headers
    assert body["error"]["details"]["limit"] == TEXT_BYTES
    assert [m["body"] for m in carol.history("bob")] == ["a" * 2000]


def test_file_bytes_count_against_an_hourly_budget(net: DevNetwork, bob: ApiSession) -> None:
    erin = on_node1(net, "erin")
    status, body, _ = declare_file(erin, 3000, "first.bin")
    assert status == 201, body
    status, body, headers = declare_file(erin, 3000, "second.bin")  # 6000 in the hour: over 4000
    assert (status, body["error"]["code"]) == (429, "rate_limited")
    assert 61 < int(headers["retry-after"]) <= 3601  # the window is an hour, not a minute
    status, body, headers = declare_file(erin, FILE_BYTES + 1, "huge.bin")
    assert (status, body["error"]["code"]) == (413, "payload_too_large")
    assert "retry-after" not in headers
    # Text has a budget of its own, untouched by the files.
    assert send(erin, "still here")[0] == 201


def test_login_attempts_from_one_address_are_limited_across_accounts(net: DevNetwork) -> None:
    url = net.nodes[0].url + "/api/v1/sessions"
    statuses: list[int] = []
    refused: tuple[dict[str, Any], dict[str, str]] | None = None
    # A different account each time, so that only the per-address limit can refuse.
    for i in range(ADDRESS_LOGINS + 1):
        status, body, headers = http_json(
            "POST", url, {"username": f"nobody{i}", "password": "x"}, timeout=30
        )
        statuses.append(status)
        if status == 429:
            refused = (body, {k.lower(): v for k, v in headers.items()})
            break
    # alice, carol and erin logged in here already, within the minute or not.
    assert refused is not None, statuses
    assert set(statuses[:-1]) <= {401}, statuses
    body, headers = refused
    assert body["error"]["code"] == "rate_limited"
    assert int(headers["retry-after"]) >= 1


def test_the_login_backoff_follows_the_nodes_settings(net: DevNetwork) -> None:
    url = net.nodes[1].url + "/api/v1/sessions"

    def attempt(password: str) -> tuple[int, dict[str, str]]:
        status, _, headers = http_json("POST", url, {"username": "dave", "password": password}, timeout=30)
        return status, {k.lower(): v for k, v in headers.items()}

    assert attempt("wrong")[0] == 401  # the one free failure (--login-free-failures 1)
    assert attempt("wrong")[0] == 401  # the next locks the account for 1 s
    status, headers = attempt(PASSWORDS["dave"])
    assert (status, headers.get("retry-after")) == (429, "1")
    time.sleep(1.1)
    for _ in range(2):  # each further failure doubles the wait, capped at 2 s (--login-max-lockout 2)
        assert attempt("wrong")[0] == 401
        status, headers = attempt(PASSWORDS["dave"])
        assert status == 429
        assert int(headers["retry-after"]) <= 2
        time.sleep(int(headers["retry-after"]) + 0.1)
    assert attempt(PASSWORDS["dave"])[0] == 201


def test_no_request_ended_in_a_server_error(net: DevNetwork) -> None:
    assert server_errors(net) == []

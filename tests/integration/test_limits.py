"""Issue 5, protections on real processes: per-peer and per-account rate limits,
an operator's node block (from the `flame node-admin` CLI), and a user's block."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from flamechat.devnet import DevNetwork, Server, http_json
from flamechat.keyfile import load_or_create_key
from tests.conftest import PASSWORDS, make_network
from tests.integration.files_support import raw_request as files_raw_request
from tests.integration.peer import FakePeer
from tests.support import ApiSession, eventually, login, server_errors

pytestmark = pytest.mark.integration

PEER_RATE = 5  # federation requests per second node 2 takes from one peer
ACCOUNT_LOGINS = 4  # login attempts per account per minute on node 2


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevNetwork]:
    network = make_network(
        tmp_path_factory.mktemp("limits"),
        node_args=[
            ["--retry-base", "0.2", "--retry-max", "1"],
            [
                "--peer-requests-per-second",
                str(PEER_RATE),
                "--logins-per-minute-per-account",
                str(ACCOUNT_LOGINS),
            ],
        ],
    )
    try:
        yield network
    finally:
        network.stop()


def incoming_texts(session: ApiSession, peer: str) -> list[str]:
    return [m["body"] for m in session.history(peer) if m["direction"] == "in"]


def state_of(session: ApiSession, peer: str, message_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(m for m in session.history(peer) if m["id"] == message_id)
    return found


def node_admin(node: Server, *args: str) -> None:
    data_dir = node.args[node.args.index("--data-dir") + 1]
    subprocess.run(
        [sys.executable, "-m", "flamechat", "node-admin", *args, "--data-dir", data_dir],
        check=True,
        capture_output=True,
        timeout=60,
    )


class Flood:
    """A peer node hammering node 2's federation API from a thread (bounded in time)."""

    def __init__(self, peer: FakePeer, url: str, *, seconds: float = 30.0) -> None:
        self.peer = peer
        self.url = url
        self.seconds = seconds
        self.answers: list[tuple[float, int, str | None]] = []  # (when, status, Retry-After)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            answer = self.peer.request("GET", self.url + "/federation/v1/presence")
            retry_after = {k.lower(): v for k, v in answer.headers.items()}.get("retry-after")
            self.answers.append((time.monotonic(), answer.status, retry_after))
            time.sleep(0.02)  # about 40 a second: eight times the limit

    def __enter__(self) -> Flood:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def refused_since(self, since: float) -> int:
        return sum(1 for when, status, _ in list(self.answers) if when >= since and status == 429)


def test_a_flooding_peer_is_throttled_while_another_peers_messages_get_through(
    net: DevNetwork, alice: ApiSession, bob: ApiSession
) -> None:
    assert net.directory is not None
    flooder = FakePeer(net.directory.url)
    flooder.register()
    node2 = net.nodes[1].url

    with Flood(flooder, node2) as flood:
        eventually(lambda: flood.refused_since(0) >= 5, what="the flood being refused")
        during = time.monotonic()
        sent = alice.send("bob", "through the flood")
        eventually(lambda: "through the flood" in incoming_texts(bob, "alice"), timeout=10, what="delivery")
        assert flood.refused_since(during) > 0, (
            "the flood should still be refused while alice's message passed"
        )

    statuses = {status for _, status, _ in flood.answers}
    assert statuses == {200, 429}, statuses
    for _, status, retry_after in flood.answers:
        if status == 429:
            assert retry_after is not None
            assert int(retry_after) >= 1
    # Throttled to the configured rate: over the whole flood, about PEER_RATE a second got in
    # (two seconds of slack for the window edges), however many were sent.
    accepted = sum(1 for _, status, _ in flood.answers if status == 200)
    lasted = flood.answers[-1][0] - flood.answers[0][0]
    assert accepted <= PEER_RATE * (lasted + 2), (accepted, lasted, len(flood.answers))
    eventually(lambda: state_of(alice, "bob", sent["id"])["state"] == "delivered", what="receipt at alice")


def test_login_attempts_are_limited_per_account(net: DevNetwork) -> None:
    node2 = net.nodes[1].url + "/api/v1/sessions"

    def attempt(username: str, password: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        status, body, headers = http_json(
            "POST", node2, {"username": username, "password": password}, timeout=30
        )
        return status, body, {k.lower(): v for k, v in headers.items()}

    statuses = [attempt("dave", f"guess-{i}")[0] for i in range(ACCOUNT_LOGINS)]
    assert statuses == [401] * ACCOUNT_LOGINS
    status, body, headers = attempt("dave", "guess-again")
    assert (status, body["error"]["code"]) == (429, "rate_limited")
    assert int(headers["retry-after"]) >= 1
    # Even the right password waits now: the limit is on the account, not on wrong guesses.
    status, _, _ = attempt("dave", PASSWORDS["dave"])
    assert status == 429
    # Another account, from the same address, is not held up.
    status, body, _ = attempt("carol", PASSWORDS["carol"])
    assert status == 201, body


def test_a_node_blocked_by_the_operator_is_refused(
    net: DevNetwork, alice: ApiSession, bob: ApiSession
) -> None:
    node1, node2 = net.nodes
    status, health, _ = http_json("GET", node1.url + "/healthz")
    assert status == 200
    node1_id = health["node_id"]
    # The test speaks as node 1 itself, with its own key, to see what node 2 answers it.
    node1_key = load_or_create_key(Path(node1.args[node1.args.index("--data-dir") + 1]) / "node.key")
    assert node1_key.node_id == node1_id
    as_node1 = FakePeer(net.directory.url if net.directory else "", key=node1_key)

    assert as_node1.request("GET", node2.url + "/federation/v1/presence").status == 200
    node_admin(node2, "block-node", node1_id)
    try:
        refused = eventually(
            lambda: (a := as_node1.request("GET", node2.url + "/federation/v1/presence")).status == 403 and a,
            what="node 1 refused by node 2",
        )
        assert refused.code == "node_blocked"

        sent = alice.send("bob", "from a blocked node")
        failed = eventually(
            lambda: (m := state_of(alice, "bob", sent["id"]))["state"] == "failed" and m,
            what="alice told her message was refused",
        )
        assert failed["error"]
        assert "from a blocked node" not in incoming_texts(bob, "alice")
    finally:
        node_admin(node2, "unblock-node", node1_id)

    eventually(
        lambda: as_node1.request("GET", node2.url + "/federation/v1/presence").status == 200,
        what="node 1 accepted again",
    )
    alice.send("bob", "unblocked again")
    eventually(lambda: "unblocked again" in incoming_texts(bob, "alice"), what="delivery after unblock")
    assert "from a blocked node" not in incoming_texts(bob, "alice")


def test_a_blocked_senders_next_message_is_dropped_without_telling_them(
    alice: ApiSession, bob: ApiSession
) -> None:
    status, body = bob.call("PUT", "/api/v1/blocks/alice")
    assert status == 200, body
    assert body["blocked"] == ["alice"]
    try:
        sent = alice.send("bob", "you will not read this")
        assert sent["error"] is None
        # "sent": bob's node answered 200, as if it stored it. No error, no receipt either.
        eventually(lambda: state_of(alice, "bob", sent["id"])["state"] == "sent", what="sent at alice")
        assert "you will not read this" not in incoming_texts(bob, "alice")
    finally:
        status, body = bob.call("DELETE", "/api/v1/blocks/alice")
        assert status == 200, body

    alice.send("bob", "after the unblock")
    eventually(lambda: "after the unblock" in incoming_texts(bob, "alice"), what="delivery after unblock")
    dropped = state_of(alice, "bob", sent["id"])
    assert (dropped["state"], dropped["error"]) == ("sent", None)  # never "delivered", never "failed"
    assert "you will not read this" not in incoming_texts(bob, "alice")  # dropped, not held


def test_a_user_blocked_by_the_operator_reaches_nobody_on_the_node(
    net: DevNetwork, alice: ApiSession, bob: ApiSession
) -> None:
    node2 = net.nodes[1]
    carol = login(node2, "carol", PASSWORDS["carol"])  # dave is rate-limited by now
    node_admin(node2, "block-user", "alice")
    try:
        # The operator's list is re-read every couple of seconds: wait until it holds.
        probe = 0

        def dropped() -> bool:
            nonlocal probe
            probe += 1
            text = f"probe {probe}"
            sent = alice.send("bob", text)
            eventually(lambda: state_of(alice, "bob", sent["id"])["state"] != "pending", what="probe left")
            time.sleep(0.5)
            return text not in incoming_texts(bob, "alice")

        eventually(dropped, timeout=20, interval=0.5, what="the operator's block in force")
        for to, session in (("bob", bob), ("carol", carol)):
            sent = alice.send(to, f"to {to} while blocked by the operator")
            eventually(lambda s=sent, t=to: state_of(alice, t, s["id"])["state"] == "sent", what="sent")
            time.sleep(1.0)
            assert f"to {to} while blocked by the operator" not in incoming_texts(session, "alice")
    finally:
        node_admin(node2, "unblock-user", "alice")
    sent = alice.send("carol", "after the operator's unblock")
    eventually(
        lambda: "after the operator's unblock" in incoming_texts(carol, "alice"), timeout=20, what="delivered"
    )


def test_an_avatar_may_be_as_large_as_the_limit_says_and_no_larger(alice: ApiSession) -> None:
    """5 MiB, as the limits table says: the node's request body limit (512 KiB)
    refused most phone photos before the avatar's own limit was reached."""
    photo = io.BytesIO()
    Image.frombytes("RGB", (800, 800), os.urandom(800 * 800 * 3)).save(photo, format="PNG")
    assert 1024 * 1024 < len(photo.getvalue()) < 5 * 1024 * 1024
    status, _, raw = files_raw_request(
        alice, "PUT", "/api/v1/me/avatar", photo.getvalue(), {"Content-Type": "image/png"}
    )
    assert status == 200, raw[:300]
    assert json.loads(raw)["avatar_sha256"]
    too_large = b"\0" * (5 * 1024 * 1024 + 1)
    status, _, raw = files_raw_request(
        alice, "PUT", "/api/v1/me/avatar", too_large, {"Content-Type": "image/png"}
    )
    assert (status, json.loads(raw)["error"]["code"]) == (413, "payload_too_large")


def test_no_request_ended_in_a_server_error(net: DevNetwork) -> None:
    """Runs last in this module: floods, limits and blocks never produced a 500."""
    assert server_errors(net) == []

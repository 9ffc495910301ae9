"""Issue 2's account administration and the directory's presence, on real processes:
an administrator resets a password from the CLI (and the node's operator confirms
it); a node that dies without a word has its users shown offline once the
directory's presence reports go stale; a user's first logins sent all at once
leave one set of keys, which others can write to; a conversation or profile
page of no one is 404."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from flamechat.devnet import DevNetwork, http_json
from tests.conftest import PASSWORDS
from tests.integration.conftest import NetworkFactory
from tests.support import EventStream, eventually, login, raw_request

pytestmark = pytest.mark.integration


def _login_status(url: str, username: str, password: str) -> tuple[int, dict[str, Any]]:
    status, body, _ = http_json(
        "POST", url + "/api/v1/sessions", {"username": username, "password": password}
    )
    return status, body


def test_an_administrator_resets_a_password_from_the_cli(network_factory: NetworkFactory) -> None:
    net = network_factory()
    assert net.directory is not None
    node1, node2 = net.nodes
    login(node2, "bob", PASSWORDS["bob"])  # bob has keys, so alice can write to him
    alice = login(node1, "alice", PASSWORDS["alice"])  # her node caches a verifier and her keys
    alice.send("bob", "written before the reset")
    data_dir = net.directory.args[net.directory.args.index("--data-dir") + 1]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "flamechat",
            "user",
            "reset-password",
            "alice",
            "--password",
            "a-brand-new-passphrase",
            "--password-profile",
            "minimal",
            "--data-dir",
            data_dir,
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    status, body = _login_status(node1.url, "alice", PASSWORDS["alice"])
    assert status == 401
    assert body["error"]["code"] == "invalid_credentials"
    # The directory's word alone does not let anyone into a node that knows alice:
    # a directory operator who reset her password still cannot read her node's data.
    status, body = _login_status(node1.url, "alice", "a-brand-new-passphrase")
    assert status == 409
    assert body["error"]["code"] == "local_credentials_mismatch"
    # Her node's operator confirms the reset; then the new password works there.
    node_data = node1.args[node1.args.index("--data-dir") + 1]
    subprocess.run(
        [sys.executable, "-m", "flamechat", "node-admin", "forget-user", "alice", "--data-dir", node_data],
        check=True,
        capture_output=True,
        timeout=60,
    )
    again = login(node1, "alice", "a-brand-new-passphrase")
    assert [m["body"] for m in again.history("bob")] == ["written before the reset"]
    assert _login_status(node1.url, "alice", PASSWORDS["alice"])[0] == 401


def test_a_node_that_dies_silently_has_its_users_shown_offline(network_factory: NetworkFactory) -> None:
    net = network_factory()  # presence reported every second, kept by the directory for four
    node1, node2 = net.nodes
    alice = login(node1, "alice", PASSWORDS["alice"])
    bob = login(node2, "bob", PASSWORDS["bob"])
    stream = EventStream(bob).__enter__()
    try:
        eventually(lambda: alice.listed("bob")["online"], what="bob online for alice")
        node2.kill()  # no goodbye: its last report simply stops being renewed
        eventually(lambda: not alice.listed("bob")["online"], timeout=20, what="bob offline once stale")
    finally:
        stream.close()


def test_first_logins_sent_at_once_leave_keys_that_others_can_write_to(network: DevNetwork) -> None:
    node1, node2 = network.nodes
    with ThreadPoolExecutor(6) as pool:  # six tabs logging dave in for the first time, all at once
        sessions = list(pool.map(lambda _: login(node1, "dave", PASSWORDS["dave"]), range(6)))
    carol = login(node2, "carol", PASSWORDS["carol"])
    sent = carol.send("dave", "hello, however many tabs you have")

    def arrived() -> bool:
        return [m["body"] for m in sessions[-1].history("carol")] == ["hello, however many tabs you have"]

    eventually(arrived, timeout=30, what="carol's message in dave's history")
    state = eventually(
        lambda: (
            next(m["state"] for m in carol.history("dave") if m["id"] == sent["id"]) in ("delivered", "read")
        ),
        timeout=30,
        what="carol's message delivered to dave",
    )
    assert state


def test_a_conversation_or_a_profile_of_no_one_is_404(network: DevNetwork) -> None:
    node1 = network.nodes[0]
    alice = login(node1, "alice", PASSWORDS["alice"])
    status, body = alice.call("GET", "/api/v1/conversations/nobody/messages")
    assert status == 404, body
    assert body["error"]["code"] == "unknown_user"  # as when sending to nobody
    status, body = alice.call("GET", "/api/v1/conversations/bob/messages")  # someone, not written to yet
    assert status == 200, body
    assert body["messages"] == []

    browser = {"Cookie": alice.cookie, "Accept": "text/html"}
    for name in ("nobody", "NOPE"):  # no such user; no name anyone could have
        answer = raw_request("GET", f"{node1.url}/profile/{name}", None, browser)
        assert answer.status == 404, answer
        headers = {k.lower(): v for k, v in answer.headers.items()}
        assert headers["content-type"].startswith("text/html"), headers
        assert "No such person" in answer.body["raw"]
        assert f"@{name}" in answer.body["raw"]
    answer = raw_request("GET", f"{node1.url}/profile/bob", None, browser)
    assert answer.status == 200, answer
    assert "No such person" not in answer.body["raw"]


def test_an_address_with_no_page_is_a_page_saying_so_and_the_apis_keep_their_json(
    network: DevNetwork,
) -> None:
    node1 = network.nodes[0]
    page = raw_request("GET", f"{node1.url}/conversatoins/bob", None, {"Accept": "text/html,*/*"})  # a typo
    assert page.status == 404
    assert {k.lower(): v for k, v in page.headers.items()}["content-type"].startswith("text/html")
    assert "Page not found" in page.body["raw"]
    assert '"error"' not in page.body["raw"]
    for path in ("/api/v1/nothing", "/federation/v1/nothing", "/static/nothing.js"):
        answer = raw_request("GET", node1.url + path, None, {"Accept": "text/html"})
        assert answer.status == 404
        assert answer.body["error"]["code"] == "not_found"  # one error shape for every API


def test_logging_out_ends_that_sessions_live_stream_at_once(network: DevNetwork) -> None:
    """A tab left open on a shared screen stops receiving the moment its person logs out
    elsewhere in the same session, not at its next missed heartbeat."""
    node1, node2 = network.nodes
    login(node2, "bob", PASSWORDS["bob"])
    alice = login(node1, "alice", PASSWORDS["alice"])
    other = login(node1, "alice", PASSWORDS["alice"])  # alice, logged in on another machine
    with EventStream(alice) as tab, EventStream(other) as kept:
        status, _ = alice.call("DELETE", "/api/v1/sessions/current")
        assert status == 204
        eventually(lambda: tab._thread is not None and not tab._thread.is_alive(), what="the stream ended")
        bob = login(node2, "bob", PASSWORDS["bob"])
        bob.send("alice", "after the logout")
        eventually(
            lambda: any(e.get("type") == "message" for e in kept.received()),
            what="the other session still live",
        )
        assert not any(e.get("type") == "message" for e in tab.received())

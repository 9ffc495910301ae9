"""Writing to a colleague who has never signed in, with real processes: an
administrator creates grace's account, alice (node 1) writes to her at once,
and what alice wrote reaches grace when she first signs in on node 2."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from flamechat.devnet import DevNetwork
from tests.conftest import PASSWORDS, make_network
from tests.integration.files_support import download, send_file, wait_file_state
from tests.support import eventually, login

pytestmark = pytest.mark.integration

GRACE_PASSWORD = "grace-password"


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevNetwork]:
    network = make_network(tmp_path_factory.mktemp("waiting"), users={"alice": PASSWORDS["alice"]})
    try:
        yield network
    finally:
        network.stop()


def test_messages_and_a_file_wait_for_a_new_colleague_and_arrive_when_she_signs_in(net: DevNetwork) -> None:
    node1, node2 = net.nodes
    net.create_user("grace", GRACE_PASSWORD, "Grace Hopper")  # created by an admin, never signed in
    alice = login(node1, "alice", PASSWORDS["alice"])
    status, grace_seen = alice.call("GET", "/api/v1/users/grace")
    assert (status, grace_seen["has_keys"]) == (200, False)

    first = alice.send("grace", "welcome aboard, grace")
    second = alice.send("grace", "lunch at noon on your first day?")
    data = os.urandom(70_000)
    handbook = send_file(alice, "grace", data, name="handbook.bin")
    assert [m["state"] for m in (first, second, handbook)] == ["waiting"] * 3
    assert [m["state"] for m in alice.history("grace")] == ["waiting"] * 3

    grace = login(node2, "grace", GRACE_PASSWORD)  # her first login: node 2 becomes her home

    def arrived() -> list[dict[str, Any]] | None:
        messages = grace.history("alice")
        return messages if len(messages) == 3 else None

    at_grace = eventually(arrived, timeout=60, what="alice's messages at grace")
    assert [m["id"] for m in at_grace] == [first["id"], second["id"], handbook["id"]]
    assert [m["sent_at"] for m in at_grace] == [first["sent_at"], second["sent_at"], handbook["sent_at"]]
    assert [m["body"] for m in at_grace[:2]] == ["welcome aboard, grace", "lunch at noon on your first day?"]
    eventually(
        lambda: [m["state"] for m in alice.history("grace")] == ["delivered"] * 3,
        timeout=60,
        what="delivered at alice",
    )
    wait_file_state(grace, "alice", handbook["id"])
    status, _, body = download(grace, handbook["id"])
    assert (status, body) == (200, data)

    status, grace_seen = alice.call("GET", "/api/v1/users/grace")
    assert grace_seen["has_keys"] is True
    later = alice.send("grace", "see you tomorrow")
    assert later["state"] == "pending"  # nothing waits any more: sealed and sent at once

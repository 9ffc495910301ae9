"""Typing notices between real nodes: shown live to the person written to and never
stored; not sent while appearing offline, too often, or to someone blocked; dropped
when the recipient blocks the sender, when stale, and when it is not one."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from flamechat.devnet import DevNetwork
from tests.integration.conftest import network_with_erin
from tests.integration.peer import FakePeer
from tests.support import ApiSession, EventStream, eventually

pytestmark = pytest.mark.integration

# A node sends one notice per conversation a second, and shows one per pair a second.
NEXT_NOTICE = 1.1


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevNetwork]:
    network = network_with_erin(tmp_path_factory.mktemp("typing"))
    try:
        yield network
    finally:
        network.stop()


def typing(session: ApiSession, peer: str) -> bool:
    status, body = session.call("POST", f"/api/v1/conversations/{peer}/typing")
    assert status == 200, body
    return bool(body["sent"])


def notices(stream: EventStream, sender: str) -> list[dict[str, Any]]:
    return [e for e in stream.received() if e.get("type") == "typing" and e.get("username") == sender]


def test_a_notice_reaches_the_other_node_live_at_most_every_few_seconds(
    alice: ApiSession, bob: ApiSession
) -> None:
    with EventStream(bob) as tab:
        assert typing(alice, "bob")
        assert not typing(alice, "bob")  # at once again: nothing more goes
        shown = eventually(lambda: notices(tab, "alice"), what="alice typing, on bob's stream")
        assert shown[0]["for_ms"] > 0
        time.sleep(NEXT_NOTICE)
        assert typing(alice, "bob")
        eventually(lambda: len(notices(tab, "alice")) == 2, what="the second notice")
    # Nothing of it is stored: no message appeared in either history.
    assert alice.history("bob") == []
    assert bob.history("alice") == []


def test_no_notice_while_appearing_offline_nor_to_someone_blocked(alice: ApiSession, bob: ApiSession) -> None:
    time.sleep(NEXT_NOTICE)
    assert alice.call("PUT", "/api/v1/me/status", {"status": "invisible", "status_text": ""})[0] == 200
    try:
        assert not typing(alice, "bob")  # it would tell bob she is there
    finally:
        alice.call("PUT", "/api/v1/me/status", {"status": "online", "status_text": ""})
    assert alice.call("PUT", "/api/v1/blocks/bob")[0] in (200, 204)
    try:
        assert not typing(alice, "bob")
    finally:
        alice.call("DELETE", "/api/v1/blocks/bob")
    assert typing(alice, "bob")
    status, body = alice.call("POST", "/api/v1/conversations/nobody/typing")
    assert (status, body["error"]["code"]) == (404, "unknown_user")


def test_a_recipient_who_blocks_the_sender_is_shown_nothing(
    net: DevNetwork, bob: ApiSession, erin: FakePeer
) -> None:
    node2 = net.nodes[1].url
    assert bob.call("PUT", "/api/v1/blocks/erin")[0] in (200, 204)
    try:
        with EventStream(bob) as tab:
            blocked = erin.seal("erin", "bob", "", kind="typing")
            answer = erin.request("PUT", f"{node2}/federation/v1/typing/{blocked['id']}", blocked)
            assert answer.status == 204, answer  # the same answer as when shown: erin learns nothing
            bob.call("DELETE", "/api/v1/blocks/erin")
            shown = erin.seal("erin", "bob", "", kind="typing")
            answer = erin.request("PUT", f"{node2}/federation/v1/typing/{shown['id']}", shown)
            assert answer.status == 204, answer
            eventually(lambda: notices(tab, "erin"), what="the notice sent after the unblock")
            assert len(notices(tab, "erin")) == 1  # the one sent while blocked never showed
    finally:
        bob.call("DELETE", "/api/v1/blocks/erin")


def test_a_stale_notice_is_dropped_and_a_message_may_not_come_this_way(
    net: DevNetwork, bob: ApiSession, erin: FakePeer
) -> None:
    node2 = net.nodes[1].url
    time.sleep(NEXT_NOTICE)  # past the shown-once-a-second bound of the test before
    with EventStream(bob) as tab:
        stale = erin.seal("erin", "bob", "", kind="typing", sent_at=int(time.time() * 1000) - 60_000)
        answer = erin.request("PUT", f"{node2}/federation/v1/typing/{stale['id']}", stale)
        assert answer.status == 204, answer
        message = erin.seal("erin", "bob", "slipped in as a typing notice")
        answer = erin.request("PUT", f"{node2}/federation/v1/typing/{message['id']}", message)
        assert (answer.status, answer.body["error"]["code"]) == (403, "envelope_rejected")
        fresh = erin.seal("erin", "bob", "", kind="typing")
        answer = erin.request("PUT", f"{node2}/federation/v1/typing/{fresh['id']}", fresh)
        assert answer.status == 204, answer
        eventually(lambda: notices(tab, "erin"), what="the fresh notice")
        assert len(notices(tab, "erin")) == 1  # not the stale one
    assert "slipped in" not in str(bob.history("erin"))

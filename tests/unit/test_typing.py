"""Typing notices (services/typing.py) with fake neighbours: a peer that does not
speak the feature is sent nothing; notices on their way are bounded; a notice
from a clock far ahead is dropped like a stale one; a notice between two users
of one node is shown there, unless the recipient blocks the sender."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from flamechat.crypto import OpenedEnvelope, UserKeys
from flamechat.services import typing as typing_module
from flamechat.services.events import EventHub
from flamechat.services.typing import FRESH_MS, IN_FLIGHT, KIND, TypingService
from flamechat.storage.node_social import ChosenStatus
from flamechat.storage.records import KnownUser
from tests.unit.support import FakeClock

ME, PEER = "n" + "m" * 24, "n" + "p" * 24
KEYS = UserKeys.generate()


def user(username: str, home: str) -> KnownUser:
    url = f"http://127.0.0.1:9/{home}"
    return KnownUser(username, username.title(), home, url, KEYS.public.sign, KEYS.public.box, True, 0)


@dataclass
class Neighbours:
    """Directory, keyring, presence, blocks, receiving and peers, as typing uses them."""

    users: dict[str, KnownUser] = field(default_factory=dict)
    blocked: set[tuple[str, str]] = field(default_factory=set)  # (owner, blocked)
    features: frozenset[str] = frozenset({"typing"})
    hold: asyncio.Event = field(default_factory=asyncio.Event)
    sent: list[str] = field(default_factory=list)
    opened: OpenedEnvelope | None = None

    async def resolve(self, username: str) -> KnownUser:
        return self.users[username]

    def require(self, username: str) -> UserKeys:
        return KEYS

    async def status_of(self, username: str) -> ChosenStatus:
        return ChosenStatus("online", "")

    async def is_blocked(self, owner: str, username: str) -> bool:
        return (owner, username) in self.blocked

    async def drops(self, recipient: str, sender: str) -> bool:
        return (recipient, sender) in self.blocked

    async def open_live(self, from_node: str, wire: dict[str, Any]) -> OpenedEnvelope | None:
        return self.opened

    async def features_of(self, node_url: str) -> frozenset[str]:
        return self.features

    async def typing(self, node_url: str, envelope: dict[str, Any]) -> None:
        self.sent.append(envelope["recipient"])
        await self.hold.wait()


def service(n: Neighbours, clock: FakeClock, events: EventHub) -> TypingService:
    peers = type("Peers", (), {"features": n.features_of, "typing": n.typing})()
    return TypingService(
        cast(Any, n),
        cast(Any, n),
        events,
        cast(Any, n),
        cast(Any, n),
        cast(Any, n),
        cast(Any, peers),
        clock,
        node_id=ME,
    )


async def test_a_peer_that_does_not_speak_typing_is_sent_nothing() -> None:
    n = Neighbours(users={"bob": user("bob", PEER)}, features=frozenset({"envelopes"}))
    n.hold.set()
    typing = service(n, FakeClock(), EventHub())
    assert await typing.typing("alice", "bob")  # the page hears "sent": the node tried
    await typing.close()
    assert n.sent == []


async def test_notices_on_their_way_are_bounded() -> None:
    people = {f"u{i}": user(f"u{i}", PEER) for i in range(IN_FLIGHT + 5)}
    n = Neighbours(users=people)  # the peer never answers while held
    typing = service(n, FakeClock(), EventHub())
    results = [await typing.typing("alice", name) for name in people]
    await asyncio.sleep(0)
    assert results.count(True) == IN_FLIGHT
    n.hold.set()
    await typing.close()
    assert len(n.sent) == IN_FLIGHT
    assert await typing.typing("alice", "u0") is False  # too soon for that one...
    assert await typing.typing("alice", f"u{IN_FLIGHT + 1}")  # ...but room again for others
    await typing.close()


@pytest.mark.parametrize("skew", [FRESH_MS + 1, -(FRESH_MS + 1)])
async def test_a_notice_too_far_from_now_is_dropped(skew: int) -> None:
    clock = FakeClock()
    events = EventHub(clock)
    sub = events.subscribe("bob")
    now = int(clock.now() * 1000)
    n = Neighbours()
    typing = service(n, clock, events)
    n.opened = OpenedEnvelope(id="x", sender="erin", recipient="bob", sent_at=now - skew, kind=KIND, body={})
    await typing.receive(PEER, {})
    assert sub.queue.empty()
    n.opened = OpenedEnvelope(id="y", sender="erin", recipient="bob", sent_at=now, kind=KIND, body={})
    await typing.receive(PEER, {})
    assert sub.queue.get_nowait() == {"type": "typing", "username": "erin", "for_ms": typing_module.SHOWN_MS}


async def test_on_one_node_it_is_shown_unless_the_recipient_blocks_the_sender() -> None:
    clock = FakeClock()
    events = EventHub(clock)
    sub = events.subscribe("bob")
    n = Neighbours(users={"bob": user("bob", ME)}, blocked={("bob", "alice")})
    typing = service(n, clock, events)
    assert await typing.typing("alice", "bob")  # alice is not told
    assert sub.queue.empty()
    n.blocked.clear()
    clock.advance(1.1)
    assert await typing.typing("alice", "bob")
    assert sub.queue.get_nowait()["username"] == "alice"
    assert n.sent == []  # nothing left the node

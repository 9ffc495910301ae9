"""Every network call has a timeout (federation/client.py): against a server
that never answers, each kind of call fails with a transient TransportError
after its own timeout instead of waiting for ever, and a node is built with
the timeouts docs/protocol.md names.

The server is real (loopback) because the timeouts are aiohttp's; each is set
to a fraction of a second here, and ``asyncio.wait_for`` only keeps a lost
timeout from hanging the test (it would fail it with a different error).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from flamechat.config import NodeSettings
from flamechat.federation.client import HttpDirectory, HttpPeers, SignedClient
from flamechat.node import build_node
from flamechat.services.ports import TransportError
from tests.unit.hanging import HangingServer
from tests.unit.support import FakeClock, node_key

T = TypeVar("T")
SHORT = 0.3  # the timeout under test
BOUND = 10.0  # only reached if the timeout under test is lost


async def fails_in_time(call: Awaitable[T]) -> TransportError:
    with pytest.raises(TransportError) as failed:
        await asyncio.wait_for(call, BOUND)
    assert failed.value.transient  # worth retrying later: the envelope is not failed
    return failed.value


@pytest.fixture
async def hanging() -> AsyncIterator[HangingServer]:
    async with HangingServer() as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[SignedClient]:
    signed = SignedClient(node_key("me"), FakeClock(), timeout=SHORT, connect_timeout=SHORT)
    yield signed
    await signed.close()


async def test_a_delivery_to_a_peer_that_never_answers_times_out(
    client: SignedClient, hanging: HangingServer
) -> None:
    peers = HttpPeers(client)
    envelope: dict[str, Any] = {"id": "00000000-0000-7000-8000-000000000001"}
    error = await fails_in_time(peers.deliver(hanging.url, envelope))
    assert "Timeout" in str(error)
    assert hanging.connections == 1
    assert b"PUT /federation/v1/envelopes/00000000-0000-7000-8000-000000000001" in hanging.received


async def test_a_deposit_at_a_relay_that_never_answers_times_out(
    client: SignedClient, hanging: HangingServer
) -> None:
    peers = HttpPeers(client)
    await fails_in_time(peers.deposit(hanging.url, "n" + "b" * 25, {"id": "x"}))
    assert b"PUT /federation/v1/relay/envelopes/x" in hanging.received


async def test_presence_and_directory_calls_have_their_own_shorter_timeouts(hanging: HangingServer) -> None:
    """The client's own timeout is long here: only the per-call ones can end these calls."""
    slow = SignedClient(node_key("me"), FakeClock(), timeout=600.0, connect_timeout=600.0)
    try:
        peers = HttpPeers(slow, presence_timeout=SHORT)
        await fails_in_time(peers.presence(hanging.url))
        await fails_in_time(peers.profile(hanging.url, "bob"))
        directory = HttpDirectory(slow, hanging.url, timeout=SHORT)
        await fails_in_time(directory.list_users())
        await fails_in_time(directory.report_presence([]))
        assert hanging.connections >= 4
    finally:
        await slow.close()


async def test_a_node_uses_the_documented_timeouts(tmp_path: Path) -> None:
    """docs/protocol.md, "Limits": peer call 10 s (connect 3 s), directory call 5 s,
    presence and profile calls 2 s. Minutes instead would let one dead peer hold
    a delivery slot, or the presence loop, for that long."""
    node = build_node(NodeSettings(data_dir=tmp_path / "node", password_profile="minimal"))
    try:
        assert (node.client.timeout.total, node.client.timeout.sock_connect) == (10.0, 3.0)
        port = node.directory.port
        assert isinstance(port, HttpDirectory)
        assert port.timeout == 5.0
        peers = node.delivery.peers
        assert isinstance(peers, HttpPeers)
        assert peers.presence_timeout == 2.0
        assert node.presence.peers is peers
        assert node.relay.peers is peers
    finally:
        await node.db.close()

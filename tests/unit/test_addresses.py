"""Where a node may say it is, and where this node never connects (protocol/addresses.py).

A hostile node registers the URL its peers will call: without these rules it
could make them call other paths and other machines on their side of the
network (their cloud's metadata service, say).
"""

from __future__ import annotations

import time

import pytest
from pydantic import ValidationError

from flamechat.federation.client import SignedClient
from flamechat.protocol import models
from flamechat.protocol.addresses import base_url_problem, refused_address
from flamechat.services.ports import TransportError
from tests.unit.support import FakeClock, node_key

KEY = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8701",
        "https://node-a.example.com",
        "https://node-a.example.com/",
        "https://example.com:8443/flame/node-a",
        "http://[::1]:8701",
        "http://10.1.2.3",
    ],
)
def test_plain_base_urls_are_accepted(url: str) -> None:
    assert base_url_problem(url) is None
    assert models.NodeRegistration(url=url, public_key=KEY).url == url


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379/?",  # peers' paths would land in the query of another service
        "http://metadata.internal/latest/meta-data#",
        "http://internal/admin?x=",
        "http://user:secret@node.example.com",
        "http://good.example.com@evil.example.com",
        "http://evil.example.com\\@good.example.com",
        "http://node.example.com/a b",
        "http://node.example.com/\r\nX-Injected: 1",
        "http://nöde.example.com",
        "http://node.example.com:99999",
        "http://node.example.com:0",
        "http://",
        "http:///path-only",
        "ftp://node.example.com",
        "javascript:alert(1)//",
    ],
)
def test_urls_that_could_send_peers_elsewhere_are_refused_at_registration(url: str) -> None:
    assert base_url_problem(url) is not None
    with pytest.raises(ValidationError):
        models.NodeRegistration(url=url, public_key=KEY)


@pytest.mark.parametrize(
    "host",
    [
        "169.254.169.254",  # cloud metadata
        "169.254.0.1",
        "fe80::1",
        "fe80::1%eth0",
        "fd00:ec2::254",
        "::ffff:169.254.169.254",  # the same, IPv4-mapped
        "0.0.0.0",
        "::",
        "224.0.0.1",
        "ff02::1",
        "255.255.255.255",
    ],
)
def test_link_local_multicast_and_unspecified_addresses_are_never_connected_to(host: str) -> None:
    assert refused_address(host) is not None


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "::1", "10.0.0.5", "192.168.1.20", "203.0.113.7", "node.example"]
)
def test_loopback_private_and_public_addresses_and_names_pass(host: str) -> None:
    assert refused_address(host) is None


async def test_the_client_refuses_to_connect_to_a_metadata_address() -> None:
    client = SignedClient(node_key("a"), FakeClock(time.time()), timeout=5, connect_timeout=2)
    try:
        for url in ("http://169.254.169.254/federation/v1/version", "http://[::ffff:169.254.169.254]/x"):
            with pytest.raises(TransportError, match="refusing to connect"):
                await client.call_raw("GET", url)
    finally:
        await client.close()

"""Networks of their own for tests that kill, restart or reconfigure processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flamechat.devnet import DevNetwork
from tests.conftest import PASSWORDS, make_network
from tests.integration.peer import FakePeer
from tests.support import ApiSession, login

NetworkFactory = Callable[..., DevNetwork]
ERIN_PASSWORD = "erin-password"  # lives on a test's own fake node (``erin``)


@pytest.fixture
def network_factory(tmp_path: Path) -> Iterator[NetworkFactory]:
    """``make(nodes=3, node_args=[[...], ...])``: a network stopped after the test,
    whatever state its processes were left in."""
    started: list[DevNetwork] = []

    def make(**options: Any) -> DevNetwork:
        net = make_network(tmp_path / f"net{len(started)}", **options)
        started.append(net)
        return net

    try:
        yield make
    finally:
        for net in started:
            net.stop()


# alice on the first node and bob on the second, logged in once per module, for the
# modules whose network is called ``net`` (each defines its own).
@pytest.fixture(scope="module")
def alice(net: DevNetwork) -> ApiSession:
    return login(net.nodes[0], "alice", PASSWORDS["alice"])


@pytest.fixture(scope="module")
def bob(net: DevNetwork) -> ApiSession:
    """Logged in once, so he has keys and others can write to him."""
    return login(net.nodes[1], "bob", PASSWORDS["bob"])


def network_with_erin(root: Path) -> DevNetwork:
    """The usual network, plus an account for erin, whom a test's fake node hosts."""
    return make_network(root, users={**PASSWORDS, "erin": ERIN_PASSWORD})


@pytest.fixture(scope="module")
def erin(net: DevNetwork, bob: ApiSession) -> FakePeer:
    """A node of the test's own, home of erin, able to seal and sign anything as her
    (for modules whose ``net`` is a :func:`network_with_erin`)."""
    assert net.directory is not None
    return FakePeer.home_of(net.directory.url, "erin", ERIN_PASSWORD)

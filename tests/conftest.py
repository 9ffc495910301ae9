"""Fixtures that start real processes on loopback and always stop them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flamechat.devnet import DevNetwork

PASSWORDS = {name: f"{name}-password" for name in ("alice", "bob", "carol", "dave")}


def make_network(root: Path, *, nodes: int = 2, presence_interval: float = 1.0) -> DevNetwork:
    """Directory + ``nodes`` nodes; alice/bob (and carol/dave) created, not yet logged in."""
    net = DevNetwork(root, password_profile="minimal", presence_interval=presence_interval)
    try:
        net.start_directory(presence_ttl=4.0)
        for _ in range(nodes):
            net.start_node()
        for name, password in PASSWORDS.items():
            net.create_user(name, password)
    except BaseException:
        net.stop()
        raise
    return net


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevNetwork]:
    """One directory and two nodes shared by a test module."""
    net = make_network(tmp_path_factory.mktemp("net"))
    yield net
    net.stop()


@pytest.fixture
def fresh_network(tmp_path: Path) -> Iterator[DevNetwork]:
    """A network of its own, for tests that kill or restart processes."""
    net = make_network(tmp_path / "net")
    yield net
    net.stop()

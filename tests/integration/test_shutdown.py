"""A node stopped (SIGTERM) while its users' tabs hold the live stream open
ends those streams cleanly and logs no error: every restart of a node in use
looks like this."""

from __future__ import annotations

import signal

import pytest

from tests.conftest import PASSWORDS
from tests.integration.conftest import NetworkFactory
from tests.support import EventStream, eventually, login

pytestmark = pytest.mark.integration


def test_stopping_a_node_with_open_tabs_ends_their_streams_cleanly(network_factory: NetworkFactory) -> None:
    net = network_factory()
    node1, _node2 = net.nodes
    alice = login(node1, "alice", PASSWORDS["alice"])
    carol = login(node1, "carol", PASSWORDS["carol"])
    with EventStream(alice) as alice_tab, EventStream(carol) as carol_tab:
        eventually(lambda: alice_tab.received() and carol_tab.received(), what="both streams open")
        node1.stop(timeout=20)
        assert node1.process is not None
        # uvicorn exits by re-raising the signal once its graceful shutdown is done
        assert node1.process.returncode in (0, -signal.SIGTERM)
        for tab in (alice_tab, carol_tab):
            assert tab.error is None  # the stream ended, it was not torn
    errors = [line for line in node1.log_path.read_text().splitlines() if "ERROR" in line]
    assert errors == []

"""Networks of their own for tests that kill, restart or reconfigure processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flamechat.devnet import DevNetwork
from tests.conftest import make_network

NetworkFactory = Callable[..., DevNetwork]


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

"""Fixtures that start real processes on loopback and always stop them."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from flamechat.devnet import DevNetwork
from tests.support import log_errors

PASSWORDS = {name: f"{name}-password" for name in ("alice", "bob", "carol", "dave")}


@pytest.fixture(scope="module", autouse=True)
def no_stack_trace_in_any_server_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After every module, no process it started left a 500 or a stack trace in
    its log, whether or not the module's tests looked (torn down last, so the
    module's processes have stopped and their logs are whole)."""
    started = time.time()
    yield
    found = [
        problem
        for log in sorted(tmp_path_factory.getbasetemp().rglob("logs/*.log"))
        if log.stat().st_mtime >= started
        for problem in log_errors(log, str(log.relative_to(tmp_path_factory.getbasetemp())))
    ]
    if found:
        pytest.fail("server logs show errors:\n\n" + "\n\n".join(found), pytrace=False)


def make_network(
    root: Path,
    *,
    nodes: int = 2,
    presence_interval: float = 1.0,
    presence_ttl: float = 4.0,
    node_args: Sequence[Sequence[str]] = (),
    directory_args: Sequence[str] = (),
    users: Mapping[str, str] = PASSWORDS,
) -> DevNetwork:
    """Directory + ``nodes`` nodes; alice/bob (and carol/dave) created, not yet logged in.

    ``node_args[i]`` are extra ``flame node`` flags for node ``i`` (nodes beyond
    the list get none), ``directory_args`` extra ``flame directory`` flags. Nodes
    start side by side, and so are users created.
    """
    net = DevNetwork(root, password_profile="minimal", presence_interval=presence_interval)
    try:
        net.start_directory(presence_ttl=presence_ttl, extra=directory_args)
        net.start_nodes([list(node_args[i]) if i < len(node_args) else [] for i in range(nodes)])
        net.create_users(users)
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

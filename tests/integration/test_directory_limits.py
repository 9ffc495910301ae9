"""The directory's per-node request rate, on real processes: a node flooding the
directory is answered 429 with Retry-After while another node is still served,
and a real node that meets the limit takes the directory for busy, not down —
its users get the list from the node's cache, and no "offline" banner."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flamechat.devnet import DevNetwork
from tests.conftest import PASSWORDS, make_network
from tests.integration.peer import FakePeer
from tests.support import Answer, ApiSession, EventStream, eventually, login, server_errors

pytestmark = pytest.mark.integration

PER_SECOND = 8  # directory requests one node may make per second here


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevNetwork]:
    network = make_network(
        tmp_path_factory.mktemp("directory-limits"),
        nodes=1,
        directory_args=["--requests-per-second-per-node", str(PER_SECOND)],
        node_args=[["--user-list-max-age", "0"]],  # every reload of the list asks the directory
    )
    try:
        yield network
    finally:
        network.stop()


def flood_until_refused(peer: FakePeer, url: str) -> Answer:
    """Ask as fast as one client can until the directory refuses (bounded)."""
    for _ in range(50 * PER_SECOND):
        answer = peer.request("GET", url)
        if answer.status != 200:
            return answer
    raise AssertionError("the directory never refused the flood")


def test_a_node_flooding_the_directory_is_refused_while_another_node_is_answered(
    net: DevNetwork,
) -> None:
    assert net.directory is not None
    users = f"{net.directory.url}/directory/v1/users"
    flooder, other = FakePeer(net.directory.url), FakePeer(net.directory.url)
    flooder.register()
    other.register()

    refused = flood_until_refused(flooder, users)
    assert refused.status == 429, refused
    assert refused.code == "rate_limited"
    retry_after = int({k.lower(): v for k, v in refused.headers.items()}["retry-after"])
    assert 1 <= retry_after <= 2
    assert refused.body["error"]["details"]["retry_after"] == retry_after

    answered = other.request("GET", users)  # in the same second: the other node is served
    assert answered.status == 200, answered
    assert {u["username"] for u in answered.body["users"]} >= {"alice", "bob"}
    # And the flooder is served again once it waited.
    eventually(lambda: flooder.request("GET", users).status == 200, what="the flooder served again")
    assert not server_errors(net)


def test_a_node_over_its_directory_rate_answers_from_its_cache_without_an_offline_banner(
    net: DevNetwork,
) -> None:
    """alice reloads her user list over and over: each reload asks the directory,
    which soon refuses her node for a second. Every reload is still answered (from
    the node's cache once refused), and no page is told the directory is offline."""
    alice: ApiSession = login(net.nodes[0], "alice", PASSWORDS["alice"])
    with EventStream(alice) as tab:
        sources = []
        for _ in range(6 * PER_SECOND):
            status, body = alice.call("GET", "/api/v1/users")
            assert status == 200, body
            assert {u["username"] for u in body["users"]} >= {"alice", "bob"}
            sources.append(body["source"])
        assert "cache" in sources  # the directory did refuse some of them
        status, me = alice.call("GET", "/api/v1/me")
        assert (status, me["directory"]) == (200, "online")
        assert not [e for e in tab.received() if e.get("type") == "directory" and e["status"] == "offline"]
        # Once the second has passed the node asks the directory again.
        eventually(
            lambda: alice.call("GET", "/api/v1/users")[1]["source"] == "directory",
            what="back to the directory",
        )
    assert not server_errors(net)

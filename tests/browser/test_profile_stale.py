"""A profile whose owner's node is really down: shown from the viewer's cache,
marked stale in the API and on the page, and fresh again once the node is back.

Node A (the viewer's) keeps a fetched profile fresh for one second
(``--profile-fresh-for 1``), so the test does not wait out the default minute.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from flamechat.devnet import DevNetwork
from tests.browser.conftest import Browsers, start_network
from tests.conftest import PASSWORDS
from tests.support import ApiSession, eventually, login, server_errors

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevNetwork]:
    network = start_network(tmp_path_factory.mktemp("stale"), node_args={0: ["--profile-fresh-for", "1"]})
    try:
        yield network
    finally:
        network.stop()


def profile(session: ApiSession, username: str) -> dict[str, Any]:
    status, body = session.call("GET", f"/api/v1/users/{username}/profile")
    assert status == 200, body  # never a 500, whether the owner's node answers or not
    return body


def test_a_profile_is_shown_stale_while_its_owners_node_is_down(browsers: Browsers, net: DevNetwork) -> None:
    node_a, node_b = net.nodes
    bob = login(node_b, "bob", PASSWORDS["bob"])
    status, body = bob.call(
        "PUT",
        "/api/v1/me/profile",
        {"display_name": "Bob Stone", "title": "Harbour master", "about": "Ahoy."},
    )
    assert status == 200, body
    alice_api = login(node_a, "alice", PASSWORDS["alice"])
    alice = browsers.login(node_a, "alice")

    alice.goto("/profile/bob")
    expect(alice.page.locator("#profile-title")).to_have_text("Harbour master")
    expect(alice.page.locator("#stale-note")).to_have_count(0)
    assert profile(alice_api, "bob")["stale"] is False

    node_b.stop()
    try:
        # Past the freshness window, node A asks node B, which does not answer.
        shown = eventually(
            lambda: (p := profile(alice_api, "bob"))["stale"] and p, timeout=20, what="stale in the API"
        )
        assert (shown["title"], shown["about"]) == ("Harbour master", "Ahoy.")  # the cached copy
        alice.page.reload()
        expect(alice.page.locator("#stale-note")).to_be_visible()
        expect(alice.page.locator("#stale-note")).to_have_text(re.compile(r"cannot be reached"))
        expect(alice.page.locator("#profile-title")).to_have_text("Harbour master")
        expect(alice.page.locator("#profile-about")).to_have_text("Ahoy.")
    finally:
        node_b.start()

    eventually(lambda: profile(alice_api, "bob")["stale"] is False, timeout=30, what="fresh again")
    alice.page.reload()
    expect(alice.page.locator("#stale-note")).to_have_count(0)
    expect(alice.page.locator("#profile-title")).to_have_text("Harbour master")


def test_no_request_ended_in_a_server_error(net: DevNetwork) -> None:
    assert server_errors(net) == []

"""In the browser: a message to someone who never signed in says it waits for
them (not "Not sent"), and turns into a tick live once they sign in."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from flamechat.devnet import DevNetwork
from tests.browser.conftest import Browsers
from tests.conftest import make_network

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevNetwork]:
    network = make_network(tmp_path_factory.mktemp("waiting-browser"))
    try:
        yield network
    finally:
        network.stop()


def test_a_message_waits_for_a_colleague_to_sign_in_then_goes_live(
    browsers: Browsers, net: DevNetwork
) -> None:
    node_a, node_b = net.nodes
    alice = browsers.login(node_a, "alice")  # bob's account exists; he never signed in
    alice.open_conversation("bob")
    page = alice.page
    expect(page.locator("#waiting-note")).to_be_visible()
    expect(page.locator("#waiting-note")).to_contain_text("has not signed in yet")
    expect(page.locator("#peer-verify")).to_be_hidden()  # no keys: no safety number to compare

    alice.send("Welcome aboard! Ping me when you are in.")
    mine = alice.message("Welcome aboard")
    expect(mine.locator(".state .word")).to_have_text(re.compile(r"^Waiting for .*bob.* to sign in$", re.I))
    expect(mine).not_to_contain_text("Not sent")
    page.evaluate("window.__sameDocument = true")  # a reload would wipe it: what follows comes live

    browsers.login(node_b, "bob")  # his first sign-in makes his keys; alice's node then sends it
    expect(mine.locator(".state .word")).to_have_text(re.compile(r"^(Sent|Delivered)$"), timeout=45_000)
    expect(page.locator("#waiting-note")).to_be_hidden()
    expect(page.locator("#peer-verify")).to_be_visible()
    assert page.evaluate("window.__sameDocument === true")

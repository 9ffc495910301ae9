"""Issue 3 in the browser: ticks that follow a message live, and the directory banner."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import APIResponse, Route, expect

from flamechat.devnet import DevNetwork, Server
from tests.browser.conftest import Browsers, User, log_in
from tests.conftest import PASSWORDS, make_network
from tests.support import eventually, login

pytestmark = pytest.mark.browser

MESSAGES = re.compile(r"/api/v1/conversations/[a-z0-9_.-]+/messages$")


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevNetwork]:
    """A network of its own: the directory is stopped and restarted here."""
    network = make_network(tmp_path_factory.mktemp("receipts"))
    try:
        yield network
    finally:
        network.stop()


def mark_page(user: User) -> None:
    """A marker that a reload or navigation would wipe: proves updates came live."""
    user.page.evaluate("window.__sameDocument = true")


def still_same_page(user: User) -> bool:
    return bool(user.page.evaluate("window.__sameDocument === true"))


def tick(user: User, text: str):  # type: ignore[no-untyped-def]
    return user.message(text).locator(".state")


def test_ticks_go_pending_sent_delivered_read_live(browsers: Browsers, net: DevNetwork) -> None:
    node_a, node_b = net.nodes
    # Bob has logged in once (his keys exist), then logs out: his node holds what
    # arrives, sealed, until he is back.
    bob = browsers.login(node_b, "bob")
    bob.page.locator("#logout").click()
    bob.page.wait_for_url(re.compile(r"/login$"))

    alice = browsers.login(node_a, "alice")
    expect(alice.person("bob").locator(".dot")).to_have_class(re.compile(r"\boffline\b"))
    alice.open_conversation("bob")
    mark_page(alice)

    held: list[Route] = []
    alice.page.route(MESSAGES, lambda route: held.append(route))
    alice.send("Are the quarterly figures ready?")
    mine = alice.message("quarterly figures")
    expect(mine).to_have_attribute("data-state", "pending")
    expect(tick(alice, "quarterly figures")).to_have_text(re.compile(r"Sending"))
    for _ in range(50):  # the route handler runs while Playwright waits
        if held:
            break
        alice.page.wait_for_timeout(100)
    assert len(held) == 1
    held[0].continue_()
    alice.page.unroute(MESSAGES)

    # Bob's node has it, but Bob is logged out: one tick, and it stays there.
    expect(mine).to_have_attribute("data-state", "sent")
    expect(tick(alice, "quarterly figures")).to_have_text("✓ Sent")
    alice.page.wait_for_timeout(1000)
    expect(mine).to_have_attribute("data-state", "sent")

    # Bob logs in: his node opens what it held and sends a delivery receipt.
    log_in(bob)
    expect(mine).to_have_attribute("data-state", "delivered")
    expect(tick(alice, "quarterly figures")).to_have_text("✓✓ Delivered")
    # Delivered is not read: Bob has not opened the conversation yet.
    alice.page.wait_for_timeout(1000)
    expect(mine).to_have_attribute("data-state", "delivered")

    # What came while he was away shows as unread in his people list at once.
    badge = bob.person("alice").locator(".unread")
    expect(badge).to_have_text("1")
    expect(bob.page).to_have_title(re.compile(r"^\(1\) "))

    bob.open_conversation("alice")
    expect(bob.message("quarterly figures")).to_have_count(1)
    expect(badge).to_be_hidden()
    expect(mine).to_have_attribute("data-state", "read")
    expect(tick(alice, "quarterly figures")).to_have_text("✓✓ Read")
    assert still_same_page(alice), "alice's page reloaded: the ticks did not come live"

    # Read survives a reload: it is what Alice's node stored.
    alice.page.reload()
    alice.open_conversation("bob")
    expect(alice.message("quarterly figures")).to_have_attribute("data-state", "read")


def test_directory_outage_banner_and_cached_people(
    browsers: Browsers, net: DevNetwork, tmp_path: Path
) -> None:
    node_a, node_b = net.nodes
    alice = browsers.login(node_a, "alice")
    bob = browsers.login(node_b, "bob")
    banner = alice.page.locator("#directory-banner")
    expect(banner).to_be_hidden()
    expect(alice.page.locator("#users-source")).to_have_text("")
    expect(alice.person("bob").locator(".dot")).to_have_class(re.compile(r"\bonline\b"))
    mark_page(alice)

    assert net.directory is not None
    directory = net.directory
    directory.stop()
    try:
        expect(banner).to_be_visible()
        expect(banner).to_contain_text("directory is unreachable")
        expect(alice.page.locator("#users-source")).to_have_text("(cached)")
        # The cached people are still listed, and Bob's presence is learned from his node.
        expect(alice.page.locator("#users li.user")).to_have_count(3)
        expect(alice.person("bob").locator(".dot")).to_have_class(re.compile(r"\bonline\b"))
        expect(bob.page.locator("#directory-banner")).to_be_visible()

        # Messaging between people whose nodes know each other goes on.
        alice.open_conversation("bob")
        alice.send("The directory is down, can you still read me?")
        bob.open_conversation("alice")
        expect(bob.message("can you still read me?")).to_have_count(1)
        expect(alice.message("can you still read me?")).to_have_attribute("data-state", "read")

        # Someone who has logged in here before still gets in, and sees the banner at once.
        again = log_in(browsers.open(node_a, "alice"))
        expect(again.page.locator("#directory-banner")).to_be_visible()
        expect(again.page.locator("#users-source")).to_have_text("(cached)")
    finally:
        # The directory comes back on the same address, with the same data.
        net.directory = Server(directory.name, directory.args, directory.port, directory.log_path).start()

    expect(banner).to_be_hidden()
    expect(alice.page.locator("#users-source")).to_have_text("")
    expect(bob.page.locator("#directory-banner")).to_be_hidden()
    expect(alice.person("bob").locator(".dot")).to_have_class(re.compile(r"\bonline\b"))
    assert still_same_page(alice), "alice's page reloaded: the banner did not come and go live"


def test_live_stream_comes_back_after_the_node_restarts(browsers: Browsers, net: DevNetwork) -> None:
    node_a, node_b = net.nodes
    alice = browsers.login(node_a, "alice")
    bob = browsers.login(node_b, "bob")
    bob.open_conversation("alice")
    alice.open_conversation("bob")
    mark_page(bob)

    node_b.stop()
    try:
        expect(bob.page.locator("body")).to_have_attribute("data-live", "polling")
        alice.send("Ping while your node restarts")
        expect(alice.message("Ping while your node restarts")).to_have_attribute("data-state", "pending")
    finally:
        restarted = Server(node_b.name, node_b.args, node_b.port, node_b.log_path).start()
        net.nodes[1] = restarted

    # Bob's page reconnects by itself and shows what was sent meanwhile.
    expect(bob.page.locator("body")).to_have_attribute("data-live", "sse", timeout=30_000)
    expect(bob.message("Ping while your node restarts")).to_have_count(1, timeout=30_000)
    expect(alice.message("Ping while your node restarts")).to_have_attribute(
        "data-state", "read", timeout=30_000
    )
    assert still_same_page(bob)


def test_a_tick_that_changes_while_the_conversation_is_loading_is_not_lost(
    browsers: Browsers, net: DevNetwork
) -> None:
    """Opening a conversation empties the list and asks for a page; a receipt that
    arrives while the page is on its way is newer than the page: the tick shows it."""
    node_a, node_b = net.nodes
    dave = login(node_b, "dave", PASSWORDS["dave"])
    carol = browsers.login(node_a, "carol")
    sent = login(node_a, "carol", PASSWORDS["carol"]).send("dave", "Board pack attached tonight")
    eventually(
        lambda: any(m["id"] == sent["id"] for m in dave.history("carol")), what="the message reaches dave"
    )

    held: list[tuple[Route, APIResponse]] = []
    carol.page.route(
        re.compile(r"/api/v1/conversations/dave/messages\?limit=50$"),
        lambda route: held.append((route, route.fetch())),  # the page as it is now: not read
    )
    carol.person("dave").locator("button.open-conversation").click()
    # (Playwright runs the route handler only while it is called: wait in the page.)
    eventually(lambda: carol.page.wait_for_timeout(50) or held, what="the page of history asked for")

    status, _ = dave.call("POST", "/api/v1/conversations/carol/read", {"up_to": sent["id"]})
    assert status == 200
    carols = login(node_a, "carol", PASSWORDS["carol"])
    eventually(
        lambda: [m for m in carols.history("dave") if m["id"] == sent["id"] and m["state"] == "read"],
        what="the read receipt reaches carol's node",
    )
    carol.page.wait_for_timeout(500)  # and her page's stream
    route, response = held[0]
    route.fulfill(response=response)
    expect(carol.message("Board pack")).to_have_attribute("data-state", "read")

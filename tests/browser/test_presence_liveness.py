"""Presence follows open pages within a bounded time, in Chromium: a page keeps
its user online by answering heartbeats (over its live stream, or on a timer
while it polls), and a page whose network is cut turns offline to others
within the tab timeout (3 s on these nodes)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import APIResponse, Request, Route, expect

from flamechat.devnet import DevNetwork
from tests.browser.conftest import Browsers, User, log_in, start_network

pytestmark = pytest.mark.browser

TAB_TIMEOUT = 3.0
USERS = re.compile(r"/api/v1/users$")


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevNetwork]:
    timeout = ["--tab-timeout", str(TAB_TIMEOUT)]
    network = start_network(tmp_path_factory.mktemp("liveness"), node_args={0: timeout, 1: timeout})
    try:
        yield network
    finally:
        network.stop()


def dot(status: str) -> re.Pattern[str]:
    return re.compile(rf"(^|\s)dot {status}($|\s)")


def is_heartbeat(request: Request) -> bool:
    return request.method == "PUT" and "/api/v1/me/tabs/" in request.url


def stays_online_then_goes_offline_when_cut(alice: User, bob: User) -> None:
    seen = alice.person("bob").locator(".dot")
    expect(seen).to_have_class(dot("online"))
    # Five heartbeats, one every third of the timeout: well past the timeout, still online.
    for _ in range(5):
        bob.page.wait_for_event("request", predicate=is_heartbeat)
    expect(seen).to_have_class(dot("online"))
    bob.context.set_offline(True)  # the cable is pulled: nothing more leaves bob's page
    expect(seen).to_have_class(dot("offline"))
    bob.context.set_offline(False)
    expect(seen).to_have_class(dot("online"))  # back, by itself


def test_a_live_page_answers_heartbeats_and_goes_offline_when_its_network_is_cut(
    browsers: Browsers, net: DevNetwork
) -> None:
    alice = browsers.login(net.nodes[0], "alice")
    bob = browsers.open(net.nodes[1], "bob")
    log_in(bob)
    stays_online_then_goes_offline_when_cut(alice, bob)


def test_a_polling_page_is_online_while_it_polls_and_goes_offline_when_its_network_is_cut(
    browsers: Browsers, net: DevNetwork
) -> None:
    alice = browsers.login(net.nodes[0], "alice")
    bob = browsers.open(net.nodes[1], "bob")
    bob.context.add_init_script("delete window.EventSource")
    log_in(bob, live="polling")
    stays_online_then_goes_offline_when_cut(alice, bob)


def test_a_user_list_answered_late_does_not_undo_a_live_change(browsers: Browsers, net: DevNetwork) -> None:
    """Alice's page asks for the people list while bob is online; he logs out while
    the answer is on its way, and the live stream says so first. The late list
    must not show him online again: nothing would correct it until he changed."""
    alice = browsers.login(net.nodes[0], "alice")
    bob = browsers.login(net.nodes[1], "bob")
    seen = alice.person("bob").locator(".dot")
    expect(seen).to_have_class(dot("online"))

    held: list[tuple[Route, APIResponse]] = []
    alice.page.route(USERS, lambda route: held.append((route, route.fetch())))  # bob online in it
    alice.page.reload()  # asks for the list at load, and again once the stream is open
    expect(alice.page.locator("body")).to_have_attribute("data-live", "sse")
    for _ in range(100):  # the route handler runs while Playwright waits
        if len(held) == 2:
            break
        alice.page.wait_for_timeout(100)
    assert len(held) == 2

    bob.page.locator("#logout").click()
    expect(seen).to_have_class(dot("offline"))  # told live, before any list came
    for route, answer in held:
        route.fulfill(response=answer)
    alice.page.unroute(USERS)
    expect(alice.person("carol")).to_be_visible()  # the late lists are drawn
    expect(seen).to_have_class(dot("offline"))

"""Issue 5 point 7 in the browser: profiles, live status, auto-away, search, blocking."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import expect

from flamechat.devnet import DevNetwork
from tests.browser.conftest import Browsers
from tests.conftest import PASSWORDS, make_network
from tests.support import login

pytestmark = pytest.mark.browser

IDLE_AWAY_SECONDS = 2


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevNetwork]:
    """Nodes A and B as usual; node C turns idle people away after two seconds."""
    network = make_network(
        tmp_path_factory.mktemp("social"),
        nodes=3,
        node_args=([], [], ["--idle-away-seconds", str(IDLE_AWAY_SECONDS)]),
    )
    try:
        yield network
    finally:
        network.stop()


def dot(status: str) -> re.Pattern[str]:
    return re.compile(rf"(^|\s)dot {status}($|\s)")


def test_profile_edited_on_one_node_is_seen_from_another(
    browsers: Browsers, net: DevNetwork, tmp_path: Path
) -> None:
    node_a, node_b, _ = net.nodes
    alice = browsers.login(node_a, "alice")
    bob = browsers.login(node_b, "bob")

    alice.page.locator("#my-profile").click()
    alice.page.wait_for_url(re.compile(r"/profile/alice$"))
    form = alice.page.locator("#profile-form")
    form.locator("#edit-display_name").fill("Alice Liddell")
    form.locator("#edit-title").fill("Head of Research")
    form.locator("#edit-department").fill("Research & Development")
    form.locator("#edit-location").fill("Oxford")
    form.locator("#edit-about").fill("Curious.\nFollows white rabbits.")
    picture = tmp_path / "alice.png"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(picture)
    form.locator("#edit-avatar").set_input_files(str(picture))
    form.locator("#profile-save").click()
    expect(alice.page.locator("#profile-message")).to_have_text("Saved.")
    expect(alice.page.locator("#profile-name")).to_have_text("Alice Liddell")
    expect(alice.page.locator("img#avatar")).to_be_visible()

    # Bob, on another node, sees the new name in his list without reloading ...
    expect(bob.person("alice").locator(".name")).to_have_text("Alice Liddell")
    # ... and the whole profile, fetched from Alice's node and checked, on her page.
    bob.open_conversation("alice")
    expect(bob.page.locator("#peer-name")).to_have_text("Alice Liddell")
    bob.page.locator("#peer-profile").click()
    bob.page.wait_for_url(re.compile(r"/profile/alice$"))
    page = bob.page
    expect(page.locator("#profile-name")).to_have_text("Alice Liddell")
    expect(page.locator("#profile-title")).to_have_text("Head of Research")
    expect(page.locator("#profile-department")).to_have_text("Research & Development")
    expect(page.locator("#profile-location")).to_have_text("Oxford")
    expect(page.locator("#profile-about")).to_have_text("Curious.\nFollows white rabbits.")
    expect(page.locator("#stale-note")).to_have_count(0)
    expect(page.locator("#profile-form")).to_have_count(0)  # not his to edit
    page.wait_for_function(
        "() => { const img = document.querySelector('img#avatar');"
        " return img && img.complete && img.naturalWidth > 0; }",
        timeout=15_000,
    )
    size = page.locator("img#avatar").evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert size == [64, 48], size
    expect(page.locator("#message-user")).to_have_attribute("href", "/#alice")


def test_status_change_shows_live_in_another_users_list(browsers: Browsers, net: DevNetwork) -> None:
    node_a, node_b, _ = net.nodes
    alice = browsers.login(node_a, "alice")
    bob = browsers.login(node_b, "bob")
    seen = alice.person("bob")
    expect(seen.locator(".dot")).to_have_class(dot("online"))
    alice.open_conversation("bob")

    bob.page.locator("#status-select").select_option("busy")
    bob.page.locator("#status-text").fill("In a meeting until 3")
    bob.page.locator("#status-text").press("Enter")
    expect(bob.page.locator("#my-dot")).to_have_class(dot("busy"))

    expect(seen.locator(".dot")).to_have_class(dot("busy"))
    expect(seen.locator(".dot")).to_have_attribute("title", "Busy")
    expect(seen.locator(".status-text")).to_have_text("In a meeting until 3")
    expect(alice.page.locator("#peer-dot")).to_have_class(dot("busy"))
    expect(alice.page.locator("#peer-status")).to_have_text("Busy · In a meeting until 3")
    # His profile page says so too.
    profile = alice.context.new_page()
    try:
        profile.goto(node_a.url + "/profile/bob")
        expect(profile.locator("#profile-status")).to_have_text("Busy · In a meeting until 3")
        expect(profile.locator("#profile-dot")).to_have_class(dot("busy"))
    finally:
        profile.close()

    # Appearing offline hides the status and its text.
    bob.page.locator("#status-select").select_option("invisible")
    expect(seen.locator(".dot")).to_have_class(dot("offline"))
    expect(seen.locator(".status-text")).to_have_text("")

    bob.page.locator("#status-text").fill("")
    bob.page.locator("#status-select").select_option("online")
    expect(seen.locator(".dot")).to_have_class(dot("online"))
    expect(seen.locator(".status-text")).to_have_text("")
    # The chosen status is remembered by Bob's node across a reload.
    bob.page.reload()
    expect(bob.page.locator("#status-select")).to_have_value("online")


def test_idle_user_turns_away_and_back_on_activity(browsers: Browsers, net: DevNetwork) -> None:
    node_a, _, node_c = net.nodes
    alice = browsers.login(node_a, "alice")
    carol = browsers.login(node_c, "carol")  # node C: away after 2 s idle
    seen = alice.person("carol")

    # Nobody touches Carol's page: it turns her away by itself, and Alice sees it.
    expect(carol.page.locator("#status-select")).to_have_value("away")
    expect(carol.page.locator("#my-dot")).to_have_class(dot("away"))
    expect(seen.locator(".dot")).to_have_class(dot("away"))

    # She is back at her desk (moving the mouse now and then): online again, for
    # her and for Alice. Active people are never turned away.
    for step in range(60):
        carol.page.mouse.move(200 + step % 2 * 20, 300)
        if seen.locator(".dot").get_attribute("class") == "dot online":
            break
        carol.page.wait_for_timeout(250)
    expect(seen.locator(".dot")).to_have_class(dot("online"))
    expect(carol.page.locator("#status-select")).to_have_value("online")

    # A status she chose herself is not overridden by idling.
    carol.page.locator("#status-select").select_option("busy")
    expect(seen.locator(".dot")).to_have_class(dot("busy"))
    carol.page.wait_for_timeout((IDLE_AWAY_SECONDS + 1) * 1000)
    expect(carol.page.locator("#status-select")).to_have_value("busy")
    expect(seen.locator(".dot")).to_have_class(dot("busy"))


def test_search_finds_a_message_and_jumps_to_it(browsers: Browsers, net: DevNetwork) -> None:
    node_a, node_b, _ = net.nodes
    login(node_b, "dave", PASSWORDS["dave"])  # dave has keys to write to
    writer = login(node_a, "alice", PASSWORDS["alice"])
    target = writer.send("dave", "Remember the pelican budget review on Friday")["id"]
    for number in range(60):  # enough to push it out of the newest page
        writer.send("dave", f"filler message {number}")

    alice = browsers.login(node_a, "alice")
    alice.page.locator("#search-input").fill("pelican")
    alice.page.locator("#search-input").press("Enter")
    results = alice.page.locator("#search-results")
    expect(results).to_be_visible()
    hits = alice.page.locator("#message-results li.hit")
    expect(hits).to_have_count(1)
    expect(hits.locator("mark")).to_have_text(re.compile("^pelican$", re.I))
    expect(hits).to_contain_text("budget review")

    hits.click()
    expect(results).to_be_hidden()
    expect(alice.page.locator("#conversation")).to_have_attribute("data-peer", "dave")
    found = alice.page.locator(f'#messages li.message[data-id="{target}"]')
    expect(found).to_have_class(re.compile(r"\bfound\b"))
    expect(found).to_be_in_viewport()
    expect(alice.page.locator("#messages li.found")).to_have_count(1)
    # The page around the hit is not the newest one: the way back to the latest is offered.
    latest = alice.page.locator("#jump-latest")
    expect(latest).to_be_visible()
    latest.click()
    expect(alice.message("filler message 59")).to_have_count(1)
    expect(alice.page.locator("#messages li.found")).to_have_count(0)

    # People are found by name or username, and lead to their profile.
    alice.page.locator("#search-input").fill("dave")
    alice.page.locator("#search-input").press("Enter")
    person = alice.page.locator("#people-results a", has_text="Dave")
    expect(person).to_have_attribute("href", "/profile/dave")
    alice.page.keyboard.press("Escape")
    expect(results).to_be_hidden()

    # From another page, a hit leads to the main page, opened at the message.
    alice.goto("/blocks")
    alice.page.locator("#search-input").fill("pelican")
    alice.page.locator("#search-input").press("Enter")
    alice.page.locator("#message-results li.hit").click()
    alice.page.wait_for_url(re.compile(r"/#dave"))
    expect(alice.page.locator("#conversation")).to_have_attribute("data-peer", "dave")
    expect(found).to_have_class(re.compile(r"\bfound\b"))
    expect(found).to_be_in_viewport()


def test_blocked_persons_message_never_arrives_until_unblocked(browsers: Browsers, net: DevNetwork) -> None:
    node_a, node_b, _ = net.nodes
    alice = browsers.login(node_a, "alice")
    bob = browsers.login(node_b, "bob")
    expect(alice.person("bob").locator(".dot")).to_have_class(dot("online"))
    alice.open_conversation("bob")
    bob.open_conversation("alice")

    bob.page.locator("#block-toggle").click()
    expect(bob.page.locator("#block-toggle")).to_have_text("Unblock")
    expect(bob.page.locator("#blocked-note")).to_be_visible()
    expect(bob.page.locator("#message-input")).to_be_disabled()
    # Bob's status is hidden from the person he blocked.
    expect(alice.person("bob").locator(".dot")).to_have_class(dot("offline"))

    alice.send("Why are you ignoring me?")
    mine = alice.message("ignoring me")
    # Bob's node took it (to Alice it looks stored) but dropped it: never delivered.
    expect(mine).to_have_attribute("data-state", "sent")
    bob.page.wait_for_timeout(1000)
    expect(mine).to_have_attribute("data-state", "sent")
    expect(bob.message("ignoring me")).to_have_count(0)
    bob.page.reload()
    bob.open_conversation("alice")
    expect(bob.message("ignoring me")).to_have_count(0)
    expect(bob.page.locator("#blocked-note")).to_be_visible()

    # The block list page lets him unblock.
    bob.page.locator("#blocks-link").click()
    bob.page.wait_for_url(re.compile(r"/blocks$"))
    row = bob.page.locator('#blocked-list li[data-username="alice"]')
    expect(row).to_be_visible()
    row.locator("button.unblock").click()
    expect(row).to_have_count(0)
    expect(bob.page.locator("#blocked-list")).to_contain_text("You have not blocked anyone.")
    expect(alice.person("bob").locator(".dot")).to_have_class(dot("online"))

    bob.goto("/#alice")
    expect(bob.page.locator("#conversation")).to_have_attribute("data-peer", "alice")
    expect(bob.page.locator("#message-input")).to_be_enabled()
    alice.send("Second try: lunch?")
    expect(bob.message("Second try")).to_have_count(1)
    expect(alice.message("Second try")).to_have_attribute("data-state", "read")
    expect(bob.message("ignoring me")).to_have_count(0)  # dropped, not held back


def test_block_from_the_profile_page(browsers: Browsers, net: DevNetwork) -> None:
    node_a, _, _ = net.nodes
    alice = browsers.login(node_a, "alice")
    alice.goto("/profile/dave")
    button = alice.page.locator("#profile-block")
    expect(button).to_have_text("Block")
    button.click()
    expect(button).to_have_text("Unblock")

    alice.goto("/blocks")
    expect(alice.page.locator('#blocked-list li[data-username="dave"]')).to_be_visible()
    alice.goto("/#dave")
    expect(alice.page.locator("#conversation")).to_have_attribute("data-peer", "dave")
    expect(alice.page.locator("#blocked-note")).to_be_visible()
    expect(alice.page.locator("#send-button")).to_be_disabled()
    alice.page.locator("#block-toggle").click()
    expect(alice.page.locator("#blocked-note")).to_be_hidden()
    expect(alice.page.locator("#send-button")).to_be_enabled()
    alice.goto("/profile/dave")
    expect(alice.page.locator("#profile-block")).to_have_text("Block")


def test_profile_never_edited_is_not_called_stale(browsers: Browsers, net: DevNetwork) -> None:
    """Someone who never filled in a profile simply has an empty one: their node is
    up, so the page must not claim it cannot be reached."""
    node_a, node_b, _ = net.nodes
    login(node_b, "dave", PASSWORDS["dave"])  # dave lives on node B and never edits his profile
    alice = browsers.login(node_a, "alice")
    alice.goto("/profile/dave")
    expect(alice.page.locator("#profile-name")).to_have_text("Dave")
    expect(alice.page.locator("#stale-note")).to_have_count(0)
    expect(alice.page.locator("#profile-block")).to_be_visible()
    expect(alice.page.locator("#profile-title")).to_be_hidden()  # nothing to show, no empty label


def test_closing_the_last_tab_turns_the_user_offline(browsers: Browsers, net: DevNetwork) -> None:
    node_a, node_b, _ = net.nodes
    alice = browsers.login(node_a, "alice")
    bob = browsers.login(node_b, "bob")
    second = bob.context.new_page()
    second.goto(node_b.url + "/")
    expect(alice.person("bob").locator(".dot")).to_have_class(dot("online"))

    bob.page.close()  # one tab of two: still online
    alice.page.wait_for_timeout(1500)
    expect(alice.person("bob").locator(".dot")).to_have_class(dot("online"))
    second.close()  # the last one
    expect(alice.person("bob").locator(".dot")).to_have_class(dot("offline"))


def test_activity_in_one_tab_keeps_every_tab_from_going_away(browsers: Browsers, net: DevNetwork) -> None:
    node_a, _, node_c = net.nodes
    alice = browsers.login(node_a, "alice")
    carol = browsers.login(node_c, "carol")  # node C: away after 2 s idle
    carol.page.locator("#status-select").select_option("online")
    other_tab = carol.context.new_page()
    other_tab.goto(node_c.url + "/")
    seen = alice.person("carol").locator(".dot")

    # Carol works in her second tab; the first one sits idle for longer than the limit.
    statuses = set()
    for step in range(int((IDLE_AWAY_SECONDS * 2.5) / 0.25)):
        other_tab.mouse.move(100 + step % 2 * 30, 200)
        other_tab.wait_for_timeout(250)
        statuses.add(carol.page.locator("#status-select").input_value())
    assert statuses == {"online"}, statuses
    expect(seen).to_have_class(dot("online"))

    # When she stops everywhere, she turns away, and both tabs say so.
    expect(carol.page.locator("#status-select")).to_have_value("away")
    expect(other_tab.locator("#status-select")).to_have_value("away")
    expect(seen).to_have_class(dot("away"))
    # Back in the first tab: both tabs (and Alice) see her online.
    for step in range(60):
        carol.page.mouse.move(300 + step % 2 * 20, 300)
        if other_tab.locator("#status-select").input_value() == "online":
            break
        carol.page.wait_for_timeout(250)
    expect(other_tab.locator("#status-select")).to_have_value("online")
    expect(seen).to_have_class(dot("online"))

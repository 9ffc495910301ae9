"""Issue 5 point 6: nothing a user writes runs in another user's browser.

Every page carries a Content-Security-Policy without inline script; to show
that the escaping and sanitising hold on their own, the pages under attack
here run with CSP bypassed. A payload that got through would set
``window.__pwned`` or open a dialog; the test also reads the text back to see
that it is shown, escaped, as the literal characters that were typed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from flamechat.devnet import DevNetwork
from tests.browser.conftest import Browsers, User
from tests.conftest import make_network

pytestmark = pytest.mark.browser

SCRIPT = "<script>window.__pwned = 'script'; alert('script')</script>"
IMG = "<img src=x onerror=\"window.__pwned='img'; alert('img')\">"
LINK = "[click me](javascript:window.__pwned='link';alert('link'))"
MESSAGE = f"mallory says {SCRIPT} then {IMG} and {LINK}"

NAME = "<img src=x onerror=alert('name')>Mallory"
STATUS = "<script>window.__pwned='status'</script><b onmouseover=alert(1)>hover</b>"
TITLE = "<svg onload=alert('title')>"
ABOUT = f"About me: {IMG}\n{SCRIPT}\n{LINK}"


# Elements and attributes that only a payload could have put on these pages.
INJECTED = (
    "script, img:not(#avatar), svg, iframe, object, embed, b, "
    '[onerror], [onload], [onmouseover], a[href^="javascript"]'
)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevNetwork]:
    network = make_network(tmp_path_factory.mktemp("xss"))
    try:
        yield network
    finally:
        network.stop()


def watch(user: User) -> list[str]:
    """Every dialog the page tries to open (each one dismissed)."""
    dialogs: list[str] = []

    def seen(dialog) -> None:  # type: ignore[no-untyped-def]
        dialogs.append(dialog.message)
        dialog.dismiss()

    user.page.on("dialog", seen)
    return dialogs


def assert_nothing_ran(user: User, dialogs: list[str]) -> None:
    assert user.page.evaluate("typeof window.__pwned") == "undefined", user.page.evaluate("window.__pwned")
    assert dialogs == [], dialogs


def assert_no_markup_from_users(user: User, scope: str) -> None:
    """No element a payload could have brought in exists inside ``scope``."""
    found = user.page.evaluate(
        """([scope, bad]) => Array.from(document.querySelectorAll(scope))
            .flatMap(root => Array.from(root.querySelectorAll(bad)))
            .map(el => el.outerHTML)""",
        [scope, INJECTED],
    )
    assert found == [], found


def test_message_with_script_img_and_javascript_link_runs_nothing(
    browsers: Browsers, net: DevNetwork
) -> None:
    node_a, node_b = net.nodes
    alice = browsers.login(node_a, "alice", bypass_csp=True)
    bob = browsers.login(node_b, "bob", bypass_csp=True)
    alice_dialogs, bob_dialogs = watch(alice), watch(bob)
    bob.open_conversation("alice")

    alice.open_conversation("bob")
    alice.send(MESSAGE)
    live = bob.message("mallory says")
    expect(live).to_have_count(1)  # arrived over the live stream
    expect(alice.message("mallory says")).to_have_attribute("data-state", re.compile("delivered|read"))
    for user in (alice, bob):
        body = user.message("mallory says").locator(".body")
        expect(body).to_have_text(f"mallory says {SCRIPT} then {IMG} and {LINK}")
        assert_no_markup_from_users(user, "#messages")
    bob.message("mallory says").locator(".body").click()  # a click on the "link" does nothing

    # The history page (rendered from what the node stored) is just as inert.
    bob.page.reload()
    bob.open_conversation("alice")
    expect(bob.message("mallory says").locator(".body")).to_contain_text(SCRIPT)
    assert_no_markup_from_users(bob, "#messages")

    # So are search snippets, which mark the matches.
    bob.page.locator("#search-input").fill("mallory")
    bob.page.locator("#search-input").press("Enter")
    hit = bob.page.locator("#message-results li.hit")
    expect(hit).to_have_count(1)
    expect(hit.locator(".snippet")).to_contain_text("<script>")
    expect(hit.locator("mark")).to_have_text(re.compile("mallory", re.I))
    assert_no_markup_from_users(bob, "#search-results")

    assert_nothing_ran(alice, alice_dialogs)
    assert_nothing_ran(bob, bob_dialogs)


def test_name_status_and_profile_text_run_nothing(browsers: Browsers, net: DevNetwork) -> None:
    node_a, node_b = net.nodes
    alice = browsers.login(node_a, "alice")
    bob = browsers.login(node_b, "bob", bypass_csp=True)
    dialogs = watch(bob)

    # Alice writes markup into every field she controls.
    alice.goto("/profile/alice")
    alice.page.locator("#edit-display_name").fill(NAME)
    alice.page.locator("#edit-title").fill(TITLE)
    alice.page.locator("#edit-department").fill(TITLE)
    alice.page.locator("#edit-about").fill(ABOUT)
    alice.page.locator("#profile-save").click()
    expect(alice.page.locator("#profile-message")).to_have_text("Saved.")
    expect(alice.page.locator("#profile-name")).to_have_text(NAME)
    alice.page.locator("#status-select").select_option("busy")
    alice.page.locator("#status-text").fill(STATUS)
    alice.page.locator("#status-text").press("Enter")

    # Bob's list shows it live, as text.
    seen = bob.person("alice")
    expect(seen.locator(".name")).to_have_text(NAME)
    expect(seen.locator(".status-text")).to_have_text(STATUS)
    seen.locator(".status-text").hover()
    bob.open_conversation("alice")
    expect(bob.page.locator("#peer-name")).to_have_text(NAME)
    expect(bob.page.locator("#peer-status")).to_have_text(f"Busy · {STATUS}")
    assert_no_markup_from_users(bob, "#users, .conversation-head")

    # A fresh page renders the same list on the server: escaped there too.
    bob.page.reload()
    expect(bob.person("alice").locator(".name")).to_have_text(NAME)
    expect(bob.person("alice").locator(".status-text")).to_have_text(STATUS)
    assert_no_markup_from_users(bob, "#users")

    # Her profile, fetched from her node by Bob's.
    bob.goto("/profile/alice")
    expect(bob.page.locator("#profile-name")).to_have_text(NAME)
    expect(bob.page.locator("#profile-title")).to_have_text(TITLE)
    expect(bob.page.locator("#profile-about")).to_have_text(ABOUT)
    assert_no_markup_from_users(bob, "main")
    expect(bob.page).to_have_title(re.compile("alice"))

    # People search results.
    bob.page.locator("#search-input").fill("mallory")
    bob.page.locator("#search-input").press("Enter")
    person = bob.page.locator("#people-results li", has_text="@alice")
    expect(person).to_contain_text(NAME)
    expect(person).to_contain_text(TITLE)
    assert_no_markup_from_users(bob, "#search-results")

    assert_nothing_ran(bob, dialogs)


def test_pages_forbid_inline_script(browsers: Browsers, net: DevNetwork) -> None:
    """The second line of defence: the policy every page is served with."""
    alice = browsers.open(net.nodes[0], "alice")
    response = alice.page.goto(net.nodes[0].url + "/login")
    assert response is not None
    policy = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "object-src 'none'" in policy

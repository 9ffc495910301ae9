"""Key continuity in the page: alice is writing with bob when his keys change;
her open conversation shows the warning at once and will not send until she
says she has checked with him."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from flamechat.devnet import DevNetwork
from tests.browser.conftest import Browsers
from tests.conftest import PASSWORDS
from tests.support import eventually, login, reset_password

GONE_OUT = re.compile("^(sent|delivered|read)$")


def test_a_key_change_is_shown_and_holds_sending_until_confirmed(
    browsers: Browsers, network: DevNetwork
) -> None:
    node1, node2 = network.nodes
    login(node2, "bob", PASSWORDS["bob"])  # bob has keys, so alice can write to him
    alice = browsers.login(node1, "alice")
    alice.open_conversation("bob")
    alice.send("before the change")
    expect(alice.message("before the change")).to_have_attribute("data-state", GONE_OUT)
    note = alice.page.locator("#keys-note")
    expect(note).to_be_hidden()

    bob = reset_password(network, "bob", "bobs-new-passphrase", node2)

    expect(note).to_be_visible()  # pushed to the open page, no reload
    expect(note).to_contain_text("Security keys changed")
    expect(alice.page.locator("#keys-note-name")).to_have_text("Bob")
    expect(alice.page.locator("#message-input")).to_be_disabled()
    expect(alice.page.locator("#send-button")).to_be_disabled()
    expect(alice.page.locator("#attach-button")).to_be_disabled()

    alice.page.reload()  # the warning is the node's, not the page's memory
    alice.open_conversation("bob")
    expect(note).to_be_visible()

    alice.page.locator("#keys-confirm").click()
    expect(note).to_be_hidden()
    expect(alice.page.locator("#message-input")).to_be_enabled()
    expect(alice.page.locator("#attach-button")).to_be_enabled()
    alice.send("checked with you by phone")
    expect(alice.message("checked with you by phone")).to_have_attribute("data-state", GONE_OUT)
    eventually(
        lambda: "checked with you by phone" in [m["body"] for m in bob.history("alice")],
        what="the message read by bob under his new keys",
    )


def test_both_people_read_the_same_safety_number_and_it_follows_a_key_change(
    browsers: Browsers, network: DevNetwork
) -> None:
    node1, node2 = network.nodes
    dave = browsers.login(node2, "dave")
    carol = browsers.login(node1, "carol")
    carol.open_conversation("dave")
    expect(carol.page.locator("#peer-verify")).to_have_attribute("href", "/profile/dave#safety")
    carol.send("shall we compare numbers?")
    expect(carol.message("shall we compare numbers?")).to_have_attribute("data-state", GONE_OUT)

    carol.goto("/profile/dave")
    dave.goto("/profile/carol")
    before = carol.page.locator("#safety-number").inner_text()
    assert re.fullmatch(r"(\d{5} ){11}\d{5}", before), before
    expect(dave.page.locator("#safety-number")).to_have_text(before)
    expect(carol.page.locator("#safety-changed")).to_have_count(0)

    # They read the digits to each other; carol marks dave verified.
    carol.page.locator("#verify-toggle").click()
    expect(carol.page.locator("#verified-mark")).to_be_visible()
    carol.goto("/")
    carol.open_conversation("dave")
    expect(carol.page.locator("#peer-verified")).to_be_visible()
    expect(carol.page.locator("#peer-verify")).to_be_hidden()

    reset_password(network, "dave", "daves-new-passphrase", node2)
    expect(carol.page.locator("#keys-note")).to_be_visible()  # live, in the open conversation
    expect(carol.page.locator("#peer-verified")).to_be_hidden()  # verified keys are not the keys now
    expect(carol.page.locator("#peer-verify")).to_be_visible()
    carol.page.locator("#keys-compare").click()
    carol.page.wait_for_url(re.compile(r"/profile/dave#safety$"))
    expect(carol.page.locator("#safety-changed")).to_be_visible()
    after = carol.page.locator("#safety-number").inner_text()
    assert after != before
    carol.page.locator("#safety-confirm").click()
    expect(carol.page.locator("#safety-confirmed")).to_be_visible()
    carol.goto("/")
    carol.open_conversation("dave")
    expect(carol.page.locator("#keys-note")).to_be_hidden()
    expect(carol.page.locator("#message-input")).to_be_enabled()

    dave_again = browsers.login(node2, "dave", "daves-new-passphrase")
    dave_again.goto("/profile/carol")
    expect(dave_again.page.locator("#safety-number")).to_have_text(after)

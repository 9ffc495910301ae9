"""Issue 2: two people on two nodes chat through the real pages, live."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Route, expect

from flamechat.devnet import DevNetwork
from tests.browser.conftest import Browsers, in_conversation, log_in
from tests.conftest import PASSWORDS
from tests.support import login

pytestmark = pytest.mark.browser


def test_wrong_password_is_refused_on_the_login_page(browsers: Browsers, network: DevNetwork) -> None:
    alice = browsers.open(network.nodes[0], "alice")
    alice.goto("/login")
    alice.page.locator("#username").fill("alice")
    alice.page.locator("#password").fill("not-her-password")
    alice.page.locator("#login-button").click()

    error = alice.page.locator("#login-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text(re.compile("wrong username or password", re.I))
    assert alice.page.url.endswith("/login")
    expect(alice.page.locator("#login-button")).to_be_enabled()
    # No session was opened: the main page sends the visitor back to the login page.
    alice.goto("/")
    alice.page.wait_for_url(re.compile(r"/login$"))


def test_message_crosses_nodes_live_both_ways(browsers: Browsers, network: DevNetwork) -> None:
    node_a, node_b = network.nodes
    alice = browsers.login(node_a, "alice")
    bob = browsers.login(node_b, "bob")

    # Each sees the other online in the people list, live (no reload).
    expect(alice.person("bob").locator(".dot")).to_have_class(re.compile(r"\bonline\b"))
    expect(bob.person("alice").locator(".dot")).to_have_class(re.compile(r"\bonline\b"))

    alice.open_conversation("bob")
    expect(alice.page.locator("#peer-name")).to_have_text("Bob")

    # Hold the POST so that the "pending" state is seen for sure, then let it go.
    held: list[Route] = []
    alice.page.route(re.compile(r"/api/v1/conversations/bob/messages$"), lambda route: held.append(route))
    alice.send("Hello **Bob**, lunch at noon?")
    mine = alice.message("lunch at noon?")  # as typed until the server renders it
    expect(mine).to_have_count(1)
    expect(mine).to_have_attribute("data-state", "pending")
    expect(mine.locator(".state")).to_contain_text("Sending")
    expect(alice.page.locator("#message-input")).to_have_value("")
    for _ in range(50):  # the route handler runs while Playwright waits
        if held:
            break
        alice.page.wait_for_timeout(100)
    assert len(held) == 1, "the browser did not post the message"
    held[0].continue_()
    alice.page.unroute(re.compile(r"/api/v1/conversations/bob/messages$"))

    # Bob is online with his page open: it goes straight through to delivered.
    expect(mine).to_have_attribute("data-state", re.compile("^(sent|delivered|read)$"))
    expect(mine.locator(".body strong")).to_have_text("Bob")  # Markdown rendered

    # Bob never reloads: the live stream brings the message and an unread badge.
    badge = bob.person("alice").locator(".unread")
    expect(badge).to_have_text("1")
    bob.open_conversation("alice")
    theirs = bob.message("Hello Bob, lunch at noon?")
    expect(theirs).to_have_count(1)
    expect(theirs).to_have_class(re.compile(r"\bin\b"))
    expect(badge).to_be_hidden()

    bob.send("Noon works. See you there!")
    expect(bob.message("Noon works")).to_have_attribute("data-state", re.compile("^(delivered|read)$"))
    reply = alice.message("Noon works. See you there!")
    expect(reply).to_have_count(1)
    expect(reply).to_have_class(re.compile(r"\bin\b"))
    # Alice has the conversation open: Bob's reply is read, and Bob sees it live.
    expect(bob.message("Noon works")).to_have_attribute("data-state", "read")

    # Order on both sides follows the order they were written; nothing is doubled.
    expected = ["Hello Bob, lunch at noon?", "Noon works. See you there!"]
    assert alice.page.locator("#messages li.message .body").all_inner_texts() == expected
    assert bob.page.locator("#messages li.message .body").all_inner_texts() == expected

    # A reload shows the same history from the server.
    bob.page.reload()
    bob.open_conversation("alice")
    expect(bob.page.locator("#messages li.message .body")).to_have_text(expected)


def test_enter_sends_and_shift_enter_breaks_the_line(browsers: Browsers, network: DevNetwork) -> None:
    node_a, node_b = network.nodes
    carol = browsers.login(node_a, "carol")
    dave = browsers.login(node_b, "dave")
    carol.open_conversation("dave")
    box = carol.page.locator("#message-input")
    box.click()
    box.type("first line")
    box.press("Shift+Enter")
    box.type("second line")
    box.press("Enter")
    sent = carol.message("first line")
    expect(sent).to_have_count(1)
    expect(sent.locator(".body")).to_have_text("first line\nsecond line")
    expect(box).to_have_value("")
    dave.open_conversation("carol")
    expect(dave.message("second line")).to_have_count(1)


def test_a_send_that_fails_can_be_retried_without_a_duplicate(
    browsers: Browsers, network: DevNetwork
) -> None:
    alice, bob = in_conversation(browsers, network)

    # The network drops the first attempt: the message says so and offers a retry.
    route = re.compile(r"/api/v1/conversations/bob/messages$")
    alice.page.route(route, lambda r: r.abort() if r.request.method == "POST" else r.fallback())
    alice.send("Did the contract arrive?")
    mine = alice.message("Did the contract arrive?")
    expect(mine).to_have_attribute("data-state", "failed")
    expect(mine.locator(".state")).to_contain_text("Not sent")
    expect(alice.page.locator("#send-error")).to_be_visible()
    retry = mine.locator("button.retry")
    expect(retry).to_be_visible()

    alice.page.unroute(route)
    retry.click()
    expect(mine).to_have_attribute("data-state", re.compile("^(delivered|read)$"))
    expect(retry).to_be_hidden()
    expect(alice.page.locator("#send-error")).to_be_hidden()
    expect(bob.message("Did the contract arrive?")).to_have_count(1)
    expect(alice.message("Did the contract arrive?")).to_have_count(1)


def test_logging_in_on_another_persons_node_is_refused(browsers: Browsers, network: DevNetwork) -> None:
    node_a, node_b = network.nodes
    login(node_a, "alice", PASSWORDS["alice"])  # node A is alice's home
    stranger = browsers.open(node_b, "alice")
    stranger.goto("/login")
    stranger.page.locator("#username").fill("alice")
    stranger.page.locator("#password").fill(PASSWORDS["alice"])
    stranger.page.locator("#login-button").click()
    expect(stranger.page.locator("#login-error")).to_contain_text("lives on another node")
    assert stranger.page.url.endswith("/login")
    # The page offers the way to her home node's login page.
    expect(stranger.page.locator("#home-node-link")).to_have_attribute("href", f"{node_a.url}/login")


def test_a_logged_in_visitor_to_the_login_page_goes_to_the_app(
    browsers: Browsers, network: DevNetwork
) -> None:
    alice = browsers.login(network.nodes[0], "alice")
    alice.goto("/login")
    alice.page.wait_for_url(re.compile(r"/$"))
    expect(alice.page.locator("#users")).to_be_visible()


def test_without_server_sent_events_the_page_polls(browsers: Browsers, network: DevNetwork) -> None:
    node_a, node_b = network.nodes
    alice = browsers.login(node_a, "alice")
    bob = browsers.open(node_b, "bob")
    bob.context.add_init_script("delete window.EventSource")
    log_in(bob, live="polling")
    bob.open_conversation("alice")
    alice.open_conversation("bob")
    alice.send("Can you hear me without a stream?")
    expect(bob.message("without a stream")).to_have_count(1)
    expect(alice.message("without a stream")).to_have_attribute("data-state", "read")


def test_a_message_edited_then_deleted_changes_live_for_the_other_side(
    browsers: Browsers, network: DevNetwork
) -> None:
    alice, bob = in_conversation(browsers, network)
    bob.page.evaluate("window.__sameDocument = true")

    alice.send("The quarterly call moves to Tuesday")
    expect(bob.message("quarterly call moves to Tuesday")).to_be_visible()
    message_id = alice.message("quarterly call").get_attribute("data-id")
    mine = alice.page.locator(f'#messages li[data-id="{message_id}"]')  # its text changes below
    theirs = bob.page.locator(f'#messages li[data-id="{message_id}"]')

    # Editing: Escape leaves it as it was; Enter saves, and bob's copy follows live.
    mine.hover()
    mine.get_by_role("button", name="Edit this message").click()
    editor = mine.get_by_role("textbox", name="Edit message")
    expect(editor).to_have_value("The quarterly call moves to Tuesday")
    editor.fill("Thrown away")
    editor.press("Escape")
    expect(mine.locator(".body")).to_have_text("The quarterly call moves to Tuesday")
    mine.hover()
    mine.get_by_role("button", name="Edit this message").click()
    editor.fill("The quarterly call moves to **Wednesday**")
    editor.press("Enter")
    expect(mine.locator(".body strong")).to_have_text("Wednesday")
    expect(theirs.locator(".body strong")).to_have_text("Wednesday")
    expect(theirs.locator(".edited")).to_have_text("edited")
    expect(theirs).not_to_contain_text("Tuesday")

    # The up arrow in an empty message box edits one's last message; Escape goes back to the box.
    composer = alice.page.locator("#message-input")
    composer.focus()
    composer.press("ArrowUp")
    expect(editor).to_have_value("The quarterly call moves to **Wednesday**")
    editor.press("Escape")
    expect(composer).to_be_focused()
    expect(mine.locator(".body strong")).to_have_text("Wednesday")

    # Deleting for everyone: a marker stays in its place on both sides.
    alice.send("The merger closes on Friday")
    expect(bob.message("merger closes")).to_be_visible()
    secret = alice.message("merger closes")
    secret_id = secret.get_attribute("data-id")
    secret.hover()
    secret.get_by_role("button", name="Delete this message").click()
    alice.page.get_by_role("button", name="Delete for everyone").click()
    expect(secret).to_have_count(0)  # its text is gone from the page
    gone = f'#messages li[data-id="{secret_id}"]'
    expect(alice.page.locator(gone)).to_have_text(re.compile("You deleted this message"))
    expect(bob.page.locator(gone)).to_have_text(re.compile("This message was deleted"))
    expect(bob.page.locator("#messages")).not_to_contain_text("merger")

    # Bob takes the edited one out of his own history; he cannot delete it for alice.
    theirs.hover()
    theirs.get_by_role("button", name="Delete this message").click()
    expect(bob.page.get_by_role("button", name="Delete for everyone")).to_be_hidden()
    bob.page.get_by_role("button", name="Delete for me").click()
    expect(theirs).to_have_count(0)
    assert bob.page.evaluate("window.__sameDocument === true")  # all of it live

    bob.page.reload()
    bob.open_conversation("alice")
    expect(bob.page.locator(gone)).to_have_text(re.compile("This message was deleted"))
    expect(theirs).to_have_count(0)
    expect(mine.locator(".body strong")).to_have_text("Wednesday")  # alice keeps hers


def test_a_reply_quotes_the_message_it_answers_and_the_quote_leads_back_to_it(
    browsers: Browsers, network: DevNetwork
) -> None:
    alice, bob = in_conversation(browsers, network)

    alice.send("Which room is the board meeting in?")
    question_id = alice.message("Which room is the board meeting in?").get_attribute("data-id")
    mine = alice.page.locator(f'#messages li[data-id="{question_id}"]')  # a quote of it comes below
    question = bob.page.locator(f'#messages li[data-id="{question_id}"]')
    expect(question).to_have_text(re.compile("Which room is the board meeting in?"))
    question.hover()
    question.get_by_role("button", name="Reply to this message").click()
    bar = bob.page.locator("#reply-bar")
    expect(bar).to_contain_text("Replying to Alice: Which room is the board meeting in?")
    bob.page.locator("#message-input").press("Escape")  # changed his mind
    expect(bar).to_be_hidden()
    question.hover()
    question.get_by_role("button", name="Reply to this message").click()
    bob.send("Room Bittern, third floor")
    expect(bar).to_be_hidden()
    expect(bob.message("Room Bittern").locator(".quote")).to_have_text(
        "Alice: Which room is the board meeting in?"
    )

    answer = alice.message("Room Bittern")
    expect(answer.locator(".quote")).to_have_text("You: Which room is the board meeting in?")
    answer.locator(".quote").click()  # leads back to the question
    expect(mine).to_have_class(re.compile(r"\bfound\b"))

    # Alice edits her question: the quote in bob's reply follows, live.
    mine.hover()
    mine.get_by_role("button", name="Edit this message").click()
    alice.page.get_by_role("textbox", name="Edit message").fill("Which room is the board dinner in?")
    alice.page.get_by_role("textbox", name="Edit message").press("Enter")
    expect(question.locator(".body")).to_have_text("Which room is the board dinner in?")
    expect(bob.message("Room Bittern").locator(".quote")).to_have_text(
        "Alice: Which room is the board dinner in?"
    )


def test_a_message_sent_from_a_computer_whose_clock_is_behind_takes_its_place_by_the_nodes_clock(
    browsers: Browsers, network: DevNetwork
) -> None:
    node_a, node_b = network.nodes
    # Alice's laptop clock is ten minutes slow: her page first draws what she sends by it.
    alice = browsers.open(node_a, "alice")
    alice.context.add_init_script("{ const real = Date.now; Date.now = () => real() - 600000; }")
    log_in(alice)
    bob = browsers.login(node_b, "bob")
    alice.open_conversation("bob")

    bob.open_conversation("alice")
    bob.send("Are the slides final?")
    expect(alice.message("Are the slides final?")).to_be_visible()
    alice.send("Yes, sent them an hour ago")
    expect(alice.message("Yes, sent them an hour ago")).to_have_attribute(
        "data-state", re.compile("sent|delivered|read")
    )
    bodies = alice.page.locator("#messages li.message .body")
    expect(bodies.last).to_have_text("Yes, sent them an hour ago")  # after bob's, as on his page
    assert bodies.all_inner_texts()[-2:] == ["Are the slides final?", "Yes, sent them an hour ago"]


def test_a_draft_stays_with_its_conversation_and_never_goes_to_another(
    browsers: Browsers, network: DevNetwork
) -> None:
    alice = browsers.login(network.nodes[0], "alice")
    composer = alice.page.locator("#message-input")
    alice.open_conversation("bob")
    composer.fill("Bob: the offer is 41M, keep it quiet")
    alice.open_conversation("carol")
    expect(composer).to_have_value("")  # nothing written to bob is left in carol's box
    composer.fill("Carol: lunch?")
    alice.open_conversation("bob")
    expect(composer).to_have_value("Bob: the offer is 41M, keep it quiet")
    alice.open_conversation("carol")
    expect(composer).to_have_value("Carol: lunch?")

"""A demanding user's day in the browser: a phone, several tabs, long histories,
pictures, flaky connections and the errors people are shown."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Page, Route, expect

from flamechat.devnet import DevNetwork
from tests.browser.conftest import Browsers, log_in
from tests.conftest import PASSWORDS, make_network
from tests.support import login

pytestmark = pytest.mark.browser

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevNetwork]:
    # A day of logging in and out, from one address: the login limits are not what is tested.
    logins = ["--logins-per-minute-per-address", "1000", "--logins-per-minute-per-account", "1000"]
    network = make_network(
        tmp_path_factory.mktemp("daily"),
        node_args=[logins, logins],
        directory_args=["--login-checks-per-minute-per-account", "1000"],
    )
    try:
        # Everyone has signed in once (and so has keys): nothing anyone writes waits.
        for index, name in enumerate(("alice", "bob", "carol", "dave")):
            login(network.nodes[index % 2], name, PASSWORDS[name])
        yield network
    finally:
        network.stop()


def panel_top_below_header(page: Page) -> bool:
    header = page.locator("header.top").bounding_box()
    panel = page.locator("#search-results").bounding_box()
    assert header is not None
    assert panel is not None
    return panel["y"] >= header["y"] + header["height"] - 1


def test_on_a_phone_the_people_list_and_the_conversation_take_turns(
    browsers: Browsers, net: DevNetwork
) -> None:
    alice = browsers.login(net.nodes[0], "alice", **PHONE)
    page = alice.page
    width = page.viewport_size["width"] if page.viewport_size else 390

    # Nothing sticks out sideways: the header's controls are all on the screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    for control in ("#search-input", "#status-select", "#my-profile", "#logout"):
        expect(page.locator(control)).to_be_in_viewport(ratio=1)
    people = page.locator("aside.people")
    expect(people).to_be_in_viewport()

    # A conversation takes the screen, with the box to write in on it and a way back.
    alice.open_conversation("bob")
    expect(people).to_be_hidden()
    expect(page.locator("#message-input")).to_be_in_viewport(ratio=1)
    expect(page.locator("#send-button")).to_be_in_viewport(ratio=1)
    alice.send("Sent from my phone")
    expect(alice.message("Sent from my phone")).to_be_in_viewport()
    assert page.evaluate("document.documentElement.scrollWidth") <= width

    back = page.locator("#back-to-people")
    expect(back).to_be_visible()
    back.click()
    expect(people).to_be_visible()
    expect(page.locator("#conversation")).to_be_hidden()
    expect(alice.person("bob").locator("button")).to_be_focused()

    # The phone's own Back does the same, and Forward goes back into the conversation;
    # neither leaves the app.
    alice.open_conversation("bob")
    page.go_back()
    expect(people).to_be_visible()
    expect(page.locator("#conversation")).to_be_hidden()
    assert page.url == net.nodes[0].url + "/"
    page.go_forward()
    expect(page.locator("#conversation")).to_have_attribute("data-peer", "bob")
    expect(alice.message("Sent from my phone")).to_be_visible()
    expect(people).to_be_hidden()
    back.click()
    expect(people).to_be_visible()

    # The search panel opens below the (taller, wrapped) header, not over it.
    page.locator("#search-input").fill("phone")
    page.locator("#search-input").press("Enter")
    expect(page.locator("#message-results li.hit")).to_have_count(1)
    assert panel_top_below_header(page)

    # Back in the app on a wide screen, both are side by side and there is no "back".
    page.set_viewport_size({"width": 1280, "height": 800})
    alice.open_conversation("bob")
    expect(people).to_be_visible()
    expect(back).to_be_hidden()


def test_logging_out_and_in_as_someone_else_in_one_tab_carries_the_other_tabs(
    browsers: Browsers, net: DevNetwork
) -> None:
    alice = browsers.login(net.nodes[0], "alice")
    first = alice.page
    alice.open_conversation("carol")

    # The same browser, a second tab: log out, and in as Carol.
    second = alice.context.new_page()
    second.goto(net.nodes[0].url + "/")
    second.locator("#logout").click()
    second.wait_for_url(re.compile(r"/login$"))
    second.locator("#username").fill("carol")
    second.locator("#password").fill(PASSWORDS["carol"])
    second.locator("#login-button").click()
    expect(second.locator("#my-profile")).to_have_text("@carol")

    # The first tab no longer shows Alice's conversation on Carol's session.
    expect(first.locator("#my-profile")).to_have_text("@carol")
    expect(first.locator("#conversation")).to_be_hidden()


def _picture(path: Path, colour: tuple[int, int, int]) -> str:
    Image.new("RGB", (900, 700), colour).save(path, format="PNG")
    return str(path)


def test_a_conversation_with_pictures_opens_at_the_latest_message(
    browsers: Browsers, net: DevNetwork, tmp_path: Path
) -> None:
    node_a, node_b = net.nodes
    alice = browsers.login(node_a, "alice")
    alice.open_conversation("dave")
    pictures = [_picture(tmp_path / f"slide{n}.png", (40 * n, 90, 200)) for n in range(3)]
    alice.page.locator("#file-input").set_input_files(pictures)
    expect(alice.page.locator("#messages .file-card")).to_have_count(3)
    expect(alice.page.locator("#uploads li")).to_have_count(0)
    alice.send("Those are the three slides for Monday")
    expect(alice.message("three slides")).to_have_attribute(
        "data-state", re.compile("^(sent|delivered|read)$")
    )

    dave = browsers.login(node_b, "dave")
    dave.open_conversation("alice")
    expect(dave.page.locator("#messages .file-card[data-state=ready]")).to_have_count(3, timeout=30_000)
    # Every picture has come in, each making its message taller after the page
    # scrolled to the end: the latest message is still the one in view.
    pictures_shown = dave.page.locator("#messages .file-thumb img")
    expect(pictures_shown).to_have_count(3)
    for picture in pictures_shown.all():
        expect(picture).to_have_js_property("complete", True)
        assert picture.evaluate("img => img.naturalWidth") > 0
    expect(dave.message("three slides")).to_be_in_viewport(ratio=0.9)


def test_scrolling_up_brings_older_messages_by_itself(browsers: Browsers, net: DevNetwork) -> None:
    node_a, node_b = net.nodes
    writer = login(node_b, "bob", PASSWORDS["bob"])
    for number in range(60):
        writer.send("carol", f"quarterly figure {number}")

    carol = browsers.login(node_a, "carol")
    carol.open_conversation("bob")
    messages = carol.page.locator("#messages li.message")
    expect(messages).to_have_count(50)  # the newest page
    expect(carol.message("quarterly figure 59")).to_be_in_viewport()

    carol.page.locator("#messages").evaluate("list => { list.scrollTop = 0; }")
    expect(messages).to_have_count(60)  # no button to find and click
    expect(carol.message("quarterly figure 0")).to_have_count(1)
    # What the reader was looking at stays in view while the older page comes in above.
    expect(carol.message("quarterly figure 10")).to_be_in_viewport()
    expect(carol.page.locator("#load-older")).to_be_hidden()


def test_a_new_conversation_says_it_has_no_messages_yet(browsers: Browsers, net: DevNetwork) -> None:
    login(net.nodes[1], "bob", PASSWORDS["bob"]).send("carol", "Welcome aboard")
    carol = browsers.login(net.nodes[0], "carol")
    carol.open_conversation("dave")
    note = carol.page.locator("#no-messages")
    expect(note).to_be_visible()
    expect(note).to_contain_text("No messages yet")
    carol.send("Hello Dave")
    expect(carol.message("Hello Dave")).to_have_count(1)
    expect(note).to_be_hidden()
    carol.open_conversation("bob")  # a conversation with history says nothing of the kind
    expect(carol.page.locator("#messages li.message").first).to_be_visible()
    expect(note).to_be_hidden()


def test_a_lost_connection_is_explained_in_words(browsers: Browsers, net: DevNetwork) -> None:
    alice = browsers.login(net.nodes[0], "alice")
    alice.open_conversation("bob")
    route = re.compile(r"/api/v1/conversations/bob/messages$")
    alice.page.route(route, lambda r: r.abort() if r.request.method == "POST" else r.fallback())
    alice.send("Are we still on for three?")
    error = alice.page.locator("#send-error")
    expect(error).to_contain_text("Your node cannot be reached")
    expect(error).not_to_contain_text("fetch")
    alice.page.unroute(route)

    # An answer that is not ours (a proxy's error page) is no "HTTP 502" either.
    alice.page.route(
        route,
        lambda r: (
            r.fulfill(status=502, content_type="text/html", body="<h1>Bad Gateway</h1>")
            if r.request.method == "POST"
            else r.fallback()
        ),
    )
    alice.send("And the budget?")
    expect(error).to_contain_text("try again in a moment")
    expect(error).not_to_contain_text("HTTP")


def test_search_panel_sits_below_the_banner_and_empty_results_are_not_numbered(
    browsers: Browsers, net: DevNetwork
) -> None:
    alice = browsers.login(net.nodes[0], "alice")
    page = alice.page
    page.evaluate("flame.emit({ type: 'directory', status: 'offline' })")  # as the node's stream says it
    expect(page.locator("#directory-banner")).to_be_visible()
    page.locator("#search-input").fill("zebracrossingnothing")
    page.locator("#search-input").press("Enter")
    none = page.locator("#message-results li", has_text="No messages match.")
    expect(none).to_be_visible()
    assert none.evaluate("li => getComputedStyle(li).listStyleType") == "none"  # not "1. No messages match."
    assert panel_top_below_header(page), "the panel hides the search box"
    expect(page.locator("#search-input")).to_have_attribute("maxlength", "200")  # the node's limit


def test_block_and_unblock_failures_are_shown(browsers: Browsers, net: DevNetwork) -> None:
    alice = browsers.login(net.nodes[0], "alice")
    page = alice.page
    alice.goto("/profile/dave")
    blocks = re.compile(r"/api/v1/blocks/dave$")
    page.route(blocks, lambda r: r.abort())
    page.locator("#profile-block").click()
    expect(page.locator("#profile-error")).to_contain_text("Not blocked")
    expect(page.locator("#profile-block")).to_have_text("Block")
    page.unroute(blocks)
    page.locator("#profile-block").click()
    expect(page.locator("#profile-block")).to_have_text("Unblock")
    expect(page.locator("#profile-error")).to_be_hidden()

    alice.goto("/blocks")
    page.route(blocks, lambda r: r.abort())
    page.locator('#blocked-list li[data-username="dave"] button.unblock').click()
    expect(page.locator("#blocks-error")).to_contain_text("@dave is still blocked")
    expect(page.locator('#blocked-list li[data-username="dave"]')).to_be_visible()
    page.unroute(blocks)
    page.locator('#blocked-list li[data-username="dave"] button.unblock').click()
    expect(page.locator('#blocked-list li[data-username="dave"]')).to_have_count(0)


def test_a_refused_picture_does_not_hide_that_the_details_were_saved(
    browsers: Browsers, net: DevNetwork, tmp_path: Path
) -> None:
    bob = browsers.login(net.nodes[1], "bob")
    bob.goto("/profile/bob")
    page = bob.page
    page.locator("#edit-title").fill("Chief Financial Officer")
    (tmp_path / "me.png").write_bytes(b"this is not a picture")
    page.locator("#edit-avatar").set_input_files(str(tmp_path / "me.png"))
    page.locator("#profile-save").click()
    note = page.locator("#profile-message")
    expect(note).to_contain_text("Your details are saved, but not the picture")
    expect(page.locator("#profile-title")).to_have_text("Chief Financial Officer")


def test_screen_readers_hear_the_regions_and_who_wrote_each_message(
    browsers: Browsers, net: DevNetwork
) -> None:
    login(net.nodes[1], "dave", PASSWORDS["dave"]).send("alice", "Board pack is ready")
    alice = browsers.login(net.nodes[0], "alice")
    alice.open_conversation("dave")
    alice.send("Thanks, reading it tonight")
    page = alice.page
    expect(page.get_by_role("main")).to_have_count(1)
    expect(page.get_by_role("complementary", name="People")).to_be_visible()
    expect(page.get_by_role("region", name="Dave")).to_be_visible()
    messages = page.get_by_role("list", name="Messages")
    expect(messages).to_be_visible()
    # Without seeing which side a bubble sits on, each message still says whose it is.
    expect(messages).to_match_aria_snapshot(
        """
        - list "Messages":
          - listitem:
            - text: "Dave:"
            - paragraph: Board pack is ready
          - listitem:
            - text: "You:"
            - paragraph: Thanks, reading it tonight
        """
    )


def test_a_search_for_a_person_who_cannot_exist_is_explained(browsers: Browsers, net: DevNetwork) -> None:
    alice = browsers.login(net.nodes[0], "alice")
    page = alice.page
    page.locator("#search-input").fill("budget")
    page.locator("#search-input").press("Enter")
    expect(page.locator("#search-results")).to_be_visible()
    page.locator("#search-peer").fill("Dave Diaz")
    page.locator("#search-peer").press("Enter")
    results = page.locator("#message-results")
    expect(results).to_contain_text("“dave diaz” is not a username")
    expect(results).not_to_contain_text("pattern")
    page.locator("#search-peer").fill("@dave")  # as people write it
    page.locator("#search-peer").press("Enter")
    expect(results).not_to_contain_text("not a username")


def test_a_reply_written_on_an_older_page_goes_after_the_latest_messages(
    browsers: Browsers, net: DevNetwork
) -> None:
    node_a, node_b = net.nodes
    writer = login(node_b, "dave", PASSWORDS["dave"])
    old = writer.send("carol", "Can you check the lease terms?")["id"]
    for number in range(55):
        writer.send("carol", f"site visit note {number}")

    carol = browsers.login(node_a, "carol")
    carol.goto(f"/#dave/{old}")  # where a search hit leads
    expect(carol.message("lease terms")).to_have_class(re.compile(r"\bfound\b"))
    expect(carol.page.locator("#jump-latest")).to_be_visible()
    carol.send("Lease terms checked, all fine")
    last = carol.page.locator("#messages li.message").last
    expect(last).to_contain_text("Lease terms checked")
    expect(carol.page.locator("#jump-latest")).to_be_hidden()
    expect(carol.message("site visit note 54")).to_have_count(
        1
    )  # the latest page, not a gap before the reply
    expect(last).to_have_attribute("data-state", re.compile("^(sent|delivered|read)$"))


def test_a_message_link_followed_while_the_page_loads_opens_at_that_message(
    browsers: Browsers, net: DevNetwork
) -> None:
    """The page opens the conversation its address names once the people list is in;
    a link followed before that (a search hit) is what was asked for, and stays."""
    node_a = net.nodes[0]
    writer = login(node_a, "alice", PASSWORDS["alice"])
    old = writer.send("carol", "Where is the signed lease?")["id"]
    for number in range(55):
        writer.send("carol", f"floor plan note {number}")

    carol = browsers.open(node_a, "carol")
    held: list[Route] = []
    carol.page.route(re.compile(r"/api/v1/users$"), lambda route: held.append(route))  # a slow list today
    log_in(carol)
    carol.page.evaluate(f"location.hash = '#alice/{old}'")
    expect(carol.message("signed lease")).to_have_class(re.compile(r"\bfound\b"))
    assert held, "the people list was asked for"
    for route in held:
        route.continue_()
    expect(carol.person("alice")).to_be_visible()
    carol.page.wait_for_timeout(1000)  # the start-up's own opening would have come by now
    expect(carol.message("signed lease")).to_have_class(re.compile(r"\bfound\b"))
    expect(carol.page.locator("#jump-latest")).to_be_visible()


def test_a_message_too_long_to_send_goes_back_in_the_box(browsers: Browsers, net: DevNetwork) -> None:
    alice = browsers.login(net.nodes[0], "alice")
    alice.open_conversation("carol")
    text = "word " * 14_000  # 70,000 bytes, over the node's 64 KiB
    box = alice.page.locator("#message-input")
    box.fill(text)
    box.press("Enter")
    expect(alice.page.locator("#send-error")).to_contain_text("shorten it, or send it as a file")
    expect(box).to_have_value(text)  # nothing to retype
    expect(alice.page.locator("#messages li.message.failed")).to_have_count(0)  # no Retry that cannot work


def test_a_page_that_loses_its_node_says_so_and_clears_when_it_is_back(
    browsers: Browsers, net: DevNetwork
) -> None:
    bob = browsers.open(net.nodes[1], "bob")
    bob.context.add_init_script("delete window.EventSource")  # polls: a failed poll is seen at once
    log_in(bob, live="polling")
    banner = bob.page.locator("#connection-banner")
    expect(banner).to_be_hidden()
    bob.context.set_offline(True)
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("Your node cannot be reached")
    bob.context.set_offline(False)
    expect(banner).to_be_hidden()


FILE_DRAG = """([selector, type, related]) => {
    const transfer = new DataTransfer();
    transfer.items.add(new File(["minutes"], "minutes.txt", { type: "text/plain" }));
    const event = new DragEvent(type, {
        bubbles: true, cancelable: true, dataTransfer: transfer,
        relatedTarget: related ? document.querySelector(related) : null,
    });
    return !document.querySelector(selector).dispatchEvent(event);  // true: the page took it
}"""


def drag(page: Page, selector: str, kind: str, related: str | None = None) -> bool:
    return bool(page.evaluate(FILE_DRAG, [selector, kind, related]))


def test_dragging_files_marks_the_conversation_only_while_over_it(
    browsers: Browsers, net: DevNetwork
) -> None:
    alice = browsers.login(net.nodes[0], "alice")
    page = alice.page
    alice.open_conversation("bob")
    conversation = page.locator("#conversation")

    assert drag(page, "#messages", "dragover")
    expect(conversation).to_have_class(re.compile(r"\bdropping\b"))
    # From one part of the conversation to another: still over it.
    drag(page, "#messages", "dragleave", "#message-input")
    expect(conversation).to_have_class(re.compile(r"\bdropping\b"))
    # Out over the people list, from the box to write in: the dashed outline goes.
    drag(page, "#message-input", "dragleave", "#users")
    expect(conversation).not_to_have_class(re.compile(r"\bdropping\b"))

    # Let go over the people list, a file is refused rather than opened in place of the app.
    assert drag(page, "#users", "dragover"), "the browser would open the file instead of the app"
    assert drag(page, "#users", "drop")
    expect(page.locator("#uploads li")).to_have_count(0)

    # Someone blocked gets no files by dropping either (Attach is off for them too).
    page.locator("#block-toggle").click()
    expect(page.locator("#attach-button")).to_be_disabled()
    drag(page, "#messages", "dragover")
    expect(conversation).not_to_have_class(re.compile(r"\bdropping\b"))
    drag(page, "#messages", "drop")
    expect(page.locator("#uploads li")).to_have_count(0)
    page.locator("#block-toggle").click()
    expect(page.locator("#attach-button")).to_be_enabled()


def test_on_a_phone_the_way_back_counts_what_came_meanwhile(browsers: Browsers, net: DevNetwork) -> None:
    dave = browsers.login(net.nodes[1], "dave", **PHONE)
    dave.open_conversation("bob")
    back = dave.page.locator("#back-to-people")
    expect(back).to_have_text(re.compile(r"^← People( \(\d+ unread\))?$"))
    before = re.search(r"\d+", back.inner_text())
    waiting = int(before.group()) if before else 0  # from earlier in the day
    badge = dave.person("carol").locator(".unread")
    from_carol = int(badge.inner_text() or 0)
    login(net.nodes[0], "carol", PASSWORDS["carol"]).send("dave", "Call me when you land")
    expect(back).to_have_text(f"← People ({waiting + 1} unread)")
    back.click()
    expect(badge).to_have_text(str(from_carol + 1))


def test_the_login_button_says_it_is_working(browsers: Browsers, net: DevNetwork) -> None:
    bob = browsers.open(net.nodes[1], "bob")
    held: list[Route] = []
    bob.page.route(re.compile(r"/api/v1/sessions$"), lambda route: held.append(route))
    bob.goto("/login")
    bob.page.locator("#username").fill("bob")
    bob.page.locator("#password").fill(PASSWORDS["bob"])
    bob.page.locator("#login-button").click()
    button = bob.page.locator("#login-button")
    expect(button).to_have_text("Logging in…")
    expect(button).to_be_disabled()
    for _ in range(50):  # the route handler runs while Playwright waits
        if held:
            break
        bob.page.wait_for_timeout(100)
    assert held, "the page did not post the login"
    held[0].continue_()
    bob.page.wait_for_url(re.compile(r"/(#.*)?$"))


HIDEABLE = """(() => {
    let hidden = false;
    const state = () => (hidden ? "hidden" : "visible");
    Object.defineProperty(Document.prototype, "visibilityState", { get: state });
    Object.defineProperty(Document.prototype, "hidden", { get: () => hidden });
    window.setTabHidden = (value) => {
        hidden = value;
        document.dispatchEvent(new Event("visibilitychange"));
    };
})();"""


def unread_in_title(title: str) -> int:
    found = re.match(r"^\((\d+)\) ", title)
    return int(found.group(1)) if found else 0


def test_a_message_to_the_open_conversation_of_a_tab_out_of_sight_counts_in_its_title(
    browsers: Browsers, net: DevNetwork
) -> None:
    node_a, node_b = net.nodes
    bob = browsers.open(node_b, "bob")
    bob.context.add_init_script(HIDEABLE)  # the tab behind others, as a test can make it
    log_in(bob)
    bob.open_conversation("alice")
    before = unread_in_title(bob.page.title())
    bob.page.evaluate("window.setTabHidden(true)")

    login(node_a, "alice", PASSWORDS["alice"]).send("bob", "Have you signed the contract?")
    arrived = bob.message("signed the contract")
    expect(arrived).to_have_count(1)
    expect(bob.page).to_have_title(re.compile(rf"^\({before + 1}\) "))
    expect(arrived).to_have_attribute("data-state", "delivered")  # not read: nobody looked

    bob.page.evaluate("window.setTabHidden(false)")
    expect(arrived).to_have_attribute("data-state", "read")
    if before:
        expect(bob.page).to_have_title(re.compile(rf"^\({before}\) "))
    else:
        expect(bob.page).to_have_title(re.compile(r"^Flame Chat"))


def test_each_day_of_a_conversation_is_named_above_its_first_message(
    browsers: Browsers, net: DevNetwork
) -> None:
    dave = login(net.nodes[1], "dave", PASSWORDS["dave"])
    texts = ("Minutes from the offsite", "Slides for the board", "Agenda for today", "See you at ten")
    for text in texts:
        dave.send("bob", text)
    # A node stamps a message with the time it is sent: to show days gone by, the
    # history page moves the first three back in time on its way to the browser.
    now = datetime.now(UTC)
    long_ago = datetime.combine((now - timedelta(days=40)).date(), time(12), UTC)
    yesterday = datetime.combine((now - timedelta(days=1)).date(), time(12), UTC)
    moved = {texts[0]: long_ago, texts[1]: long_ago + timedelta(minutes=5), texts[2]: yesterday}

    def back_in_time(route: Route) -> None:
        response = route.fetch()
        page = response.json()
        for message in page["messages"]:
            if message["body"] in moved:
                message["sent_at"] = int(moved[message["body"]].timestamp() * 1000)
        route.fulfill(response=response, json=page)

    bob = browsers.login(net.nodes[1], "bob", timezone_id="UTC", locale="en-US")
    bob.page.route(re.compile(r"/api/v1/conversations/dave/messages\?"), back_in_time)
    bob.open_conversation("dave")
    expect(bob.message(texts[3])).to_be_visible()

    def drawn() -> list[str]:
        shown: list[str] = bob.page.locator("#messages > li").evaluate_all(
            "items => items.map((li) =>"
            " li.classList.contains('day') ? `day: ${li.textContent}` : li.dataset.text)"
        )
        return shown

    # Forty days ago is named by its date (with the year only if it is not this one).
    named = f"day: {long_ago:%A}, {long_ago:%B} {long_ago.day}"
    if long_ago.year != now.year:
        named += f", {long_ago.year}"
    assert drawn() == [named, *texts[:2], "day: Yesterday", texts[2], "day: Today", texts[3]]
    # What arrives live goes under today's line; no second line for the same day.
    dave.send("bob", "Running five minutes late")
    expect(bob.message("five minutes late")).to_be_visible()
    assert drawn()[-3:] == ["day: Today", texts[3], "Running five minutes late"]
    expect(bob.page.locator("#messages li.day")).to_have_count(3)


# The system's notification centre is out of a test's sight: the page gets a stand-in
# that records what it was asked to show, and grants permission when asked.
NOTIFICATIONS = """
window.notes = [];
window.Notification = class {
  static permission = "default";
  static async requestPermission() { window.Notification.permission = "granted"; return "granted"; }
  constructor(title, options) { Object.assign(this, { title, ...options }); window.notes.push(this); }
  close() {}
};
"""


def test_a_message_out_of_sight_is_notified_by_sender_only_and_not_when_busy(
    browsers: Browsers, net: DevNetwork
) -> None:
    carol = browsers.open(net.nodes[0], "carol")
    carol.context.add_init_script(NOTIFICATIONS)
    log_in(carol)
    page = carol.page
    offer = page.locator("#notify-offer")
    expect(offer).to_be_visible()
    offer.locator("button").click()
    expect(offer).to_be_hidden()  # granted: nothing left to offer

    def shown() -> list[dict[str, str]]:
        notes: list[dict[str, str]] = page.evaluate("window.notes.map((n) => ({ ...n }))")
        return notes

    carol.open_conversation("alice")
    dave = login(net.nodes[1], "dave", PASSWORDS["dave"])
    alice = login(net.nodes[0], "alice", PASSWORDS["alice"])
    # In the open conversation, in sight: it is on the screen, nothing to notify.
    alice.send("carol", "Looking at the draft now")
    expect(carol.message("Looking at the draft now")).to_be_visible()
    # From someone else: the sender's name, never the text. The page counts the message
    # and notifies in the same turn, so once the count moved the notification is there.
    badge = carol.person("dave").locator(".unread")
    waiting = int(badge.inner_text() or 0)  # from earlier in the day
    dave.send("carol", "The merger terms are confidential")
    expect(badge).to_have_text(str(waiting + 1))
    assert [(n["title"], n["body"]) for n in shown()] == [("Dave", "New message")]
    # Busy is do-not-disturb.
    page.locator("#status-select").select_option("busy")
    expect(page.locator("#my-dot")).to_have_class(re.compile(r"\bbusy\b"))
    dave.send("carol", "And the board meets Friday")
    expect(badge).to_have_text(str(waiting + 2))
    assert len(shown()) == 1
    # Clicking a notification opens its conversation.
    page.locator("#status-select").select_option("online")
    expect(page.locator("#my-dot")).to_have_class(re.compile(r"\bonline\b"))
    dave.send("carol", "Ring me before the board call")
    expect(badge).to_have_text(str(waiting + 3))
    assert len(shown()) == 2
    page.evaluate("window.notes.at(-1).onclick()")
    expect(page.locator("#conversation")).to_have_attribute("data-peer", "dave")
    expect(carol.message("Ring me before the board call")).to_be_visible()


def test_the_person_written_to_sees_them_typing_until_the_message_comes(
    browsers: Browsers, net: DevNetwork
) -> None:
    alice = browsers.login(net.nodes[0], "alice")
    alice.open_conversation("bob")
    bob = browsers.login(net.nodes[1], "bob")  # no one else here types as bob to alice
    bob.open_conversation("alice")
    typing = alice.page.locator("#peer-typing")
    expect(typing).to_have_text("")
    bob.page.locator("#message-input").press_sequentially("On my way", delay=20)
    expect(typing).to_have_text("Bob is typing…")
    bob.page.locator("#send-button").click()
    expect(alice.message("On my way")).to_be_visible()
    expect(typing).to_have_text("")  # what he typed is here
    # Typing again after sending is news at once (past the nodes' once-a-second bound).
    bob.page.wait_for_timeout(1100)
    bob.page.locator("#message-input").press_sequentially("One more thing", delay=20)
    expect(typing).to_have_text("Bob is typing…")
    # It was about bob: another conversation does not show it.
    alice.open_conversation("carol")
    expect(typing).to_have_text("")


def test_the_people_list_narrows_to_what_is_typed(browsers: Browsers, net: DevNetwork) -> None:
    alice = browsers.login(net.nodes[0], "alice")
    page = alice.page
    shown = page.locator("#users li.user:visible .handle")
    everyone = ["@bob", "@carol", "@dave"]
    expect(shown).to_have_text(everyone)
    box = page.locator("#people-filter")
    box.fill("CAR")  # any case
    expect(shown).to_have_text(["@carol"])
    box.fill("zed")
    expect(shown).to_have_count(0)
    expect(page.locator("#people-filter-none")).to_be_visible()
    box.fill("bo")
    expect(page.locator("#people-filter-none")).to_be_hidden()
    box.press("Enter")  # opens the first one left
    expect(page.locator("#conversation")).to_have_attribute("data-peer", "bob")
    box.press("Escape")
    expect(shown).to_have_text(everyone)
    expect(box).to_have_value("")

"""Issue 4 in the browser: a photo with a progress bar, shown inline on the other node,
downloaded; several files picked at once, with a bar that moves; audio played inline;
a hostile HTML file that only ever downloads; an upload cancelled, also before the
node answered."""

from __future__ import annotations

import hashlib
import math
import os
import re
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Route, expect

from flamechat.devnet import DevNetwork
from tests.browser.conftest import Browsers, in_conversation, start_network
from tests.support import eventually

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def files_network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevNetwork]:
    net = start_network(tmp_path_factory.mktemp("files-browser"))
    yield net
    net.stop()


def _photo(path: Path) -> bytes:
    image = Image.new("RGB", (1600, 1000), (217, 72, 15))
    for x in range(0, 1600, 50):
        for y in range(1000):
            image.putpixel((x, y), (255, 255, 255))
    image.save(path, format="JPEG", quality=92)
    return path.read_bytes()


def test_a_photo_goes_with_a_progress_bar_shows_inline_and_downloads(
    browsers: Browsers, files_network: DevNetwork, tmp_path: Path
) -> None:
    alice, bob = in_conversation(browsers, files_network)
    data = _photo(tmp_path / "harbour.jpg")

    # Hold the upload's first part, so the progress bar is seen for sure.
    held: list[Route] = []
    pattern = re.compile(r"/api/v1/uploads/[0-9a-f-]+$")
    alice.page.route(
        pattern, lambda route: held.append(route) if route.request.method == "PATCH" else route.continue_()
    )
    alice.page.locator("#file-input").set_input_files(str(tmp_path / "harbour.jpg"))
    row = alice.page.locator("#uploads li.upload", has_text="harbour.jpg")
    expect(row).to_be_visible()
    expect(row.locator("progress")).to_be_visible()
    expect(row.locator(".upload-cancel")).to_be_visible()
    for _ in range(50):
        if held:
            break
        alice.page.wait_for_timeout(100)
    assert held, "the page did not send the file"
    held[0].continue_()
    alice.page.unroute(pattern)

    # Sent: the upload row goes, the file is in alice's conversation, then at bob's, live.
    expect(row).to_have_count(0)
    expect(alice.message("harbour.jpg").locator(".file-card")).to_be_visible()
    card = bob.message("harbour.jpg").locator(".file-card")
    expect(card).to_have_attribute("data-state", "ready", timeout=30_000)
    thumb = card.locator(".file-thumb img")
    expect(thumb).to_be_visible()
    assert "/thumbnail" in (thumb.get_attribute("src") or "")
    width = thumb.evaluate("img => img.naturalWidth")
    assert 0 < width <= 480, "the thumbnail is not a small picture"

    # Click: the full-size picture opens in the page.
    card.locator(".file-thumb").click()
    viewer = bob.page.locator("#media-viewer")
    expect(viewer).to_be_visible()
    expect(viewer.locator("#media-viewer-image")).to_have_js_property("naturalWidth", 1600)
    viewer.locator("#media-viewer-close").click()
    expect(viewer).to_be_hidden()

    # Download: the bytes bob saves are the bytes alice sent.
    with bob.page.expect_download() as caught:
        card.locator(".file-download").click()
    saved = Path(caught.value.path())
    assert caught.value.suggested_filename == "harbour.jpg"
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()


def test_several_files_picked_at_once_go_with_bars_that_move_and_download(
    browsers: Browsers, files_network: DevNetwork, tmp_path: Path
) -> None:
    alice, bob = in_conversation(browsers, files_network)
    part = 8 * 1024 * 1024
    big = tmp_path / "site-plan.bin"
    big_data = os.urandom(20 * 1024 * 1024)  # three parts: 8, 8 and 4 MiB
    big.write_bytes(big_data)
    small = tmp_path / "agenda.txt"
    small.write_text("1. budget\n2. hiring\n")

    # Hold the big file's second part: its bar must stand part-way, neither empty nor full.
    held: list[Route] = []
    pattern = re.compile(r"/api/v1/uploads/[0-9a-f-]+$")

    def hold_second_part(route: Route) -> None:
        request = route.request
        if request.method == "PATCH" and request.headers.get("upload-offset") == str(part):
            held.append(route)
        else:
            route.continue_()

    alice.page.route(pattern, hold_second_part)
    alice.page.locator("#file-input").set_input_files([str(big), str(small)])
    row = alice.page.locator("#uploads li.upload", has_text="site-plan.bin")
    expect(row).to_be_visible()
    for _ in range(300):
        if held:
            break
        alice.page.wait_for_timeout(100)
    assert held, "the page did not send the second part"
    bar = row.locator("progress")
    value, top = bar.evaluate("bar => [bar.value, bar.max]")
    assert 0 < value < top, f"the bar stands at {value} of {top} with one part of three held"
    expect(row.locator(".upload-pct")).not_to_have_text("0%")
    held[0].continue_()
    alice.page.unroute(pattern)
    expect(row).to_have_count(0, timeout=60_000)

    # Both arrive at bob's. The small one downloads through the page, with its bar;
    # the large one is handed to the browser's own downloads, never read into the page.
    small_card = bob.message("agenda.txt").locator(".file-card")
    big_card = bob.message("site-plan.bin").locator(".file-card")
    expect(small_card).to_have_attribute("data-state", "ready", timeout=60_000)
    expect(big_card).to_have_attribute("data-state", "ready", timeout=60_000)
    with bob.page.expect_download() as caught:
        small_card.locator(".file-download").click()
    assert Path(caught.value.path()).read_bytes() == small.read_bytes()
    read_in_page: list[str] = []
    bob.page.on(
        "requestfinished", lambda r: read_in_page.append(r.url) if r.resource_type == "fetch" else None
    )
    with bob.page.expect_download(timeout=60_000) as caught:
        big_card.locator(".file-download").click()
    assert caught.value.suggested_filename == "site-plan.bin"
    saved = Path(caught.value.path())
    assert hashlib.sha256(saved.read_bytes()).digest() == hashlib.sha256(big_data).digest()
    expect(big_card.locator(".download-progress")).to_be_hidden()
    assert not [url for url in read_in_page if "/api/v1/files/" in url]


def test_a_file_dropped_on_the_conversation_goes_and_downloads_with_progress(
    browsers: Browsers, files_network: DevNetwork
) -> None:
    alice, bob = in_conversation(browsers, files_network)
    # What the browser builds for a drag from the desktop: a DataTransfer holding a File.
    dropped = alice.page.evaluate_handle(
        """() => {
            const transfer = new DataTransfer();
            const bytes = new Uint8Array(300000).fill(7);
            transfer.items.add(new File([bytes], "minutes.pdf", { type: "application/pdf" }));
            return transfer;
        }"""
    )
    alice.page.dispatch_event("#conversation", "dragover", {"dataTransfer": dropped})
    expect(alice.page.locator("#conversation")).to_have_class(re.compile(r"\bdropping\b"))
    alice.page.dispatch_event("#conversation", "drop", {"dataTransfer": dropped})
    expect(alice.page.locator("#conversation")).not_to_have_class(re.compile(r"\bdropping\b"))

    card = bob.message("minutes.pdf").locator(".file-card")
    expect(card).to_have_attribute("data-state", "ready", timeout=30_000)
    # Hold the file's bytes on their way to bob's page, so its progress bar is seen.
    held: list[Route] = []
    files = re.compile(r"/api/v1/files/[0-9a-f-]+$")
    bob.page.route(files, lambda route: held.append(route))
    card.locator(".file-download").click()
    expect(card.locator(".download-progress")).to_be_visible()
    for _ in range(50):
        if held:
            break
        bob.page.wait_for_timeout(100)
    assert held, "the page did not ask for the file"
    with bob.page.expect_download() as caught:
        held[0].continue_()
    bob.page.unroute(files)
    assert Path(caught.value.path()).read_bytes() == bytes([7]) * 300000
    assert caught.value.suggested_filename == "minutes.pdf"
    expect(card.locator(".download-progress")).to_be_hidden()


def test_a_hostile_html_file_downloads_and_never_runs(
    browsers: Browsers, files_network: DevNetwork, tmp_path: Path
) -> None:
    alice, bob = in_conversation(browsers, files_network)
    hostile = tmp_path / "invoice.html"
    hostile.write_text(
        "<html><body><script>window.top.__pwned = 1; alert('pwned')</script>"
        '<img src=x onerror="window.top.__pwned = 2"></body></html>'
    )
    dialogs: list[str] = []
    bob.page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    alice.page.locator("#file-input").set_input_files(str(hostile))

    card = bob.message("invoice.html").locator(".file-card")
    expect(card).to_have_attribute("data-state", "ready", timeout=30_000)
    expect(card.locator("img, iframe, video, audio")).to_have_count(0)  # nothing rendered inline
    with bob.page.expect_download() as caught:
        card.locator(".file-download").click()
    assert Path(caught.value.path()).read_bytes() == hostile.read_bytes()

    # Even opened directly in a tab, the node serves it as a download, never as a page.
    message_id = bob.message("invoice.html").get_attribute("data-id")
    response = bob.page.request.get(f"{bob.node.url}/api/v1/files/{message_id}?inline=true")
    assert response.status == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"].startswith("attachment")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in response.headers["content-security-policy"]
    with bob.page.expect_download():
        bob.page.evaluate(
            "(u) => { const a = document.createElement('a'); a.href = u; a.click(); }",
            f"/api/v1/files/{message_id}?inline=true",
        )
    assert bob.page.evaluate("() => window.__pwned") is None
    assert dialogs == []


def _wav(path: Path, seconds: float = 1.5) -> None:
    """A real, playable WAV: a 440 Hz tone (the stdlib writes it; no fixtures on disk)."""
    rate = 8000
    frames = b"".join(
        int(12000 * math.sin(2 * math.pi * 440 * n / rate)).to_bytes(2, "little", signed=True)
        for n in range(int(rate * seconds))
    )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)


def test_audio_plays_inline_with_the_browsers_own_player(
    browsers: Browsers, files_network: DevNetwork, tmp_path: Path
) -> None:
    alice, bob = in_conversation(browsers, files_network)
    _wav(tmp_path / "voice-note.wav")
    alice.page.locator("#file-input").set_input_files(str(tmp_path / "voice-note.wav"))

    card = bob.message("voice-note.wav").locator(".file-card")
    expect(card).to_have_attribute("data-state", "ready", timeout=30_000)
    player = card.locator("audio[controls]")
    expect(player).to_have_count(1)
    # Chromium fetched and decoded it from bob's node (by range requests): it knows its length.
    duration = player.evaluate(
        """audio => new Promise((resolve) => {
            if (audio.readyState >= 1) resolve(audio.duration);
            audio.addEventListener("loadedmetadata", () => resolve(audio.duration));
            audio.addEventListener("error", () => resolve(-1));
            audio.load();
        })"""
    )
    assert 1.4 < duration < 1.6


def test_a_file_name_carrying_markup_is_shown_as_text(
    browsers: Browsers, files_network: DevNetwork, tmp_path: Path
) -> None:
    alice, bob = in_conversation(browsers, files_network)
    name = "<img src=x onerror=window.top.__pwned=1>.txt"
    (tmp_path / name).write_text("notes")
    alice.page.locator("#file-input").set_input_files(str(tmp_path / name))
    card = bob.message(name).locator(".file-card")
    expect(card).to_have_attribute("data-state", "ready", timeout=30_000)
    expect(card.locator(".file-name")).to_have_text(name)
    expect(card.locator(".file-name img")).to_have_count(0)
    assert bob.page.evaluate("() => window.__pwned") is None
    assert alice.page.evaluate("() => window.__pwned") is None


def test_an_upload_can_be_cancelled(browsers: Browsers, files_network: DevNetwork, tmp_path: Path) -> None:
    node_a, _ = files_network.nodes
    alice = browsers.login(node_a, "alice")
    alice.open_conversation("bob")
    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * (20 * 1024 * 1024))
    parts = re.compile(r"/api/v1/uploads/[0-9a-f-]+$")
    # Parts never reach the node (as on a stalled line); everything else does.
    alice.page.route(parts, lambda route: None if route.request.method == "PATCH" else route.continue_())
    alice.page.locator("#file-input").set_input_files(str(big))
    row = alice.page.locator("#uploads li.upload", has_text="big.bin")
    expect(row).to_be_visible()
    upload_id = row.get_attribute("data-id")
    row.locator(".upload-cancel").click()
    expect(row).to_have_count(0)
    alice.page.unroute(parts)
    # The page frees the upload on the node as it takes the row away (a DELETE on its way).
    eventually(
        lambda: alice.page.request.get(f"{node_a.url}/api/v1/uploads/{upload_id}").status == 404,
        what="the cancelled upload freed on the node",
    )
    alice.page.reload()
    alice.open_conversation("bob")
    expect(alice.message("big.bin")).to_have_count(0)


def test_cancelling_before_the_node_answers_still_frees_the_upload(
    browsers: Browsers, files_network: DevNetwork, tmp_path: Path
) -> None:
    node_a, _ = files_network.nodes
    alice = browsers.login(node_a, "alice")
    alice.open_conversation("bob")
    (tmp_path / "draft.bin").write_bytes(b"\0" * (3 * 1024 * 1024))
    # The create request is held on its way, as on a slow line, while the user cancels.
    held: list[Route] = []
    creates = re.compile(r"/api/v1/conversations/bob/uploads$")
    alice.page.route(creates, lambda route: held.append(route))
    alice.page.locator("#file-input").set_input_files(str(tmp_path / "draft.bin"))
    row = alice.page.locator("#uploads li.upload", has_text="draft.bin")
    expect(row).to_be_visible()
    upload_id = row.get_attribute("data-id")
    for _ in range(50):
        if held:
            break
        alice.page.wait_for_timeout(100)
    assert held, "the page did not ask to create the upload"
    row.locator(".upload-cancel").click()
    expect(row).to_have_count(0)
    with alice.page.expect_response(lambda r: creates.search(r.url) is not None) as created:
        held[0].continue_()  # the node creates it only now
    assert created.value.status == 201
    alice.page.unroute(creates)
    # The page deletes it once it exists: it holds no quota, and nothing is sent.
    status = 200
    for _ in range(100):
        status = alice.page.request.get(f"{node_a.url}/api/v1/uploads/{upload_id}").status
        if status == 404:
            break
        alice.page.wait_for_timeout(100)
    assert status == 404, "the upload created after the cancel was left behind"
    expect(alice.message("draft.bin")).to_have_count(0)

"""Files across two real nodes (issue 4): round trips, media, hostile files, tampering, limits.

Fault injection (nodes killed mid-transfer, a recipient offline) is in
test_file_faults.py; these share one network.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
from collections.abc import Iterator

import pytest
from PIL import Image

from flamechat.crypto.filestream import CHUNK_SIZE
from flamechat.devnet import DevNetwork
from tests.conftest import PASSWORDS, make_network
from tests.integration.files_support import (
    blob_files,
    download,
    patch,
    raw_request,
    send_file,
    start_upload,
    wait_file_state,
)
from tests.support import ApiSession, login, server_errors

pytestmark = pytest.mark.integration
CHUNK = CHUNK_SIZE  # the chunk boundaries the tests straddle are the real ones


@pytest.fixture(scope="module")
def files_network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevNetwork]:
    net = make_network(
        tmp_path_factory.mktemp("files"),
        node_args=[
            ["--max-file-bytes", str(64 * 1024 * 1024), "--storage-quota-bytes", str(200 * 1024 * 1024)]
        ],
    )
    yield net
    net.stop()


@pytest.fixture(scope="module")
def alice(files_network: DevNetwork) -> ApiSession:
    return login(files_network.nodes[0], "alice", PASSWORDS["alice"])


@pytest.fixture(scope="module")
def bob(files_network: DevNetwork) -> ApiSession:
    return login(files_network.nodes[1], "bob", PASSWORDS["bob"])


@pytest.mark.parametrize(
    "size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 50 * 1024 * 1024], ids=lambda s: f"{s}B"
)
def test_a_file_arrives_whole_and_unchanged(alice: ApiSession, bob: ApiSession, size: int) -> None:
    data = os.urandom(size)
    sent = send_file(alice, "bob", data, name=f"f{size}.bin")
    assert sent["kind"] == "file"
    assert sent["file"]["state"] == "ready"
    assert sent["file"]["size"] == size

    got = wait_file_state(bob, "alice", sent["id"])
    assert got["file"]["name"] == f"f{size}.bin"
    status, headers, body = download(bob, sent["id"])
    assert status == 200
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data).hexdigest()
    assert int(headers["content-length"]) == size
    # the sender can fetch their own copy too
    status, _, mine = download(alice, sent["id"])
    assert status == 200
    assert mine == data


def test_parts_that_do_not_end_on_a_chunk_are_resumed_from_the_acknowledged_offset(
    alice: ApiSession, bob: ApiSession
) -> None:
    data = os.urandom(3 * CHUNK + 100)
    status, state = start_upload(alice, "bob", "odd.bin", len(data), "application/octet-stream")
    assert status == 201
    status, state = patch(alice, state["id"], 0, data[: CHUNK + 5000])
    assert (status, state["received"], state["complete"]) == (200, CHUNK, False)
    # a part that does not start where the node's copy ends is refused, saying where to go on
    status, refused = patch(alice, state["id"], CHUNK + 5000, data[CHUNK + 5000 :])
    assert status == 409
    assert refused["error"]["code"] == "upload_offset_mismatch"
    assert refused["error"]["details"]["offset"] == CHUNK
    status, state = patch(alice, state["id"], CHUNK, data[CHUNK:])
    assert status == 200
    assert state["complete"]
    wait_file_state(bob, "alice", state["id"])
    assert download(bob, state["id"])[2] == data


def test_range_requests_serve_exactly_the_bytes_asked_for(alice: ApiSession, bob: ApiSession) -> None:
    data = os.urandom(5 * CHUNK + 123)
    sent = send_file(alice, "bob", data, name="video.bin")
    wait_file_state(bob, "alice", sent["id"])
    for first, last in [
        (0, 9),
        (CHUNK - 3, CHUNK + 3),
        (2 * CHUNK, 4 * CHUNK + 7),
        (len(data) - 5, len(data) - 1),
    ]:
        status, headers, body = download(bob, sent["id"], {"Range": f"bytes={first}-{last}"})
        assert status == 206
        assert body == data[first : last + 1]
        assert headers["content-range"] == f"bytes {first}-{last}/{len(data)}"
    status, _, body = download(bob, sent["id"], {"Range": "bytes=-100"})
    assert status == 206
    assert body == data[-100:]
    status, _, body = download(bob, sent["id"], {"Range": f"bytes={len(data) + 10}-"})
    assert status == 416


def _png(width: int = 900, height: int = 600) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (30, 120, 200)).save(out, format="PNG")
    return out.getvalue()


def test_an_image_is_shown_inline_with_a_thumbnail_made_on_the_recipients_node(
    alice: ApiSession, bob: ApiSession
) -> None:
    # declared as a PDF: the type comes from the content, not the sender's word
    sent = send_file(alice, "bob", _png(), name="photo.png", mime="application/pdf")
    got = wait_file_state(bob, "alice", sent["id"])["file"]
    assert got["type"] == "image/png"
    assert got["media"] == "image"
    assert got["thumbnail_url"]
    status, headers, _ = download(bob, sent["id"], query="?inline=true")
    assert status == 200
    assert headers["content-type"] == "image/png"
    assert headers["content-disposition"].startswith("inline;")
    status, headers, thumb = raw_request(bob, "GET", got["thumbnail_url"])
    assert status == 200
    assert headers["content-type"] == "image/webp"
    with Image.open(io.BytesIO(thumb)) as image:
        assert max(image.size) <= 480
        assert image.size[0] > image.size[1]


def test_a_video_is_served_inline_by_range_for_the_browsers_player(
    alice: ApiSession, bob: ApiSession
) -> None:
    # An MP4 header (an ftyp box) then a body: what a player asks for, in ranges.
    video = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + os.urandom(3 * CHUNK)
    sent = send_file(alice, "bob", video, name="board-meeting.mp4", mime="video/mp4")
    got = wait_file_state(bob, "alice", sent["id"])["file"]
    assert got["type"] == "video/mp4"
    assert got["media"] == "video"
    status, headers, body = download(bob, sent["id"], {"Range": "bytes=0-"}, query="?inline=true")
    assert status == 206
    assert headers["content-type"] == "video/mp4"
    assert headers["content-disposition"].startswith("inline;")
    assert headers["accept-ranges"] == "bytes"
    assert body == video
    status, _, body = download(
        bob, sent["id"], {"Range": f"bytes={CHUNK}-{CHUNK + 999}"}, query="?inline=true"
    )
    assert status == 206
    assert body == video[CHUNK : CHUNK + 1000]


def test_a_hostile_html_file_is_only_ever_a_download(alice: ApiSession, bob: ApiSession) -> None:
    page = (
        b"<!doctype html><html><body><script>parent.__pwned=1</script>"
        b"<svg onload=alert(1)></svg></body></html>"
    )
    sent = send_file(alice, "bob", page, name="../../etc/<b>invoice</b>\u202egpj.html", mime="text/html")
    got = wait_file_state(bob, "alice", sent["id"])["file"]
    assert "/" not in got["name"]
    assert "\u202e" not in got["name"]
    assert got["media"] is None
    for query in ("", "?inline=true"):
        status, headers, body = download(bob, sent["id"], query=query)
        assert status == 200
        assert body == page
        assert headers["content-type"] == "application/octet-stream"
        assert headers["content-disposition"].startswith("attachment;")
        assert headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in headers["content-security-policy"]
        assert "default-src 'none'" in headers["content-security-policy"]


def test_a_blob_altered_at_rest_is_refused_then_fetched_again_from_the_sender(
    files_network: DevNetwork, alice: ApiSession, bob: ApiSession
) -> None:
    small = os.urandom(1000)
    sent = send_file(alice, "bob", small, name="contract.pdf")
    wait_file_state(bob, "alice", sent["id"])
    big = os.urandom(3 * 1024 * 1024)
    sent_big = send_file(alice, "bob", big, name="board.mp4")
    wait_file_state(bob, "alice", sent_big["id"])

    bob_dir = files_network.root / "node2"
    by_size = {p.stat().st_size: p for p in blob_files(bob_dir)}
    _flip_byte(by_size[1000 + 16], 500)
    status, _, body = download(bob, sent["id"])
    assert status == 422
    assert b"file_corrupted" in body

    # A late chunk altered: the headers are out, so the node cuts the connection;
    # the client never receives a whole file, nor one that merely looks shorter.
    big_blob = by_size[len(big) + 16 * (len(big) // CHUNK)]
    _flip_byte(big_blob, big_blob.stat().st_size - 100)
    with pytest.raises(http.client.IncompleteRead):
        download(bob, sent_big["id"])

    # Bob's node threw both copies away and fetched them again from alice's node.
    for message_id, data in ((sent["id"], small), (sent_big["id"], big)):
        wait_file_state(bob, "alice", message_id)
        status, _, body = download(bob, message_id)
        assert status == 200
        assert body == data
    log = files_network.nodes[1].log_path.read_text()
    assert log.count("failed its check at rest") == 2


def _flip_byte(path: os.PathLike[str], offset: int) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0x01]))


def test_size_limit_quota_and_bounds_are_enforced_before_bytes_are_stored(
    files_network: DevNetwork, alice: ApiSession
) -> None:
    status, body = start_upload(alice, "bob", "huge.bin", 65 * 1024 * 1024, "application/octet-stream")
    assert status == 413
    assert body["error"]["code"] == "file_too_large"
    status, body = start_upload(alice, "nobody", "x.bin", 10, "application/octet-stream")
    assert status == 404
    status, body = start_upload(alice, "bob", "x.bin", -1, "application/octet-stream")
    assert status == 422
    # 200 MiB quota: the earlier tests used ~60 MiB; three declared 50 MiB files do not fit
    codes = []
    for _ in range(3):
        status, body = start_upload(alice, "bob", "big.bin", 50 * 1024 * 1024, "application/octet-stream")
        codes.append(status if status == 201 else body["error"]["code"])
    assert "quota_exceeded" in codes
    assert not any(
        p.name.startswith("alice.") and p.stat().st_size
        for p in (files_network.root / "node1" / "blobs" / "uploads").iterdir()
    )


def test_no_request_ended_in_a_server_error(files_network: DevNetwork) -> None:
    """Runs last in this module: nothing above left a 500 or a stack trace behind."""
    assert server_errors(files_network) == []

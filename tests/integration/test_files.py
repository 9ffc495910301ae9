"""Files across two real nodes (issue 4): round trips, media, hostile files, tampering, limits.

Fault injection (nodes killed mid-transfer, a recipient offline) is in
test_file_faults.py; these share one network.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from flamechat.crypto import NodeKey, sign_request
from flamechat.crypto.filestream import CHUNK_SIZE
from flamechat.devnet import DevNetwork, Server
from flamechat.keyfile import load_or_create_key
from tests.conftest import PASSWORDS, make_network
from tests.integration.conftest import NetworkFactory
from tests.integration.files_support import (
    PART,
    blob_files,
    download,
    file_message,
    patch,
    raw_request,
    send_file,
    start_upload,
    wait_file_state,
)
from tests.integration.peer import FakePeer
from tests.support import ApiSession, eventually, login, server_errors

pytestmark = pytest.mark.integration
CHUNK = CHUNK_SIZE  # the chunk boundaries the tests straddle are the real ones
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevNetwork]:
    network = make_network(
        tmp_path_factory.mktemp("files"),
        node_args=[
            ["--max-file-bytes", str(64 * 1024 * 1024), "--storage-quota-bytes", str(200 * 1024 * 1024)]
        ],
    )
    yield network
    network.stop()


@pytest.mark.parametrize(
    "size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 9 * 1024 * 1024 + 17], ids=lambda s: f"{s}B"
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


def _peak_rss(server: Server) -> int:
    """The process's peak resident set (VmHWM) in bytes, from /proc."""
    assert server.process is not None
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def _hash_download(session: ApiSession, message_id: str) -> tuple[int, str]:
    """Download a file in 1 MiB reads (never whole in the test's memory); size and SHA-256."""
    conn = http.client.HTTPConnection("127.0.0.1", session.node.port, timeout=120)
    try:
        conn.request("GET", f"/api/v1/files/{message_id}", headers={"Cookie": session.cookie})
        response = conn.getresponse()
        assert response.status == 200
        digest, size = hashlib.sha256(), 0
        while piece := response.read(1024 * 1024):
            digest.update(piece)
            size += len(piece)
        return size, digest.hexdigest()
    finally:
        conn.close()


def test_a_200_mib_file_crosses_both_nodes_in_bounded_memory(
    network_factory: NetworkFactory, tmp_path: Path
) -> None:
    """Uploaded, sealed, fetched, checked and downloaded on both sides, a 200 MiB file
    raises neither node's peak memory by more than a small fraction of its size: a
    change that buffered the whole file anywhere on the way would fail here."""
    size = 200 * MIB
    limits = ["--max-file-bytes", str(256 * MIB), "--storage-quota-bytes", str(1024 * MIB)]
    net = network_factory(node_args=[limits, limits])
    node_a, node_b = net.nodes
    alice = login(node_a, "alice", PASSWORDS["alice"])
    bob = login(node_b, "bob", PASSWORDS["bob"])
    source = tmp_path / "site-walkthrough.mp4"
    digest = hashlib.sha256()
    with source.open("wb") as out:
        for _ in range(size // PART):
            piece = os.urandom(PART)
            digest.update(piece)
            out.write(piece)
    before = {node.name: _peak_rss(node) for node in net.nodes}

    status, state = start_upload(alice, "bob", source.name, size, "video/mp4")
    assert status == 201, state
    with source.open("rb") as handle:
        while not state["complete"]:
            handle.seek(state["received"])
            status, state = patch(alice, state["id"], state["received"], handle.read(PART))
            assert status == 200, state
    wait_file_state(bob, "alice", state["id"], timeout=300)
    assert _hash_download(bob, state["id"]) == (size, digest.hexdigest())
    assert _hash_download(alice, state["id"]) == (size, digest.hexdigest())

    grew = {node.name: _peak_rss(node) - before[node.name] for node in net.nodes}
    for name, growth in grew.items():
        assert growth < 60 * MIB, (
            f"{name}'s peak memory grew by {growth // MIB} MiB for a {size // MIB} MiB file"
        )


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


def test_an_svg_carrying_script_is_only_ever_a_download(alice: ApiSession, bob: ApiSession) -> None:
    svg = (
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="parent.__pwned=1">'
        b"<script>alert(document.cookie)</script><circle r='40'/></svg>"
    )
    sent = send_file(alice, "bob", svg, name="logo.svg", mime="image/svg+xml")
    got = wait_file_state(bob, "alice", sent["id"])["file"]
    assert got["media"] is None
    assert got["thumbnail_url"] is None
    for query in ("", "?inline=true"):
        status, headers, body = download(bob, sent["id"], query=query)
        assert status == 200
        assert body == svg
        assert headers["content-type"] == "application/octet-stream"
        assert headers["content-disposition"].startswith("attachment;")
        assert headers["x-content-type-options"] == "nosniff"
        csp = headers["content-security-policy"]
        assert "default-src 'none'" in csp
        assert "sandbox" in csp
        assert "script-src" not in csp


def test_a_picture_named_as_a_page_is_served_with_a_picture_s_name(
    alice: ApiSession, bob: ApiSession
) -> None:
    picture = _jpeg()
    sent = send_file(alice, "bob", picture, name="poly.html", mime="text/html")
    got = wait_file_state(bob, "alice", sent["id"])["file"]
    assert (got["type"], got["name"]) == ("image/jpeg", "poly.html")
    status, headers, _ = download(bob, sent["id"], query="?inline=true")
    assert status == 200
    assert headers["content-type"] == "image/jpeg"
    # "Save as" on the picture writes a .jpg, never an .html file
    assert headers["content-disposition"].startswith('inline; filename="poly.html.jpg";')
    assert "filename*=UTF-8''poly.html.jpg" in headers["content-disposition"]
    # A download is the file as it was sent, under its own name.
    status, headers, _ = download(bob, sent["id"])
    assert headers["content-disposition"].startswith('attachment; filename="poly.html";')


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 40, 40)).save(out, format="JPEG")
    return out.getvalue()


def _blob_of_size(net: DevNetwork, node: int, size: int) -> Path:
    (found,) = [p for p in blob_files(net.root / f"node{node}") if p.stat().st_size == size]
    return found


def _peer_get(
    node: Server, path: str, key: NodeKey | None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """A federation GET to ``node``, signed with ``key`` (unsigned without one); the raw answer."""
    sent = dict(headers or {})
    if key is not None:
        sent.update(sign_request(key, "GET", path, b"", timestamp=int(time.time())).as_dict())
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=30)
    try:
        conn.request("GET", path, headers=sent)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_the_blob_endpoint_serves_only_the_recipients_node_and_by_range(
    net: DevNetwork, alice: ApiSession, bob: ApiSession
) -> None:
    data = os.urandom(3 * CHUNK + 77)
    sent = send_file(alice, "bob", data, name="ledger.ods")
    wait_file_state(bob, "alice", sent["id"])
    blob = _blob_of_size(net, 1, len(data) + 4 * 16)
    path = f"/federation/v1/blobs/{blob.name}"
    stored = blob.read_bytes()
    senders_node = net.nodes[0]

    status, _, body = _peer_get(senders_node, path, None)
    assert (status, json.loads(body)["error"]["code"]) == (401, "bad_signature")

    # A node the directory knows, but home to no recipient of this file: as if no such blob.
    assert net.directory is not None
    stranger = FakePeer(net.directory.url)
    stranger.register()
    status, _, body = _peer_get(senders_node, path, stranger.key)
    assert (status, json.loads(body)["error"]["code"]) == (404, "not_found")

    # Bob's node (its own key), resuming from byte 1000: exactly the bytes asked for.
    bobs_node = load_or_create_key(net.root / "node2" / "node.key")
    status, headers, body = _peer_get(senders_node, path, bobs_node, {"Range": "bytes=1000-1999"})
    assert status == 206
    assert body == stored[1000:2000]
    assert headers["content-range"] == f"bytes 1000-1999/{len(stored)}"
    status, _, body = _peer_get(senders_node, path, bobs_node)
    assert status == 200
    assert body == stored


def test_a_blob_altered_at_rest_is_refused_then_fetched_again_from_the_sender(
    net: DevNetwork, alice: ApiSession, bob: ApiSession
) -> None:
    small = os.urandom(1000)
    sent = send_file(alice, "bob", small, name="contract.pdf")
    wait_file_state(bob, "alice", sent["id"])
    big = os.urandom(3 * 1024 * 1024)
    sent_big = send_file(alice, "bob", big, name="board.mp4")
    wait_file_state(bob, "alice", sent_big["id"])

    bob_dir = net.root / "node2"
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
    log = net.nodes[1].log_path.read_text()
    assert log.count("failed its check at rest") == 2


def _flip_byte(path: os.PathLike[str], offset: int) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0x01]))


def _patch_with_length(session: ApiSession, upload_id: str, data: bytes) -> tuple[int, dict[str, Any]]:
    status, _, raw = raw_request(
        session,
        "PATCH",
        f"/api/v1/uploads/{upload_id}",
        data,
        {"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
    )
    return status, json.loads(raw)


def test_size_limits_and_quotas_are_enforced_before_bytes_are_stored_on_either_node(
    network_factory: NetworkFactory,
) -> None:
    # Alice's node: files up to 12 MiB, 30 MiB each. Bob's node: 2 MiB, 3 MiB each.
    net = network_factory(
        node_args=[
            ["--max-file-bytes", str(12 * MIB), "--storage-quota-bytes", str(30 * MIB)],
            ["--max-file-bytes", str(2 * MIB), "--storage-quota-bytes", str(3 * MIB)],
        ]
    )
    alice = login(net.nodes[0], "alice", PASSWORDS["alice"])
    bob = login(net.nodes[1], "bob", PASSWORDS["bob"])

    def declare(size: int) -> tuple[int, dict[str, Any]]:
        return start_upload(alice, "bob", "report.bin", size, "application/octet-stream")

    # Over the sender's node's size limit.
    status, body = declare(12 * MIB + 1)
    assert (status, body["error"]["code"]) == (413, "file_too_large")
    assert body["error"]["details"]["limit"] == 12 * MIB
    assert declare(-1)[0] == 422
    assert start_upload(alice, "nobody", "x.bin", 10, "application/octet-stream")[0] == 404

    # Pending uploads count against the quota: 12 + 12 fit in 30, another 12 does not, 6 does.
    pending = []
    for _ in range(2):
        status, state = declare(12 * MIB)
        assert status == 201, state
        pending.append(state["id"])
    status, body = declare(12 * MIB)
    assert (status, body["error"]["code"]) == (507, "quota_exceeded")
    status, state = declare(6 * MIB)
    assert status == 201, state
    pending.append(state["id"])
    for upload_id in pending:
        assert alice.call("DELETE", f"/api/v1/uploads/{upload_id}")[0] == 204

    # A part with more bytes than the file declared: refused before any is stored.
    status, state = declare(2 * MIB)
    assert status == 201
    status, body = _patch_with_length(alice, state["id"], os.urandom(2 * MIB + 1))
    assert (status, body["error"]["code"]) == (422, "invalid_request")
    assert alice.call("GET", f"/api/v1/uploads/{state['id']}")[1]["received"] == 0
    assert _part_on_disk(net, 1, "alice", state["id"]) == 0

    # A part over the part bound: refused by its Content-Length, by the node's body
    # limit at the edge of the app, and by the upload's own bound just under it.
    status, state = declare(10 * MIB)
    assert status == 201
    status, body = _patch_with_length(alice, state["id"], os.urandom(PART + 64 * 1024 + 1))
    assert (status, body["error"]["code"]) == (413, "payload_too_large")
    assert "request bodies are limited" in body["error"]["message"]  # BodySizeLimit's answer
    status, body = _patch_with_length(alice, state["id"], os.urandom(PART + 1))
    assert (status, body["error"]["code"]) == (413, "payload_too_large")
    assert alice.call("GET", f"/api/v1/uploads/{state['id']}")[1]["received"] == 0
    assert _part_on_disk(net, 1, "alice", state["id"]) == 0
    assert alice.call("DELETE", f"/api/v1/uploads/{state['id']}")[0] == 204

    # Bob's node applies its own limits to what it is sent: over its size limit, then
    # over bob's quota once a file that fits is in, the file is refused, never fetched.
    too_big = send_file(alice, "bob", os.urandom(2 * MIB + 1), name="too-big.bin")
    fits = send_file(alice, "bob", os.urandom(2 * MIB), name="fits.bin")
    over_quota = send_file(alice, "bob", os.urandom(MIB + 1), name="over-quota.bin")
    wait_file_state(bob, "alice", fits["id"])
    for sent, reason in ((too_big, "larger than this node accepts"), (over_quota, "storage is full")):
        refused = wait_file_state(bob, "alice", sent["id"], state="refused")["file"]
        assert reason in refused["error"]
        status, _, raw = download(bob, sent["id"])
        assert status == 409
        assert json.loads(raw)["error"]["code"] == "file_not_ready"
    blobs = blob_files(net.root / "node2")
    assert [p.stat().st_size for p in blobs] == [2 * MIB + 16 * 32], "a refused file was fetched"
    assert not list((net.root / "node2" / "blobs" / "incoming").iterdir())
    assert server_errors(net) == []


def _part_on_disk(net: DevNetwork, node: int, owner: str, upload_id: str) -> int:
    """Bytes of an upload's ``.part`` file on a node (0 if there is none)."""
    path = net.root / f"node{node}" / "blobs" / "uploads" / f"{owner}.{upload_id}.part"
    return path.stat().st_size if path.exists() else 0


def test_cancelling_an_upload_while_a_part_is_arriving_answers_404_not_a_server_error(
    net: DevNetwork, alice: ApiSession, bob: ApiSession
) -> None:
    size = 4 * 1024 * 1024
    data = os.urandom(size)
    status, state = start_upload(alice, "bob", "changed-my-mind.bin", size, "application/octet-stream")
    assert status == 201
    upload_id = state["id"]
    # Half of the only part, over a raw socket, so the rest can follow the DELETE.
    with socket.create_connection(("127.0.0.1", alice.node.port), timeout=60) as sock:
        head = (
            f"PATCH /api/v1/uploads/{upload_id} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Cookie: {alice.cookie}\r\nX-CSRF-Token: {alice.csrf}\r\nUpload-Offset: 0\r\n"
            f"Content-Type: application/offset+octet-stream\r\nContent-Length: {size}\r\n\r\n"
        )
        sock.sendall(head.encode() + data[: size // 2])
        eventually(
            lambda: _part_on_disk(net, 1, "alice", upload_id) > 0,
            timeout=30,
            what="the node storing the first half",
        )
        status, _ = alice.call("DELETE", f"/api/v1/uploads/{upload_id}")
        assert status == 204
        with contextlib.suppress(OSError):  # the node may answer before it has read it all
            sock.sendall(data[size // 2 :])
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        body = json.loads(answer.read())
    assert answer.status == 404, body
    assert body["error"]["code"] == "not_found"
    # Nothing of it is left, and nothing was sent.
    assert alice.call("GET", f"/api/v1/uploads/{upload_id}")[0] == 404
    assert _part_on_disk(net, 1, "alice", upload_id) == 0
    assert file_message(alice, "bob", upload_id) is None
    assert server_errors(net) == []


def test_no_request_ended_in_a_server_error(net: DevNetwork) -> None:
    """Runs last in this module: nothing above left a 500 or a stack trace behind."""
    assert server_errors(net) == []

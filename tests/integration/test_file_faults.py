"""Files under faults (issue 4): either node killed mid-transfer, an offline recipient,
a blob altered before it travels. Each test has a network of its own."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from flamechat.devnet import DevNetwork
from tests.conftest import PASSWORDS
from tests.integration.conftest import NetworkFactory
from tests.integration.files_support import (
    blob_files,
    download,
    file_message,
    send_file,
    wait_file_state,
)
from tests.support import ApiSession, eventually, login

pytestmark = pytest.mark.integration

RATE = 3 * 1024 * 1024  # bytes/s the sender's node may use per transfer: slow enough to interrupt
SIZE = 12 * 1024 * 1024
FAST_RETRY = ["--retry-base", "0.2", "--retry-max", "1"]


def _progress(session: ApiSession, message_id: str) -> int:
    message = file_message(session, "alice", message_id)
    return 0 if message is None else int(message["file"]["received"])


def _wait_progress(session: ApiSession, message_id: str, at_least: int) -> int:
    return eventually(
        lambda: (p := _progress(session, message_id)) >= at_least and p,
        timeout=30,
        interval=0.1,
        what=f"{at_least} bytes received",
    )


def _slow_network(network_factory: NetworkFactory) -> DevNetwork:
    return network_factory(node_args=[["--blob-send-rate", str(RATE), *FAST_RETRY], FAST_RETRY])


def _finish_and_check(bob: ApiSession, message_id: str, data: bytes, floor: int) -> None:
    """Wait until ready, checking the received count never falls below ``floor``."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        message = file_message(bob, "alice", message_id)
        assert message is not None
        file = message["file"]
        assert file["received"] >= floor, "the transfer started over"
        if file["state"] == "ready":
            break
        assert file["state"] == "fetching", file
        time.sleep(0.1)
    else:
        raise AssertionError("the file did not arrive after the restart")
    status, _, body = download(bob, message_id)
    assert status == 200
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()


def test_killing_the_senders_node_mid_transfer_resumes_where_it_stopped(
    network_factory: NetworkFactory,
) -> None:
    net = _slow_network(network_factory)
    node_a, node_b = net.nodes
    alice = login(node_a, "alice", PASSWORDS["alice"])
    bob = login(node_b, "bob", PASSWORDS["bob"])
    data = os.urandom(SIZE)
    sent = send_file(alice, "bob", data, name="board-meeting.mp4")
    _wait_progress(bob, sent["id"], SIZE // 4)
    node_a.kill()
    time.sleep(1.0)
    floor = _progress(bob, sent["id"])
    assert floor < SIZE
    node_a.restart()
    _finish_and_check(bob, sent["id"], data, floor)


def test_killing_the_recipients_node_mid_transfer_resumes_where_it_stopped(
    network_factory: NetworkFactory,
) -> None:
    net = _slow_network(network_factory)
    node_a, node_b = net.nodes
    alice = login(node_a, "alice", PASSWORDS["alice"])
    bob = login(node_b, "bob", PASSWORDS["bob"])
    data = os.urandom(SIZE)
    sent = send_file(alice, "bob", data, name="board-meeting.mp4")
    floor = _wait_progress(bob, sent["id"], SIZE // 4)
    node_b.kill()
    node_b.restart()
    bob = login(node_b, "bob", PASSWORDS["bob"])
    _finish_and_check(bob, sent["id"], data, floor)


def test_an_offline_recipient_gets_the_file_through_a_relay_and_the_senders_node(
    network_factory: NetworkFactory,
) -> None:
    # node 3 relays; alice's node hands envelopes to it after a second of bob's node being down
    net = network_factory(nodes=3, node_args=[["--relay-after", "1", *FAST_RETRY], FAST_RETRY, FAST_RETRY])
    node_a, node_b, _relay = net.nodes
    alice = login(node_a, "alice", PASSWORDS["alice"])
    login(node_b, "bob", PASSWORDS["bob"])  # bob has keys: he can be written to while away
    node_b.stop()
    data = os.urandom(300_000)
    sent = send_file(alice, "bob", data, name="q3-figures.xlsx")
    eventually(
        lambda: (m := file_message(alice, "bob", sent["id"])) and m["state"] == "sent",
        timeout=30,
        what="the file message deposited at the relay",
    )
    node_b.restart()
    bob = login(node_b, "bob", PASSWORDS["bob"])
    wait_file_state(bob, "alice", sent["id"], timeout=60)
    assert download(bob, sent["id"])[2] == data


def test_a_blob_altered_before_it_travels_is_refused_by_the_recipient(
    network_factory: NetworkFactory,
) -> None:
    net = network_factory(node_args=[FAST_RETRY, FAST_RETRY])
    node_a, node_b = net.nodes
    alice = login(node_a, "alice", PASSWORDS["alice"])
    login(node_b, "bob", PASSWORDS["bob"])
    node_b.stop()  # so the blob waits on alice's node, where it is altered
    data = os.urandom(200_000)
    sent = send_file(alice, "bob", data, name="wire-transfer.pdf")
    (blob,) = blob_files(net.root / "node1")
    with open(blob, "r+b") as handle:
        handle.seek(100_000)
        byte = handle.read(1)
        handle.seek(100_000)
        handle.write(bytes([byte[0] ^ 0x80]))
    node_b.restart()
    bob = login(node_b, "bob", PASSWORDS["bob"])
    failed = wait_file_state(bob, "alice", sent["id"], state="failed", timeout=60)
    assert "alter" in failed["file"]["error"] or "match" in failed["file"]["error"]
    status, _, body = download(bob, sent["id"])
    assert status == 409
    assert b"file_not_ready" in body
    assert not blob_files(net.root / "node2"), "bytes that failed their checks were kept"


def test_a_partial_download_damaged_by_a_crash_is_cut_back_and_resumed(
    network_factory: NetworkFactory,
) -> None:
    net = _slow_network(network_factory)
    node_a, node_b = net.nodes
    alice = login(node_a, "alice", PASSWORDS["alice"])
    bob = login(node_b, "bob", PASSWORDS["bob"])
    data = os.urandom(SIZE)
    sent = send_file(alice, "bob", data, name="site-survey.mov")
    _wait_progress(bob, sent["id"], SIZE // 4)
    node_b.kill()
    (part,) = (net.root / "node2" / "blobs" / "incoming").iterdir()
    # What a power cut can leave: the last megabyte written turned to zeros, and more after it.
    with part.open("r+b") as handle:
        handle.seek(max(0, part.stat().st_size - 1024 * 1024))
        handle.write(bytes(2 * 1024 * 1024))
    node_b.restart()
    bob = login(node_b, "bob", PASSWORDS["bob"])
    settled = eventually(
        lambda: (m := file_message(bob, "alice", sent["id"])) and m["file"]["state"] != "fetching" and m,
        timeout=90,
        interval=0.2,
        what="the download finishing after the restart",
    )
    assert settled["file"]["state"] == "ready", settled["file"]
    status, _, body = download(bob, sent["id"])
    assert status == 200
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    assert "is damaged after byte" in node_b.log_path.read_text()

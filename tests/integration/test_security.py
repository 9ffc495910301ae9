"""Attacks on real processes: what a hostile node, a stranger on the network or
another user tries, and what each gets (a clear 4xx, nothing stored, nobody
locked out). Every finding of the security review that is about HTTP has its
test here; the pure rules are tested in tests/unit."""

from __future__ import annotations

import base64
import io
import json
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from flamechat.crypto import b64decode, seal_envelope, sign_request
from flamechat.devnet import DevNetwork, http_json
from flamechat.protocol.ids import new_id
from tests.conftest import PASSWORDS, make_network
from tests.integration.files_support import file_message, send_file, start_upload
from tests.integration.files_support import raw_request as files_raw_request
from tests.integration.peer import FakePeer
from tests.support import Answer, ApiSession, data_dir, eventually, login, raw_request, server_errors

pytestmark = pytest.mark.integration

MALLORY_PASSWORD = "mallory-password"  # lives on the test's own hostile node


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevNetwork]:
    network = make_network(
        tmp_path_factory.mktemp("security"), users={**PASSWORDS, "mallory": MALLORY_PASSWORD}
    )
    try:
        yield network
    finally:
        network.stop()


@pytest.fixture(scope="module")
def mallory(net: DevNetwork) -> FakePeer:
    """A node anyone may register (registration is open by default), home of mallory."""
    assert net.directory is not None
    peer = FakePeer(net.directory.url)
    peer.register()
    peer.adopt("mallory", MALLORY_PASSWORD)
    return peer


def test_no_server_error_so_far(net: DevNetwork) -> None:
    assert server_errors(net) == []


# --- hostile JSON -------------------------------------------------------------------


def test_a_deeply_nested_envelope_held_for_a_logged_out_user_does_not_lock_them_out(
    net: DevNetwork, mallory: FakePeer
) -> None:
    """Held sealed while bob is logged out, opened at his next login: a thousand
    nested lists made that login fail with a 500, every time, for good."""
    bob_node = net.nodes[1]
    bob = login(bob_node, "bob", PASSWORDS["bob"])  # his keys exist and are published
    assert bob.call("DELETE", "/api/v1/sessions/current")[0] == 204

    for plaintext in (b"[" * 5000, b'{"c": ' * 2000):
        wire = mallory.seal_raw("mallory", "bob", plaintext)
        assert mallory.deliver(bob_node.url, wire).status == 200  # held, sealed: it cannot be read yet

    bob = login(bob_node, "bob", PASSWORDS["bob"])  # 201, not 500
    assert bob.call("GET", "/api/v1/conversations/mallory/messages")[1]["messages"] == []

    # With bob logged in, the same envelope is refused at once, as malformed content.
    answer = mallory.deliver(bob_node.url, mallory.seal_raw("mallory", "bob", b"[" * 5000))
    assert (answer.status, answer.code) == (403, "envelope_rejected")

    # And bob still hears from mallory when she writes something a node can write.
    assert mallory.deliver(bob_node.url, mallory.seal("mallory", "bob", "sorry")).status == 200
    eventually(
        lambda: [m["body"] for m in bob.history("mallory")] == ["sorry"], what="mallory's genuine message"
    )
    assert server_errors(net) == []


def signed_raw(peer: FakePeer, method: str, url: str, data: bytes) -> Answer:
    """``data`` sent as is, under a valid signature of ``peer``."""
    target = url.split("://", 1)[1]
    target = target[target.index("/") :]
    signed = sign_request(peer.key, method, target, data, timestamp=int(time.time()))
    return raw_request(method, url, data, {"Content-Type": "application/json", **signed.as_dict()})


def test_a_deeply_nested_body_is_a_4xx_on_every_api(net: DevNetwork, mallory: FakePeer) -> None:
    """json.loads raises RecursionError (not ValueError) on a few thousand ``[``:
    the directory answered an unsigned registration with a 500."""
    assert net.directory is not None
    deep = b"[" * 5000
    json_type = {"Content-Type": "application/json"}
    # Unsigned, to the directory: registration reads the key from the body first.
    answer = raw_request("PUT", f"{net.directory.url}/directory/v1/nodes/{mallory.node_id}", deep, json_type)
    assert (answer.status, answer.code) == (401, "bad_signature")
    # Signed, to a node and to the directory: parsed once the signature holds.
    node = net.nodes[0]
    for url in (f"{node.url}/federation/v1/envelopes", f"{net.directory.url}/directory/v1/logins"):
        answer = signed_raw(mallory, "POST", url, deep)
        assert (answer.status, answer.code) == (422, "invalid_request"), answer
    # To the local API, before any session.
    answer = raw_request("POST", node.url + "/api/v1/sessions", deep, json_type)
    assert 400 <= answer.status < 500, answer
    assert server_errors(net) == []


# --- strangers naming unknown nodes -------------------------------------------------


def unsigned_as(node_id: str) -> dict[str, str]:
    """Signature headers naming ``node_id``, signed by no one: what a stranger sends."""
    return {
        "Flame-Node": node_id,
        "Flame-Timestamp": str(int(time.time())),
        "Flame-Nonce": secrets.token_urlsafe(18),
        "Flame-Signature": base64.b64encode(bytes(64)).decode(),
    }


def test_strangers_naming_unknown_nodes_cannot_spend_the_nodes_directory_rate(net: DevNetwork) -> None:
    """Each request naming a node id the node had not seen made it ask the directory,
    which allows a node 50 requests a second: a few hundred unsigned requests a
    second from anyone got the node 429'd, and its users' first logins refused."""
    node = net.nodes[0]
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    stop = threading.Event()
    codes: list[str | None] = []

    def flood() -> None:
        while not stop.is_set():
            stranger = "n" + "".join(secrets.choice(alphabet) for _ in range(24))
            codes.append(
                raw_request("GET", node.url + "/federation/v1/presence", None, unsigned_as(stranger)).code
            )

    with ThreadPoolExecutor(8) as pool:
        flooding = [pool.submit(flood) for _ in range(8)]
        try:
            eventually(lambda: len(codes) >= 200, timeout=30, what="the flood under way")
            carol = login(node, "carol", PASSWORDS["carol"])  # a first login: the node asks the directory
            status, dave = carol.call("GET", "/api/v1/users/dave")  # a lookup: the directory again
            assert (status, dave["username"]) == (200, "dave")
            assert carol.call("GET", "/api/v1/users")[1]["source"] == "directory"
        finally:
            stop.set()
            for done in flooding:
                done.result()
    # A stranger learns only that it is unknown (or, past the lookup budget, to try later).
    assert set(codes) <= {"unknown_node", "directory_unavailable"}, set(codes)
    assert codes.count("directory_unavailable") > codes.count("unknown_node")
    # Ids that are not node ids are refused before anything is looked up.
    answer = raw_request("GET", node.url + "/federation/v1/presence", None, unsigned_as("../users/alice"))
    assert (answer.status, answer.code) == (401, "bad_signature")
    assert server_errors(net) == []


def test_a_registered_node_naming_made_up_senders_cannot_spend_the_nodes_directory_rate(
    net: DevNetwork, mallory: FakePeer
) -> None:
    """A batch of 100 envelopes from 100 made-up senders was 100 directory lookups:
    one request from any registered node got the receiving node 429'd."""
    node = net.nodes[1]
    login(node, "bob", PASSWORDS["bob"])  # so that bob has keys to seal to
    genuine = mallory.seal("mallory", "bob", "made up")
    codes: list[str] = []
    started = time.monotonic()
    for round_ in range(3):
        batch = [
            {
                **genuine,
                "sender": f"made-up-{round_}-{i}",
                "id": f"0190a8f0-0000-7000-8000-{round_:06d}{i:06d}",
            }
            for i in range(100)
        ]
        answer = mallory.request("POST", f"{node.url}/federation/v1/envelopes", {"envelopes": batch})
        assert answer.status == 200, answer
        codes += [result["error"]["code"] for result in answer.body["results"]]
    took = time.monotonic() - started
    dave = login(node, "dave", PASSWORDS["dave"])  # a first login: the directory still answers the node
    assert dave.call("GET", "/api/v1/users/carol")[0] == 200
    assert set(codes) == {"unknown_user", "directory_unavailable"}  # refused; the rest to be tried later
    assert codes.count("unknown_user") <= 30 + 10 * (took + 1)  # the peer's burst, then 10 a second
    assert server_errors(net) == []


def test_the_directory_refuses_a_node_url_that_would_send_peers_elsewhere(net: DevNetwork) -> None:
    """Peers append /federation/v1/... to a node's URL: with a query or a fragment
    in it, a hostile node chose the path its peers call on any machine."""
    assert net.directory is not None
    for url in ("http://127.0.0.1:6379/?", "http://10.0.0.1/admin#", "http://user:pw@node.example"):
        peer = FakePeer(net.directory.url, url=url)
        answer = peer.request(
            "PUT",
            f"{net.directory.url}/directory/v1/nodes/{peer.node_id}",
            {"url": url, "public_key": base64.b64encode(peer.key.public_key).decode(), "relay": False},
        )
        assert (answer.status, answer.code, answer.body["error"]["field"]) == (422, "invalid_request", "url")
    assert server_errors(net) == []


def test_text_from_a_hostile_node_cannot_forge_lines_in_the_log(net: DevNetwork, mallory: FakePeer) -> None:
    node = net.nodes[1]
    login(node, "bob", PASSWORDS["bob"])  # his keys are unlocked: the envelope is opened, and its kind read
    forged = "CRITICAL flamechat.node: the node key was sent to mallory"
    envelope = seal_envelope(
        sender_keys=mallory.users["mallory"],
        sender="mallory",
        recipient="bob",
        recipient_box_key=b64decode(mallory.user("bob")["box_key"], size=32),
        envelope_id=new_id(),
        sent_at=int(time.time() * 1000),
        kind=f"unknown-kind\n{forged}",
        body={},
    )
    assert mallory.deliver(node.url, envelope.to_wire()).status == 200  # an unknown kind is dropped
    log = eventually(
        lambda: forged in node.log_path.read_text() and node.log_path.read_text(), what="the kind logged"
    )
    assert not any(line.startswith(forged) for line in log.splitlines())
    assert f"unknown-kind\\x0a{forged}" in log


# --- one user against another, by guessing ids ----------------------------------------


def png_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), "red").save(out, format="PNG")
    return out.getvalue()


def test_another_user_of_the_same_node_reaches_nothing_of_alices_by_her_ids(net: DevNetwork) -> None:
    """carol lives on alice's node and knows the ids (they are in URLs, logs, screenshots)."""
    node1, node2 = net.nodes
    alice = login(node1, "alice", PASSWORDS["alice"])
    carol = login(node1, "carol", PASSWORDS["carol"])
    login(node2, "bob", PASSWORDS["bob"])
    sent = alice.send("bob", "the merger is off, tell no one")
    picture = send_file(alice, "bob", png_bytes(), name="plan.png", mime="image/png")
    status, unfinished = start_upload(alice, "bob", "draft.txt", 100_000, "text/plain")
    assert status == 201, unfinished
    eventually(lambda: file_message(alice, "bob", picture["id"]) is not None, what="alice's file")
    assert raw_request_as(alice, "GET", f"/api/v1/files/{picture['id']}")[0] == 200

    for method, path in [
        ("GET", f"/api/v1/files/{picture['id']}"),
        ("GET", f"/api/v1/files/{picture['id']}/thumbnail"),
        ("GET", f"/api/v1/uploads/{unfinished['id']}"),
        ("PATCH", f"/api/v1/uploads/{unfinished['id']}"),
        ("DELETE", f"/api/v1/uploads/{unfinished['id']}"),
    ]:
        status, _, body = raw_request_as(carol, method, path, b"x" * 10, {"Upload-Offset": "0"})
        assert status == 404, (method, path, status, body[:200])
    # Her own conversation with bob is empty; alice's messages are not in it, nor in her search.
    assert carol.history("bob") == []
    assert carol.call("POST", "/api/v1/conversations/bob/read", {"up_to": sent["id"]})[0] == 404
    found = carol.call("GET", "/api/v1/search?q=merger")[1]
    assert found["messages"] == []
    # A message id of alice's, sent again as carol's, is carol's own new message, not alice's.
    mine = carol.send("bob", "hello", sent["id"])
    assert (mine["sender"], mine["body"]) == ("carol", "hello")
    assert [m["body"] for m in alice.history("bob") if m["id"] == sent["id"]] == [
        "the merger is off, tell no one"
    ]
    # alice's upload is untouched by carol's attempts.
    assert alice.call("GET", f"/api/v1/uploads/{unfinished['id']}")[1]["received"] == 0
    assert server_errors(net) == []


def test_a_node_gets_no_blob_and_no_relayed_envelope_that_is_not_for_its_users(
    net: DevNetwork, mallory: FakePeer
) -> None:
    node1 = net.nodes[0]
    alice = login(node1, "alice", PASSWORDS["alice"])
    login(net.nodes[1], "bob", PASSWORDS["bob"])
    picture = send_file(alice, "bob", png_bytes(), name="secret.png", mime="image/png")
    with sqlite3.connect(f"file:{data_dir(node1)}/node.sqlite3?mode=ro", uri=True) as db:
        (blob_id,) = db.execute(
            "SELECT blob_id FROM attachments WHERE message_id = ?", (picture["id"],)
        ).fetchone()
    # mallory's node knows the blob's address (say, from a leaked log): still 404, as for no blob at all.
    for range_header in ({}, {"Range": "bytes=0-"}):
        answer = mallory.request("GET", f"{node1.url}/federation/v1/blobs/{blob_id}", headers=range_header)
        assert (answer.status, answer.code) == (404, "not_found"), answer
    unknown = mallory.request("GET", f"{node1.url}/federation/v1/blobs/{'0' * 64}")
    assert (unknown.status, unknown.body) == (404, answer.body)
    # Envelopes node 1 holds as a relay for other nodes are not handed to mallory's.
    assert mallory.request("GET", f"{node1.url}/federation/v1/relay/envelopes").body == {"envelopes": []}
    assert mallory.request(
        "POST", f"{node1.url}/federation/v1/relay/acks", {"seqs": list(range(1, 50))}
    ).body == {"acknowledged": 0}
    assert server_errors(net) == []


def raw_request_as(
    session: ApiSession,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    return files_raw_request(session, method, path, body, headers)


# --- sessions and CSRF --------------------------------------------------------------


def test_every_state_changing_local_call_needs_the_csrf_token_and_a_same_origin(net: DevNetwork) -> None:
    """Enumerated from the node's own OpenAPI document, so a route added later is covered."""
    node = net.nodes[0]
    carol = login(node, "carol", PASSWORDS["carol"])
    _, spec, _ = http_json("GET", node.url + "/api/v1/openapi.json")
    ids = {
        "peer": "bob",
        "username": "bob",
        "upload_id": str(uuid.uuid4()),
        "message_id": str(uuid.uuid4()),
        "tab": "tab-0123456789",
    }
    checked = []
    for template, operations in spec["paths"].items():
        for method in operations:
            if not template.startswith("/api/v1/") or method.upper() in ("GET", "HEAD"):
                continue
            if template == "/api/v1/sessions":
                continue  # logging in: no session yet (its Origin check is below)
            path = template.format(**ids)
            headers = {"Cookie": carol.cookie, "Content-Type": "application/json"}
            without = raw_request(method.upper(), node.url + path, b"{}", headers)
            cross = raw_request(
                method.upper(),
                node.url + path,
                b"{}",
                {**headers, "X-CSRF-Token": carol.csrf, "Origin": "https://evil.example"},
            )
            assert (without.status, without.code) == (403, "csrf_failed"), (method, path, without)
            assert (cross.status, cross.code) == (403, "csrf_failed"), (method, path, cross)
            checked.append(f"{method.upper()} {template}")
    assert "PUT /api/v1/me/tabs/{tab}" in checked
    assert "DELETE /api/v1/me/tabs/{tab}" in checked
    assert "PATCH /api/v1/uploads/{upload_id}" in checked
    assert len(checked) >= 15
    # Login CSRF: a cross-origin login is refused, whatever the password.
    answer = raw_request(
        "POST",
        node.url + "/api/v1/sessions",
        json.dumps({"username": "carol", "password": PASSWORDS["carol"]}).encode(),
        {"Content-Type": "application/json", "Origin": "https://evil.example"},
    )
    assert (answer.status, answer.code) == (403, "csrf_failed")
    # Logging out ends the session at once, for the cookie too.
    assert carol.call("DELETE", "/api/v1/sessions/current")[0] == 204
    assert carol.call("GET", "/api/v1/me")[0] == 401
    assert server_errors(net) == []

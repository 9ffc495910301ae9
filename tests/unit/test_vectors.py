"""Fixed test vectors of our own wire formats (``vectors/envelope_v1.json``).

Another node implementation must produce and accept exactly these bytes, so a
change here is a protocol change: it needs a new version number in
``protocol/versions.py`` and ``docs/protocol.md``, not a regenerated file.

The checks below recompute what they can with raw libsodium (PyNaCl) and the
documented constructions rather than through our own helpers, so the recorded
bytes pin the format itself:

* key derivation: fixed seeds → public keys and node id;
* envelopes: the canonical inner content, its Ed25519 signature (deterministic),
  the outer header and signature, the 256-byte padding, and a whole sealed
  envelope (random ciphertext, recorded once) that must still open;
* signed requests: the signing string and its signature, and the headers;
* signed documents (directory answers, key bindings, profiles);
* key blobs at rest (password wrap) and session key derivation.

How the file was produced (run only for a deliberate format change, then
review the diff)::

    .venv/bin/python -m tests.unit.test_vectors --regen
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from nacl.bindings import sodium_unpad
from nacl.public import PrivateKey, SealedBox
from nacl.signing import SigningKey, VerifyKey

from flamechat.crypto import (
    KdfParams,
    NodeKey,
    SealedEnvelope,
    SignedRequestHeaders,
    UserKeys,
    b64decode,
    b64encode,
    canonical_json,
    node_id_from_public_key,
    open_envelope,
    seal_envelope,
    session_key_from_token,
    session_lookup_id,
    sign_document,
    sign_request,
    unwrap_with_password,
    verify_document,
    verify_request,
    wrap_with_password,
)
from flamechat.crypto.errors import SignatureError, UndecryptableError
from flamechat.services.directory import (
    KEY_BINDING_PURPOSE,
    NODE_PURPOSE,
    NODES_PURPOSE,
    USER_PURPOSE,
    USERS_PURPOSE,
    key_binding,
)
from flamechat.services.profiles import PROFILE_PURPOSE

VECTORS = Path(__file__).parent / "vectors" / "envelope_v1.json"

CONTENT_DOMAIN = b"flamechat/content/v1\x00"
ENVELOPE_DOMAIN = b"flamechat/envelope/v1\x00"
DOCUMENT_DOMAIN = b"flamechat/doc/v1\n"
SEALED_BOX_OVERHEAD = 48


def _seed(label: str, size: int) -> bytes:
    # Written out here (not imported) so the vectors never depend on a helper that may change.
    return b"".join(hashlib.sha256(f"flamechat-vector|{label}|{i}".encode()).digest() for i in range(2))[
        :size
    ]


def _keys() -> tuple[UserKeys, UserKeys, NodeKey]:
    return (
        UserKeys.from_bytes(_seed("alice", 64)),
        UserKeys.from_bytes(_seed("bob", 64)),
        NodeKey.from_seed(_seed("node", 32)),
    )


ENVELOPE_INPUT: dict[str, Any] = {
    "envelope_id": "0190a5e4-8c1b-7a3e-9f00-123456789abc",
    "sender": "alice",
    "recipient": "bob",
    "sent_at": 1_800_000_000_123,
    "kind": "message",
    "body": {"text": "Hello Bob — ünïcödé 🔥\nsecond line", "reply_to": None, "n": 3},
}

REQUEST_INPUTS: list[dict[str, Any]] = [
    {
        "method": "PUT",
        "target": "/federation/v1/envelopes/0190a5e4-8c1b-7a3e-9f00-123456789abc",
        "body": '{"v":1}',
        "timestamp": 1_800_000_000,
        "nonce": "AAAAAAAAAAAAAAAAAAAAAAAA",
    },
    {
        "method": "get",
        "target": "/federation/v1/relay/envelopes?recipient_node=nabc&limit=100",
        "body": "",
        "timestamp": 1_800_000_001,
        "nonce": "nonce-0123456789abcdef",
    },
]

DOCUMENT_INPUTS: list[dict[str, Any]] = [
    {"signer": "node", "purpose": USER_PURPOSE, "document": {"user": {"username": "bob"}, "issued_at": 1}},
    {"signer": "node", "purpose": USERS_PURPOSE, "document": {"users": [], "issued_at": 2}},
    {"signer": "node", "purpose": NODE_PURPOSE, "document": {"node": {"url": "http://n"}, "issued_at": 3}},
    {"signer": "node", "purpose": NODES_PURPOSE, "document": {"nodes": [], "issued_at": 4}},
    {
        "signer": "alice",
        "purpose": KEY_BINDING_PURPOSE,
        "document": key_binding("alice", "c2lnbg==", "Ym94"),
    },
    {
        "signer": "alice",
        "purpose": PROFILE_PURPOSE,
        "document": {"username": "alice", "display_name": "Alice Ä", "avatar_sha256": None, "updated_at": 5},
    },
]

VAULT_PASSWORD = "correct horse battery staple ✓"
SESSION_TOKEN = bytes(range(32))


def build_vectors() -> dict[str, Any]:
    """Produce the vector file with the code as it is now (used by ``--regen``)."""
    alice, bob, node = _keys()
    signers = {"alice": alice, "node": node}
    envelope = seal_envelope(sender_keys=alice, recipient_box_key=bob.public.box, **ENVELOPE_INPUT)
    plaintext = sodium_unpad(SealedBox(bob.box_key).decrypt(envelope.ciphertext), 256)
    wrapper = json.loads(plaintext)
    requests = []
    for item in REQUEST_INPUTS:
        headers = sign_request(
            node,
            item["method"],
            item["target"],
            item["body"].encode(),
            timestamp=item["timestamp"],
            nonce=item["nonce"],
        )
        signing_string = "\n".join(
            [
                "flamechat-request/v1",
                item["method"].upper(),
                item["target"],
                hashlib.sha256(item["body"].encode()).hexdigest(),
                str(item["timestamp"]),
                item["nonce"],
                node.node_id,
            ]
        )
        requests.append({**item, "signing_string": signing_string, "headers": headers.as_dict()})
    return {
        "about": "Flame Chat wire format v1 test vectors; see tests/unit/test_vectors.py",
        "regen": ".venv/bin/python -m tests.unit.test_vectors --regen",
        "keys": {
            "alice": _user_entry(alice),
            "bob": _user_entry(bob),
            "node": {
                "seed": b64encode(node.seed),
                "public_key": b64encode(node.public_key),
                "node_id": node.node_id,
            },
        },
        "envelope": {
            "input": ENVELOPE_INPUT,
            "inner": b64decode(wrapper["c"]).decode(),
            "inner_signature": wrapper["s"],
            "plaintext_length": len(plaintext),
            "padded_length": len(envelope.ciphertext) - SEALED_BOX_OVERHEAD,
            "outer_header": canonical_json(envelope.header()).decode(),
            "wire": envelope.to_wire(),
        },
        "requests": requests,
        "documents": [
            {
                **item,
                "signature": b64encode(
                    sign_document(signers[item["signer"]], item["purpose"], item["document"])
                ),
            }
            for item in DOCUMENT_INPUTS
        ],
        "vault": {
            "password": VAULT_PASSWORD,
            "secret": b64encode(alice.to_bytes()),
            "blob": b64encode(wrap_with_password(alice.to_bytes(), VAULT_PASSWORD, KdfParams.minimal())),
            "session_token": b64encode(SESSION_TOKEN),
            "session_key": b64encode(session_key_from_token(SESSION_TOKEN)),
            "session_lookup_id": session_lookup_id(SESSION_TOKEN),
        },
    }


def _user_entry(keys: UserKeys) -> dict[str, str]:
    return {
        "secret": b64encode(keys.to_bytes()),
        "sign_public": b64encode(keys.public.sign),
        "box_public": b64encode(keys.public.box),
    }


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))
    return data


# --- keys -----------------------------------------------------------------------------------


def test_fixed_seeds_give_the_recorded_keys(vectors: dict[str, Any]) -> None:
    alice, bob, node = _keys()
    for name, keys in (("alice", alice), ("bob", bob)):
        entry = vectors["keys"][name]
        assert b64decode(entry["secret"]) == keys.to_bytes()
        assert UserKeys.from_bytes(b64decode(entry["secret"])).public.sign == b64decode(entry["sign_public"])
        assert bytes(SigningKey(keys.to_bytes()[:32]).verify_key) == b64decode(entry["sign_public"])
        assert bytes(PrivateKey(keys.to_bytes()[32:]).public_key) == b64decode(entry["box_public"])
    assert b64decode(vectors["keys"]["node"]["seed"]) == node.seed
    assert b64decode(vectors["keys"]["node"]["public_key"]) == node.public_key


def test_node_id_is_the_recorded_one(vectors: dict[str, Any]) -> None:
    entry = vectors["keys"]["node"]
    assert node_id_from_public_key(b64decode(entry["public_key"])) == entry["node_id"]
    assert NodeKey.from_seed(b64decode(entry["seed"])).node_id == entry["node_id"]


# --- envelopes -------------------------------------------------------------------------------


def _user(vectors: dict[str, Any], name: str) -> UserKeys:
    return UserKeys.from_bytes(b64decode(vectors["keys"][name]["secret"]))


def test_recorded_envelope_still_opens(vectors: dict[str, Any]) -> None:
    recorded = vectors["envelope"]
    envelope = SealedEnvelope.from_wire(recorded["wire"])
    opened = open_envelope(
        envelope,
        recipient_keys=_user(vectors, "bob"),
        sender_sign_key=b64decode(vectors["keys"]["alice"]["sign_public"]),
    )
    expected = recorded["input"]
    assert opened.body == expected["body"]
    assert (opened.id, opened.sender, opened.recipient, opened.sent_at, opened.kind) == (
        expected["envelope_id"],
        expected["sender"],
        expected["recipient"],
        expected["sent_at"],
        expected["kind"],
    )
    assert envelope.to_wire() == recorded["wire"]


def test_recorded_envelope_is_unreadable_with_another_key(vectors: dict[str, Any]) -> None:
    envelope = SealedEnvelope.from_wire(vectors["envelope"]["wire"])
    with pytest.raises(UndecryptableError):
        open_envelope(
            envelope,
            recipient_keys=_user(vectors, "alice"),
            sender_sign_key=b64decode(vectors["keys"]["alice"]["sign_public"]),
        )


def test_recorded_envelope_layers_follow_the_documented_construction(vectors: dict[str, Any]) -> None:
    recorded = vectors["envelope"]
    wire = recorded["wire"]
    ciphertext = b64decode(wire["ciphertext"])
    alice_verify = VerifyKey(b64decode(vectors["keys"]["alice"]["sign_public"]))
    # Outer: Ed25519 over domain || canonical header || 0x00 || ciphertext.
    header = {k: wire[k] for k in ("v", "id", "sender", "recipient", "sent_at")}
    assert canonical_json(header).decode() == recorded["outer_header"]
    alice_verify.verify(
        ENVELOPE_DOMAIN + recorded["outer_header"].encode() + b"\x00" + ciphertext,
        b64decode(wire["signature"]),
    )
    # Sealed box of the padded wrapper {"c": b64(inner), "s": b64(inner signature)}.
    padded = SealedBox(PrivateKey(b64decode(vectors["keys"]["bob"]["secret"])[32:])).decrypt(ciphertext)
    assert len(padded) == recorded["padded_length"]
    assert len(padded) % 256 == 0
    plaintext = sodium_unpad(padded, 256)
    assert len(plaintext) == recorded["plaintext_length"]
    assert plaintext == canonical_json(
        {"c": b64encode(recorded["inner"].encode()), "s": recorded["inner_signature"]}
    )
    # Inner: canonical JSON of every field, signed under the content domain.
    inner = recorded["inner"].encode()
    alice_verify.verify(CONTENT_DOMAIN + inner, b64decode(recorded["inner_signature"]))
    expected = recorded["input"]
    assert json.loads(inner) == {
        "v": 1,
        "id": expected["envelope_id"],
        "kind": expected["kind"],
        "sender": expected["sender"],
        "recipient": expected["recipient"],
        "sent_at": expected["sent_at"],
        "body": expected["body"],
    }
    assert canonical_json(json.loads(inner)) == inner


def test_sealing_the_recorded_input_gives_the_recorded_content(vectors: dict[str, Any]) -> None:
    """Ciphertext is random, but everything inside it is deterministic."""
    recorded = vectors["envelope"]
    alice, bob = _user(vectors, "alice"), _user(vectors, "bob")
    envelope = seal_envelope(sender_keys=alice, recipient_box_key=bob.public.box, **recorded["input"])
    assert canonical_json(envelope.header()).decode() == recorded["outer_header"]
    padded = SealedBox(bob.box_key).decrypt(envelope.ciphertext)
    assert len(padded) == recorded["padded_length"]
    wrapper = json.loads(sodium_unpad(padded, 256))
    assert b64decode(wrapper["c"]).decode() == recorded["inner"]
    assert wrapper["s"] == recorded["inner_signature"]


def test_recorded_envelope_signed_by_another_key_fails(vectors: dict[str, Any]) -> None:
    envelope = SealedEnvelope.from_wire(vectors["envelope"]["wire"])
    with pytest.raises(SignatureError):
        open_envelope(
            envelope,
            recipient_keys=_user(vectors, "bob"),
            sender_sign_key=b64decode(vectors["keys"]["bob"]["sign_public"]),
        )


# --- signed requests -------------------------------------------------------------------------


def test_recorded_request_signatures(vectors: dict[str, Any]) -> None:
    node = NodeKey.from_seed(b64decode(vectors["keys"]["node"]["seed"]))
    assert vectors["requests"], "no request vectors recorded"
    for item in vectors["requests"]:
        body = item["body"].encode()
        headers = item["headers"]
        assert set(headers) == {"Flame-Node", "Flame-Timestamp", "Flame-Nonce", "Flame-Signature"}
        assert headers["Flame-Node"] == vectors["keys"]["node"]["node_id"]
        # The signing string is the documented one...
        expected_string = "\n".join(
            [
                "flamechat-request/v1",
                item["method"].upper(),
                item["target"],
                hashlib.sha256(body).hexdigest(),
                str(item["timestamp"]),
                item["nonce"],
                headers["Flame-Node"],
            ]
        )
        assert item["signing_string"] == expected_string
        # ...its raw Ed25519 signature is the recorded one...
        VerifyKey(node.public_key).verify(expected_string.encode(), b64decode(headers["Flame-Signature"]))
        # ...our signer still produces exactly these headers, and our verifier accepts them.
        signed = sign_request(
            node, item["method"], item["target"], body, timestamp=item["timestamp"], nonce=item["nonce"]
        )
        assert signed.as_dict() == headers
        parsed = SignedRequestHeaders.parse(headers)
        assert parsed == signed
        verify_request(node.public_key, parsed, item["method"], item["target"], body)


# --- signed documents ------------------------------------------------------------------------


def test_recorded_document_signatures(vectors: dict[str, Any]) -> None:
    node = NodeKey.from_seed(b64decode(vectors["keys"]["node"]["seed"]))
    alice = _user(vectors, "alice")
    signers: dict[str, Any] = {"node": node, "alice": alice}
    publics = {"node": node.public_key, "alice": alice.public.sign}
    purposes = {item["purpose"] for item in vectors["documents"]}
    assert purposes == {
        USER_PURPOSE,
        USERS_PURPOSE,
        NODE_PURPOSE,
        NODES_PURPOSE,
        KEY_BINDING_PURPOSE,
        PROFILE_PURPOSE,
    }
    for item in vectors["documents"]:
        signature = b64decode(item["signature"])
        message = DOCUMENT_DOMAIN + item["purpose"].encode() + b"\n" + canonical_json(item["document"])
        VerifyKey(publics[item["signer"]]).verify(message, signature)
        assert sign_document(signers[item["signer"]], item["purpose"], item["document"]) == signature
        verify_document(publics[item["signer"]], item["purpose"], item["document"], signature)


def test_a_document_signature_does_not_carry_over_to_another_purpose(vectors: dict[str, Any]) -> None:
    item = vectors["documents"][0]
    node_public = b64decode(vectors["keys"]["node"]["public_key"])
    with pytest.raises(SignatureError):
        verify_document(node_public, "directory-users", item["document"], b64decode(item["signature"]))


# --- keys at rest ----------------------------------------------------------------------------


def test_recorded_password_blob_still_unwraps(vectors: dict[str, Any]) -> None:
    vault = vectors["vault"]
    blob = b64decode(vault["blob"])
    assert blob.startswith(b"FV1")
    assert unwrap_with_password(blob, vault["password"]) == b64decode(vault["secret"])
    with pytest.raises(UndecryptableError):
        unwrap_with_password(blob, vault["password"] + "!")


def test_recorded_session_key_derivation(vectors: dict[str, Any]) -> None:
    vault = vectors["vault"]
    token = b64decode(vault["session_token"])
    assert session_key_from_token(token) == b64decode(vault["session_key"])
    assert session_lookup_id(token) == vault["session_lookup_id"]


def test_generator_agrees_with_the_recorded_deterministic_parts(vectors: dict[str, Any]) -> None:
    """Guards the generator itself: a regen would change nothing but random parts."""
    fresh = build_vectors()
    for volatile in (("envelope", "wire"), ("vault", "blob")):
        fresh[volatile[0]].pop(volatile[1])
    recorded = json.loads(json.dumps(vectors))
    recorded["envelope"].pop("wire")
    recorded["vault"].pop("blob")
    assert fresh == recorded


if __name__ == "__main__":  # pragma: no cover - the --regen entry point
    if sys.argv[1:] != ["--regen"]:
        sys.exit("usage: python -m tests.unit.test_vectors --regen   (a deliberate wire-format change only)")
    VECTORS.write_text(json.dumps(build_vectors(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {VECTORS}")

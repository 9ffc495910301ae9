"""Sealed envelopes: what opens, what is refused, and what a relay can learn.

Invariant 1 of DESIGN.md: a body leaves a node only signed by its sender and
sealed to its recipient. Every way of bending an envelope below must be
refused with the matching :class:`CryptoError` subclass, so the federation
layer can answer with the right error and store nothing.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.bindings import sodium_pad
from nacl.public import PublicKey, SealedBox

from flamechat.crypto import (
    CryptoError,
    SealedEnvelope,
    SignatureError,
    UndecryptableError,
    UserKeys,
    b64encode,
    canonical_json,
    open_envelope,
    seal_envelope,
    verify_envelope_origin,
)
from flamechat.crypto import envelope as envelope_module
from flamechat.crypto.errors import MalformedError
from tests.unit.support import PROPERTY, bodies, envelope_ids, user_keys, usernames

ALICE = user_keys("alice")
BOB = user_keys("bob")
MALLORY = user_keys("mallory")
ENVELOPE_ID = "0190a5e4-8c1b-7a3e-9f00-123456789abc"
SENT_AT = 1_800_000_000_000
SEALED_BOX_OVERHEAD = 48  # ephemeral X25519 public key (32) + Poly1305 tag (16)


def seal(
    body: dict[str, Any] | None = None,
    *,
    sender_keys: UserKeys = ALICE,
    sender: str = "alice",
    recipient: str = "bob",
    recipient_keys: UserKeys = BOB,
    envelope_id: str = ENVELOPE_ID,
    sent_at: int = SENT_AT,
    kind: str = "message",
) -> SealedEnvelope:
    return seal_envelope(
        sender_keys=sender_keys,
        sender=sender,
        recipient=recipient,
        recipient_box_key=recipient_keys.public.box,
        envelope_id=envelope_id,
        sent_at=sent_at,
        kind=kind,
        body={"text": "hello bob"} if body is None else body,
    )


def open_as_bob(envelope: SealedEnvelope, sender_sign_key: bytes | None = None) -> Any:
    return open_envelope(
        envelope,
        recipient_keys=BOB,
        sender_sign_key=ALICE.public.sign if sender_sign_key is None else sender_sign_key,
    )


def flip(data: bytes, index: int) -> bytes:
    index %= len(data)
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


# --- round trip -------------------------------------------------------------------------------


@PROPERTY
@given(
    body=bodies,
    envelope_id=envelope_ids,
    sender=usernames,
    recipient=usernames,
    sent_at=st.integers(0, 2**53),
    kind=st.sampled_from(["message", "receipt", "file"]),
)
def test_what_is_sealed_opens_unchanged_for_its_recipient(
    body: dict[str, Any], envelope_id: str, sender: str, recipient: str, sent_at: int, kind: str
) -> None:
    envelope = seal(
        body, sender=sender, recipient=recipient, envelope_id=envelope_id, sent_at=sent_at, kind=kind
    )
    wire = SealedEnvelope.from_wire(envelope.to_wire())
    assert wire == envelope
    opened = open_as_bob(wire)
    assert opened.body == body
    assert (opened.id, opened.kind, opened.sender, opened.recipient, opened.sent_at) == (
        envelope_id,
        kind,
        sender,
        recipient,
        sent_at,
    )


def test_unicode_body_survives_the_trip() -> None:
    body = {"text": "Grüße, 你好 🔥 — «ok»\n\ttab", "nested": {"list": [1, None, True, "é"]}}
    assert open_as_bob(seal(body)).body == body


def test_a_relay_learns_routing_metadata_but_not_the_body() -> None:
    secret = "the launch date is the 14th"
    wire = seal({"text": secret}).to_wire()
    assert set(wire) == {"v", "id", "sender", "recipient", "sent_at", "ciphertext", "signature"}
    flat = canonical_json(wire)
    assert secret.encode() not in flat
    assert b"launch" not in flat


def test_sealing_twice_gives_different_ciphertexts() -> None:
    # crypto_box_seal uses a fresh ephemeral key: equal bodies do not look equal on the wire.
    assert seal().ciphertext != seal().ciphertext


def test_origin_can_be_checked_without_the_recipient_key() -> None:
    envelope = seal()
    verify_envelope_origin(envelope, ALICE.public.sign)  # a relay can do this much
    with pytest.raises(SignatureError):
        verify_envelope_origin(envelope, MALLORY.public.sign)


# --- refusals -------------------------------------------------------------------------------


@PROPERTY
@given(index=st.integers(min_value=0))
def test_any_flipped_ciphertext_bit_is_refused(index: int) -> None:
    envelope = seal()
    tampered = dataclasses.replace(envelope, ciphertext=flip(envelope.ciphertext, index))
    with pytest.raises(SignatureError):
        open_as_bob(tampered)


def test_tampered_box_is_refused_even_when_the_outer_signature_is_redone() -> None:
    # Defence in depth: the sealed box's own MAC refuses altered ciphertext too.
    envelope = seal()
    tampered = flip(envelope.ciphertext, len(envelope.ciphertext) // 2)
    with pytest.raises(UndecryptableError):
        open_as_bob(_resigned(envelope, ciphertext=tampered))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sender", "mallory"),
        ("recipient", "carol"),
        ("id", "0190a5e4-8c1b-7a3e-9f00-000000000000"),
        ("sent_at", SENT_AT + 1),
        ("sent_at", 0),
    ],
)
def test_changed_header_field_is_refused(field: str, value: Any) -> None:
    tampered = dataclasses.replace(seal(), **{field: value})
    with pytest.raises(SignatureError):
        open_as_bob(tampered)


def test_wrong_recipient_key_cannot_open() -> None:
    # Sealed to mallory's box key but claims to be for bob: bob's node cannot open it.
    envelope = seal(recipient_keys=MALLORY)
    with pytest.raises(UndecryptableError):
        open_as_bob(envelope)


def test_another_user_cannot_open_an_envelope_for_bob() -> None:
    envelope = seal()
    with pytest.raises(UndecryptableError):
        open_envelope(envelope, recipient_keys=MALLORY, sender_sign_key=ALICE.public.sign)


def test_forged_sender_is_refused() -> None:
    # Mallory seals with her own key but writes "alice" as the sender.
    forged = seal(sender_keys=MALLORY, sender="alice")
    with pytest.raises(SignatureError):
        open_as_bob(forged)


def test_outer_signature_swapped_for_another_keys_is_refused() -> None:
    envelope = seal()
    mallory_signature = MALLORY.sign(envelope_module._outer_message(envelope.header(), envelope.ciphertext))
    with pytest.raises(SignatureError):
        open_as_bob(dataclasses.replace(envelope, signature=mallory_signature))


def test_content_signed_by_someone_else_is_refused() -> None:
    # The outer signature is alice's, but the signed content inside is mallory's.
    envelope = _handmade(inner_signer=MALLORY, inner_fields={}, outer_signer=ALICE)
    with pytest.raises(SignatureError):
        open_as_bob(envelope)


@pytest.mark.parametrize(
    "inner_fields",
    [
        {"recipient": "mallory"},
        {"sender": "carol"},
        {"id": "0190a5e4-8c1b-7a3e-9f00-000000000000"},
        {"sent_at": SENT_AT - 5},
        {"v": 2},
    ],
)
def test_content_resealed_under_another_header_is_refused(inner_fields: dict[str, Any]) -> None:
    """Alice wrote to mallory; that signed content, re-sealed to bob (even with an
    outer signature that verifies), must not open as a message from alice to bob."""
    envelope = _handmade(inner_signer=ALICE, inner_fields=inner_fields, outer_signer=ALICE)
    with pytest.raises(SignatureError, match="does not match the envelope header"):
        open_as_bob(envelope)


def test_resealing_a_received_envelope_to_someone_else_is_refused() -> None:
    """Mallory received an envelope from alice and forwards it to bob: she can
    re-encrypt it to bob's key but cannot sign it as alice, and signing it as
    herself leaves alice's inner signature under mallory's name."""
    to_mallory = seal(recipient="mallory", recipient_keys=MALLORY)
    opened_plaintext = SealedBox(MALLORY.box_key).decrypt(to_mallory.ciphertext)
    ciphertext = bytes(SealedBox(PublicKey(BOB.public.box)).encrypt(opened_plaintext))
    header = {**to_mallory.header(), "recipient": "bob"}
    # (a) keeps alice as the sender: mallory cannot make alice's outer signature.
    as_alice = SealedEnvelope(
        id=to_mallory.id,
        sender="alice",
        recipient="bob",
        sent_at=to_mallory.sent_at,
        ciphertext=ciphertext,
        signature=to_mallory.signature,
    )
    with pytest.raises(SignatureError):
        open_as_bob(as_alice)
    # (b) signs the outside as herself: the inside still says alice → mallory.
    as_mallory = SealedEnvelope(
        id=to_mallory.id,
        sender="mallory",
        recipient="bob",
        sent_at=to_mallory.sent_at,
        ciphertext=ciphertext,
        signature=MALLORY.sign(envelope_module._outer_message({**header, "sender": "mallory"}, ciphertext)),
    )
    with pytest.raises(SignatureError):
        open_as_bob(as_mallory, sender_sign_key=MALLORY.public.sign)


@pytest.mark.parametrize(
    "plaintext",
    [
        b"not json",
        b'{"c": "!!!", "s": "AAAA"}',
        b"[]",
        b'{"c": 1, "s": 2}',
        b"\xff\xfe",
        b"[" * 5000,  # Python's parser raises RecursionError on this, not ValueError
        b'{"c": ' * 40 + b"1" + b"}" * 40,  # parses, but deeper than any protocol structure
    ],
)
def test_garbage_inside_a_valid_box_is_malformed(plaintext: bytes) -> None:
    ciphertext = bytes(SealedBox(PublicKey(BOB.public.box)).encrypt(sodium_pad(plaintext, 256)))
    envelope = _resigned(seal(), ciphertext=ciphertext)
    with pytest.raises(MalformedError):
        open_as_bob(envelope)


def test_deeply_nested_content_under_a_valid_inner_signature_is_malformed() -> None:
    # A sender (a hostile node's user) signs content a thousand lists deep: refused
    # as malformed, not a RecursionError that breaks whoever opens it (a login).
    deep = _handmade(
        inner_signer=ALICE,
        inner_fields={
            "body": {"text": "x", "n": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}
        },
        outer_signer=ALICE,
    )
    with pytest.raises(MalformedError):
        open_as_bob(deep)


def test_unpadded_plaintext_is_undecryptable() -> None:
    # A box whose plaintext is not padded to the block is not one we made.
    ciphertext = bytes(SealedBox(PublicKey(BOB.public.box)).encrypt(b"x" * 100))
    with pytest.raises(UndecryptableError):
        open_as_bob(_resigned(seal(), ciphertext=ciphertext))


# --- wire form -------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["v", "id", "sender", "recipient", "sent_at", "signature"])
def test_missing_wire_field_is_malformed(missing: str) -> None:
    wire = seal().to_wire()
    del wire[missing]
    with pytest.raises(MalformedError):
        SealedEnvelope.from_wire(wire)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("v", 2),
        ("v", "1"),
        ("v", True),
        ("v", 1.0),
        ("id", ""),
        ("id", 7),
        ("sender", None),
        ("recipient", ["bob"]),
        ("sent_at", "1800000000000"),
        ("sent_at", True),
        ("sent_at", 1.5),
        ("ciphertext", "not base64!"),
        ("ciphertext", 12),
        ("signature", "AAAA"),
        ("signature", b64encode(b"x" * 63)),
        ("signature", None),
    ],
)
def test_bad_wire_field_is_malformed(field: str, value: Any) -> None:
    wire = {**seal().to_wire(), field: value}
    with pytest.raises(MalformedError):
        SealedEnvelope.from_wire(wire)


@pytest.mark.parametrize("cut", [0, 1, 47, 48, 100, -1])
def test_truncated_ciphertext_is_refused(cut: int) -> None:
    envelope = seal()
    wire = {**envelope.to_wire(), "ciphertext": b64encode(envelope.ciphertext[:cut])}
    with pytest.raises(SignatureError):
        open_as_bob(SealedEnvelope.from_wire(wire))


@PROPERTY
@given(
    garbage=st.one_of(
        st.dictionaries(st.text(max_size=12), st.text(max_size=20) | st.integers() | st.none(), max_size=8),
        st.fixed_dictionaries(
            {
                "v": st.just(1),
                "id": st.text(max_size=40),
                "sender": st.text(max_size=40),
                "recipient": st.text(max_size=40),
                "sent_at": st.integers(),
                "ciphertext": st.binary(max_size=600).map(b64encode),
                "signature": st.binary(min_size=64, max_size=64).map(b64encode),
            }
        ),
    )
)
def test_arbitrary_wire_data_never_opens_and_fails_only_with_crypto_errors(garbage: dict[str, Any]) -> None:
    try:
        envelope = SealedEnvelope.from_wire(garbage)
    except CryptoError:
        return
    with pytest.raises(CryptoError):
        open_as_bob(envelope)


@pytest.mark.parametrize("garbage", [None, "envelope", 7, ["v", 1], b"\x00"])
def test_wire_data_that_is_not_an_object_is_malformed(garbage: Any) -> None:
    with pytest.raises(MalformedError):
        SealedEnvelope.from_wire(garbage)


# --- padding -------------------------------------------------------------------------------


@PROPERTY
@given(text=st.text(max_size=2000))
def test_ciphertext_length_is_a_whole_number_of_256_byte_blocks(text: str) -> None:
    envelope = seal({"text": text})
    assert (len(envelope.ciphertext) - SEALED_BOX_OVERHEAD) % 256 == 0


def test_bodies_in_one_bucket_look_the_same_size() -> None:
    sizes = {len(seal({"text": "x" * n}).ciphertext) for n in range(0, 60)}
    assert len(sizes) == 1
    longer = {len(seal({"text": "x" * n}).ciphertext) for n in (400, 700, 1000)}
    assert len(longer) == 3
    assert min(longer) > max(sizes)


# --- helpers -------------------------------------------------------------------------------


def _resigned(envelope: SealedEnvelope, *, ciphertext: bytes, signer: UserKeys = ALICE) -> SealedEnvelope:
    """``envelope`` with other ciphertext and a valid outer signature over it."""
    signature = signer.sign(envelope_module._outer_message(envelope.header(), ciphertext))
    return dataclasses.replace(envelope, ciphertext=ciphertext, signature=signature)


def _handmade(
    *, inner_signer: UserKeys, inner_fields: dict[str, Any], outer_signer: UserKeys
) -> SealedEnvelope:
    """An envelope from alice to bob whose sealed content is built by hand."""
    content = {
        "v": 1,
        "id": ENVELOPE_ID,
        "kind": "message",
        "sender": "alice",
        "recipient": "bob",
        "sent_at": SENT_AT,
        "body": {"text": "hello"},
        **inner_fields,
    }
    inner = canonical_json(content)
    inner_sig = inner_signer.sign(envelope_module._INNER_DOMAIN + inner)
    plaintext = canonical_json({"c": b64encode(inner), "s": b64encode(inner_sig)})
    ciphertext = bytes(SealedBox(PublicKey(BOB.public.box)).encrypt(sodium_pad(plaintext, 256)))
    return _resigned(seal(), ciphertext=ciphertext, signer=outer_signer)

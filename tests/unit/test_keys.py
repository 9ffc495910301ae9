"""Key pairs, node ids, canonical JSON and base64: the ground every signature stands on."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flamechat.crypto import (
    NodeKey,
    SignatureError,
    UserKeys,
    UserPublicKeys,
    b64decode,
    b64encode,
    canonical_json,
    node_id_from_public_key,
    parse_json,
)
from flamechat.crypto.errors import MalformedError
from flamechat.crypto.keys import verify
from flamechat.protocol.ids import NODE_ID_PATTERN
from tests.unit.support import PROPERTY, json_values, node_key, user_keys

keys32 = st.binary(min_size=32, max_size=32)


# --- node ids --------------------------------------------------------------------------------


def test_node_id_of_a_fixed_key_never_changes() -> None:
    # Node ids are stored by the directory and every peer: changing the derivation orphans them all.
    assert node_id_from_public_key(bytes(32)) == "ntq26poq4dlfmrvv6zfwn5dvo"
    assert node_id_from_public_key(bytes(range(32))) == "nsbu7ipsjclxoe6lb2zctv6e6"


@PROPERTY
@given(seed=keys32)
def test_node_id_matches_the_wire_pattern_and_is_stable(seed: bytes) -> None:
    key = NodeKey.from_seed(seed)
    assert re.fullmatch(NODE_ID_PATTERN, key.node_id)
    assert key.node_id == node_id_from_public_key(key.public_key)
    assert NodeKey.from_seed(key.seed).node_id == key.node_id


@PROPERTY
@given(first=keys32, second=keys32)
def test_different_keys_have_different_node_ids(first: bytes, second: bytes) -> None:
    if first != second:
        assert node_id_from_public_key(first) != node_id_from_public_key(second)


@pytest.mark.parametrize("bad", [b"", b"x" * 31, b"x" * 33, "x" * 32])
def test_node_id_needs_a_32_byte_key(bad: Any) -> None:
    with pytest.raises(MalformedError):
        node_id_from_public_key(bad)


# --- key pairs ---------------------------------------------------------------------------------


@PROPERTY
@given(material=st.binary(min_size=64, max_size=64))
def test_user_keys_round_trip_through_bytes(material: bytes) -> None:
    keys = UserKeys.from_bytes(material)
    assert keys.to_bytes() == material
    assert UserKeys.from_bytes(keys.to_bytes()).public == keys.public


@pytest.mark.parametrize("bad", [b"", b"x" * 63, b"x" * 65, "x" * 64])
def test_user_key_material_must_be_64_bytes(bad: Any) -> None:
    with pytest.raises(MalformedError):
        UserKeys.from_bytes(bad)


def test_public_keys_must_be_32_bytes() -> None:
    with pytest.raises(MalformedError):
        UserPublicKeys(sign=b"x" * 31, box=b"x" * 32)
    with pytest.raises(MalformedError):
        UserPublicKeys(sign=b"x" * 32, box=b"x" * 33)


def test_sign_and_box_keys_are_independent() -> None:
    keys = user_keys("alice")
    assert keys.public.sign != keys.public.box
    assert UserKeys.generate().public != UserKeys.generate().public
    assert NodeKey.generate().node_id != NodeKey.generate().node_id


def test_node_seed_must_be_32_bytes() -> None:
    with pytest.raises(MalformedError):
        NodeKey.from_seed(b"short")


@PROPERTY
@given(message=st.binary(max_size=200))
def test_signatures_verify_only_with_their_key_and_message(message: bytes) -> None:
    alice, bob = user_keys("alice"), user_keys("bob")
    signature = alice.sign(message)
    assert signature == alice.sign(message)  # Ed25519 is deterministic
    verify(alice.public.sign, message, signature)
    with pytest.raises(SignatureError):
        verify(bob.public.sign, message, signature)
    with pytest.raises(SignatureError):
        verify(alice.public.sign, message + b"!", signature)


@pytest.mark.parametrize("signature", [b"", b"x" * 63, b"x" * 65, "x" * 64])
def test_malformed_signature_is_a_signature_error(signature: Any) -> None:
    with pytest.raises(SignatureError):
        verify(node_key("a").public_key, b"m", signature)


# --- canonical JSON ----------------------------------------------------------------------------


@PROPERTY
@given(value=json_values)
def test_canonical_json_round_trips(value: Any) -> None:
    encoded = canonical_json(value)
    assert json.loads(encoded) == value
    assert canonical_json(json.loads(encoded)) == encoded  # a fixed point


@PROPERTY
@given(value=json_values)
def test_parse_json_reads_what_canonical_json_writes(value: Any) -> None:
    assert parse_json(canonical_json(value)) == value


@pytest.mark.parametrize(
    "raw",
    [
        "[" * 5000,  # json.loads raises RecursionError here: parse_json must not
        "[" * 5000 + "]" * 5000,
        '{"a":' * 1100 + "1" + "}" * 1100,
        "[" * 33 + "]" * 33,  # parses, but one level deeper than the bound
    ],
)
def test_parse_json_refuses_deep_nesting_as_a_value_error(raw: str) -> None:
    with pytest.raises(ValueError, match="nested"):
        parse_json(raw)


def test_parse_json_accepts_nesting_up_to_the_bound() -> None:
    assert parse_json("[" * 32 + "]" * 32) is not None
    assert parse_json(b'{"users": [{"hidden_from": ["bob"]}]}') == {"users": [{"hidden_from": ["bob"]}]}


@PROPERTY
@given(mapping=st.dictionaries(st.text(max_size=8), json_values, max_size=8), data=st.data())
def test_canonical_json_ignores_key_order(mapping: dict[str, Any], data: st.DataObject) -> None:
    shuffled_keys = data.draw(st.permutations(list(mapping)))
    reordered = {key: mapping[key] for key in shuffled_keys}
    assert canonical_json(reordered) == canonical_json(mapping)


@PROPERTY
@given(text=st.text(max_size=50))
def test_canonical_json_keeps_unicode_as_utf8(text: str) -> None:
    encoded = canonical_json({"t": text})
    assert encoded.decode("utf-8") == '{"t":' + json.dumps(text, ensure_ascii=False) + "}"
    for char in text:
        if ord(char) >= 0x80:
            assert char.encode() in encoded  # raw UTF-8, never \\uXXXX


def test_canonical_json_exact_form() -> None:
    value = {"b": [1, True, None], "a": {"z": "é", "y": ""}, "A": -3}
    assert canonical_json(value) == '{"A":-3,"a":{"y":"","z":"é"},"b":[1,true,null]}'.encode()


# --- base64 ------------------------------------------------------------------------------------


@PROPERTY
@given(data=st.binary(max_size=100))
def test_base64_round_trip(data: bytes) -> None:
    text = b64encode(data)
    assert text.isascii()
    assert b64decode(text) == data
    assert b64decode(text, size=len(data)) == data


@pytest.mark.parametrize("text", ["a", "abc", "ab=c", "a b=", "YQ==\n", "é===", "YQ", "-_-_"])
def test_base64_decoding_is_strict(text: str) -> None:
    with pytest.raises(MalformedError):
        b64decode(text)


@pytest.mark.parametrize("value", [None, 5, b"YQ=="])
def test_base64_needs_a_string(value: Any) -> None:
    with pytest.raises(MalformedError):
        b64decode(value)


def test_base64_checks_the_decoded_size() -> None:
    with pytest.raises(MalformedError, match="32 bytes"):
        b64decode(b64encode(b"x" * 31), size=32, what="key")

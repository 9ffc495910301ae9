"""Signed node-to-node requests: a signature covers exactly one request.

A peer node's request is accepted only if its signature holds over method,
path and query, body digest, timestamp, nonce and the claimed node id; any
change to any of them must be refused (DESIGN.md invariant 4).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flamechat.crypto import SignatureError, SignedRequestHeaders, b64encode, sign_request, verify_request
from flamechat.crypto.errors import MalformedError
from tests.unit.support import PROPERTY, node_key

NODE = node_key("a")
OTHER = node_key("b")
TIMESTAMP = 1_800_000_000
NONCE = "n0nce-0123456789abcdef"

methods = st.sampled_from(["GET", "PUT", "POST", "DELETE", "PATCH"])
targets = st.from_regex(r"\A/[a-z0-9/_.-]{0,40}(\?[a-z0-9=&_%-]{0,30})?\Z")
nonces = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=16, max_size=64)


def signed(method: str = "PUT", target: str = "/federation/v1/envelopes/x?a=1", body: bytes = b"{}") -> Any:
    return sign_request(NODE, method, target, body, timestamp=TIMESTAMP, nonce=NONCE)


@PROPERTY
@given(
    method=methods,
    target=targets,
    body=st.binary(max_size=300),
    timestamp=st.integers(0, 10**15 - 1),
    nonce=nonces,
)
def test_a_signed_request_verifies_after_crossing_the_wire(
    method: str, target: str, body: bytes, timestamp: int, nonce: str
) -> None:
    headers = sign_request(NODE, method, target, body, timestamp=timestamp, nonce=nonce)
    received = SignedRequestHeaders.parse(headers.as_dict())
    assert received == headers
    verify_request(NODE.public_key, received, method, target, body)


def test_method_case_does_not_matter() -> None:
    verify_request(NODE.public_key, signed("put"), "PUT", "/federation/v1/envelopes/x?a=1", b"{}")


@pytest.mark.parametrize(
    ("method", "target", "body"),
    [
        ("POST", "/federation/v1/envelopes/x?a=1", b"{}"),  # method
        ("PUT", "/federation/v1/envelopes/y?a=1", b"{}"),  # path
        ("PUT", "/federation/v1/envelopes/x?a=2", b"{}"),  # query value
        ("PUT", "/federation/v1/envelopes/x", b"{}"),  # query dropped
        ("PUT", "/federation/v1/envelopes/x?a=1&b=2", b"{}"),  # query added
        ("PUT", "/federation/v1/envelopes/x?a=1", b"{ }"),  # body
        ("PUT", "/federation/v1/envelopes/x?a=1", b""),  # body dropped
    ],
)
def test_changing_the_request_breaks_the_signature(method: str, target: str, body: bytes) -> None:
    with pytest.raises(SignatureError):
        verify_request(NODE.public_key, signed(), method, target, body)


@pytest.mark.parametrize(
    "change",
    [
        {"timestamp": TIMESTAMP + 1},
        {"nonce": NONCE + "x"},
        {"node_id": OTHER.node_id},
        {"signature": OTHER.sign(b"anything")},
    ],
)
def test_changing_a_signature_header_breaks_it(change: dict[str, Any]) -> None:
    original = signed()
    headers = SignedRequestHeaders(
        **{
            "node_id": original.node_id,
            "timestamp": original.timestamp,
            "nonce": original.nonce,
            "signature": original.signature,
            **change,
        }
    )
    with pytest.raises(SignatureError):
        verify_request(NODE.public_key, headers, "PUT", "/federation/v1/envelopes/x?a=1", b"{}")


def test_a_signature_by_another_node_does_not_verify_under_this_nodes_key() -> None:
    headers = sign_request(OTHER, "GET", "/x", b"", timestamp=TIMESTAMP, nonce=NONCE)
    with pytest.raises(SignatureError):
        verify_request(NODE.public_key, headers, "GET", "/x", b"")


@PROPERTY
@given(body=st.binary(max_size=200), other=st.binary(max_size=200))
def test_any_other_body_is_refused(body: bytes, other: bytes) -> None:
    headers = sign_request(NODE, "PUT", "/x", body, timestamp=TIMESTAMP, nonce=NONCE)
    if other == body:
        verify_request(NODE.public_key, headers, "PUT", "/x", other)
    else:
        with pytest.raises(SignatureError):
            verify_request(NODE.public_key, headers, "PUT", "/x", other)


def test_each_request_gets_its_own_nonce() -> None:
    nonces = {sign_request(NODE, "GET", "/x", b"", timestamp=TIMESTAMP).nonce for _ in range(50)}
    assert len(nonces) == 50
    for nonce in nonces:  # and the receiver's parser accepts every one we make
        SignedRequestHeaders.parse(signed().as_dict() | {"Flame-Nonce": nonce})


# --- header parsing ----------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["Flame-Node", "Flame-Timestamp", "Flame-Nonce", "Flame-Signature"])
def test_missing_header_is_malformed(missing: str) -> None:
    headers = signed().as_dict()
    del headers[missing]
    with pytest.raises(MalformedError, match=missing):
        SignedRequestHeaders.parse(headers)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Flame-Timestamp", ""),
        ("Flame-Timestamp", "-5"),
        ("Flame-Timestamp", "1.5"),
        ("Flame-Timestamp", " 1800000000"),
        ("Flame-Timestamp", "1" * 16),
        ("Flame-Timestamp", "²"),  # a Unicode digit int() refuses
        ("Flame-Timestamp", "١٨٠٠"),  # Arabic-Indic digits
        ("Flame-Node", "n" + "a" * 23),  # not a node id: nobody is asked who signed it
        ("Flame-Node", "n" + "a" * 25),
        ("Flame-Node", "N" + "a" * 24),
        ("Flame-Node", "n" + "a" * 23 + "1"),
        ("Flame-Node", "../users/alice"),
        ("Flame-Nonce", "short"),
        ("Flame-Nonce", "x" * 65),
        ("Flame-Nonce", "é" * 20),
        ("Flame-Nonce", "has a space in it ok"),
        ("Flame-Nonce", "line\nbreak-0123456789"),
        ("Flame-Signature", "not base64"),
        ("Flame-Signature", b64encode(b"\0" * 63)),
        ("Flame-Signature", b64encode(b"\0" * 65)),
    ],
)
def test_bad_header_value_is_malformed(name: str, value: str) -> None:
    headers = signed().as_dict() | {name: value}
    with pytest.raises(MalformedError):
        SignedRequestHeaders.parse(headers)


@PROPERTY
@given(
    headers=st.dictionaries(
        st.sampled_from(["Flame-Node", "Flame-Timestamp", "Flame-Nonce", "Flame-Signature"]),
        st.text(alphabet=st.characters(max_codepoint=255), max_size=100),
    )
)
def test_header_parsing_fails_only_as_malformed(headers: dict[str, str]) -> None:
    """Whatever arrives in the headers (HTTP carries latin-1), parsing either
    succeeds or raises MalformedError: the verifier turns that into a 401."""
    try:
        parsed = SignedRequestHeaders.parse(headers)
    except MalformedError:
        return
    with pytest.raises(SignatureError):
        verify_request(NODE.public_key, parsed, "GET", "/x", b"")

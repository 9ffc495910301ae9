"""Fuzz the federation API (``/federation/v1``) a node offers its peers.

Unsigned, every request but ``/version`` must be refused with a 4xx in the
one error shape. Signed by a peer node the directory knows, generated
requests get past the signature check and reach the envelope, relay,
presence and profile handlers: still never a 5xx, always the documented
shapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from schemathesis.python import asgi

from flamechat.devnet import DevNetwork
from tests.fuzz.conftest import (
    PEER_KEY,
    NodeUnderTest,
    SigningClient,
    assert_error_shape,
    browser_session,
    node_schema,
    register_peer,
)

pytestmark = pytest.mark.fuzz

federation = node_schema().include(path_regex=r"^/federation/v1/")


@pytest.fixture(scope="module")
def peer(directory_net: DevNetwork, node_app: NodeUnderTest) -> Iterator[SigningClient]:
    """A peer node registered with the directory, signing every request it sends.

    carol has logged in on the node under test (she is its user; alice and bob belong to the local API
    module's node), so envelopes to her reach the checks of a real recipient.
    """
    assert directory_net.directory is not None
    browser_session(node_app, "carol").close()
    register_peer(directory_net.directory.url, PEER_KEY)
    client = SigningClient(node_app.app, PEER_KEY)
    yield client
    client.close()


@pytest.fixture(scope="module")
def stranger(node_app: NodeUnderTest) -> Iterator[asgi.ASGIClient]:
    client = asgi.ASGIClient(node_app.app, max_stream_events=1)
    yield client
    client.close()


def same_envelope_id(case: Any) -> None:
    """Valid cases name one envelope in the path and the body, so they get past that check to the rules."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or not isinstance(case.body, dict):
        return
    envelope = case.body.get("envelope", case.body)
    envelope_id = (case.path_parameters or {}).get("envelope_id")
    if isinstance(envelope, dict) and "id" in envelope and envelope_id is not None:
        envelope["id"] = envelope_id


@federation.parametrize()
def test_signed_by_a_known_peer(case: Any, peer: SigningClient) -> None:
    same_envelope_id(case)
    response = case.call(session=peer)
    case.validate_response(response)
    assert_error_shape(response)
    if response.status_code == 401:
        # the signature itself is always good: a 401 here would mean the node refused a valid peer
        assert response.json()["error"]["code"] not in ("bad_signature", "unknown_node", "replayed_request")


@federation.parametrize()
def test_unsigned(case: Any, stranger: asgi.ASGIClient) -> None:
    response = case.call(session=stranger)
    case.validate_response(response)
    assert_error_shape(response)
    if case.path != "/federation/v1/version":
        assert response.status_code in (401, 404, 405, 413, 422), (response.status_code, response.text)
        assert response.status_code != 404 or response.json()["error"]["code"] == "not_found"

"""Fuzz the directory's API (``/directory/v1``) from its own OpenAPI document.

The directory app runs in this process on a fresh data folder with alice,
bob and carol. Requests come unsigned (refused, except the public version
and key), and signed by a registered node that is alice's home node, so
generated logins, key publications, cards and presence reports reach the
directory's rules.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from schemathesis.python import asgi

from flamechat.config import DirectorySettings
from flamechat.crypto import b64encode
from flamechat.devnet import DevNetwork
from flamechat.directory.app import create_directory_app
from tests.fuzz.conftest import (
    FUZZ_CONFIG,
    PASSWORDS,
    PEER_KEY,
    SigningClient,
    assert_error_shape,
    openapi_document,
)

pytestmark = pytest.mark.fuzz

OPEN = ("/directory/v1/version", "/directory/v1/key")
PEER_PUBLIC_KEY = b64encode(PEER_KEY.public_key)


def directory_settings(data_dir: Path) -> DirectorySettings:
    # Its per-node request rate sits above what the fuzzer sends, so cases reach the handlers.
    return DirectorySettings(
        data_dir=data_dir, password_profile="minimal", requests_per_second_per_node=100_000
    )


directory = schemathesis.openapi.from_dict(
    openapi_document(lambda data: create_directory_app(directory_settings(data))), config=FUZZ_CONFIG
)


@pytest.fixture(scope="module")
def directory_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = tmp_path_factory.mktemp("directory")
    users = DevNetwork(root, password_profile="minimal")  # only its `flame user create` helper
    for name, password in PASSWORDS.items():
        users.create_user(name, password)
    app = create_directory_app(directory_settings(root / "directory"))
    try:
        with asgi.get_client(app):  # starts the lifespan
            pass
        yield app
    finally:
        asgi.shutdown_lifespans()


@pytest.fixture(scope="module")
def home_node(directory_app: Any) -> Iterator[SigningClient]:
    """A registered node that alice has logged in through, signing every request."""
    client = SigningClient(directory_app, PEER_KEY)
    registration = {"url": "http://127.0.0.1:9", "public_key": PEER_PUBLIC_KEY, "relay": True}
    answer = client.put(f"/directory/v1/nodes/{PEER_KEY.node_id}", json=registration)
    assert answer.status_code == 200, answer.text
    answer = client.post("/directory/v1/logins", json={"username": "alice", "password": PASSWORDS["alice"]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["user"]["home_node"] == PEER_KEY.node_id
    yield client
    client.close()


@pytest.fixture(scope="module")
def stranger(directory_app: Any) -> Iterator[asgi.ASGIClient]:
    client = asgi.ASGIClient(directory_app, max_stream_events=1)
    yield client
    client.close()


@directory.parametrize()
def test_signed_by_a_registered_node(case: Any, home_node: SigningClient) -> None:
    response = case.call(session=home_node)
    case.validate_response(response)
    assert_error_shape(response)
    if response.status_code == 401:
        # the signature is always good: only a wrong password, or a node acting for another node id
        # (registering a key it does not hold, reporting another node's presence) is refused as such
        code = response.json()["error"]["code"]
        assert code in ("bad_signature", "invalid_credentials"), response.text
        if code == "bad_signature":
            assert case.path.startswith("/directory/v1/nodes/{node_id}"), response.text
            own_id = case.path_parameters["node_id"] == PEER_KEY.node_id
            if case.path.endswith("/presence"):
                assert not own_id, response.text
            else:
                own_key = isinstance(case.body, dict) and case.body.get("public_key") == PEER_PUBLIC_KEY
                assert not (own_id and own_key), response.text


@directory.parametrize()
def test_unsigned(case: Any, stranger: asgi.ASGIClient) -> None:
    response = case.call(session=stranger)
    case.validate_response(response)
    assert_error_shape(response)
    if case.path not in OPEN:
        assert response.status_code in (401, 404, 405, 413, 422), (response.status_code, response.text)

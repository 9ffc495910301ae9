"""Shared pieces of the fuzz tests.

* a real directory process (``flamechat.devnet``) with a few users, so a node
  in the test process can register, log users in and resolve peers;
* in-process ASGI apps driven by schemathesis' ASGI transport;
* sessions that speak like a browser (cookie + CSRF header) or like a peer node
  (every request signed over exactly the bytes sent).
"""

from __future__ import annotations

import copy
import functools
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from schemathesis.python import asgi

from flamechat.config import NodeSettings
from flamechat.crypto import NodeKey, b64encode, sign_request
from flamechat.devnet import DevNetwork, http_json
from flamechat.node import create_node_app
from flamechat.web.security import CSRF_HEADER, cookie_name

# A user's first login makes that node their home: alice and bob live on the local API module's node,
# carol on the federation module's (the directory module has its own directory).
PASSWORDS = {name: f"{name}-password" for name in ("alice", "bob", "carol")}
# The peer node that signs federation requests; fixed, so the fuzz config can name it.
PEER_KEY = NodeKey.from_seed(bytes(range(32)))

# File upload parts are raw bytes, sent as generated.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")

FUZZ_CONFIG = schemathesis.Config.from_dict(
    {
        # Reproducible: the same examples on every run and in CI (derandomized, no example database).
        "seed": 20240601,
        "base-url": f"http://{asgi.HOST}",
        "max-stream-events": 1,
        "request-timeout": 20,
        # Bounded: examples, coverage and fuzzing phases; at most this many fuzzed cases per operation.
        "generation": {"max-examples": 40, "deterministic": True, "database": "none"},
        "phases": {"stateful": {"enabled": False}},
        "checks": {
            # Byte limits (UTF-8 bodies, configured file sizes) are not expressible in the schema: a
            # schema-valid request may rightly get 413 besides the statuses schemathesis expects.
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "413", "429"]
            },
            # An oversized body is refused before it is parsed, so schema-violating ones may get 413 too.
            "negative_data_rejection": {
                "expected-statuses": ["400", "401", "403", "404", "405", "409", "413", "415", "422", "429"]
            },
        },
        # Half the generated user and node names are real ones, so cases get past "unknown user" to the
        # rules behind (and relayed envelopes come back to the peer that asks for them).
        "dictionaries": {"users": {"values": list(PASSWORDS)}, "peers": {"values": [PEER_KEY.node_id]}},
        "parameters": {
            **{
                key: {"dictionary": "users", "probability": 0.5}
                for key in (
                    "path.peer",
                    "path.username",
                    "body.username",
                    "body.sender",
                    "body.recipient",
                    "body.envelope.sender",
                    "body.envelope.recipient",
                )
            },
            "body.recipient_node": {"dictionary": "peers", "probability": 0.5},
            "path.node_id": {"dictionary": "peers", "probability": 0.5},
        },
    }
)


def openapi_document(build: Callable[[Path], Any]) -> dict[str, Any]:
    """The OpenAPI document an app publishes, read from a throwaway instance at collection time."""
    with tempfile.TemporaryDirectory(prefix="flame-openapi-") as scratch:
        document: dict[str, Any] = build(Path(scratch)).openapi()
    return document


@functools.cache
def node_document() -> dict[str, Any]:
    return openapi_document(lambda data: create_node_app(NodeSettings(data_dir=data)))


def node_schema() -> Any:
    """The node's document (local and federation APIs); tests send it to a live app via ``session=``."""
    return schemathesis.openapi.from_dict(copy.deepcopy(node_document()), config=FUZZ_CONFIG)


# --- processes and apps --------------------------------------------------------------


@pytest.fixture(scope="session")
def directory_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevNetwork]:
    """A real directory process with alice, bob and carol; stopped at the end of the session.
    Its per-node request rate sits above what a fuzzed node asks of it."""
    net = DevNetwork(tmp_path_factory.mktemp("fuzz-net"), password_profile="minimal")
    try:
        net.start_directory(extra=["--requests-per-second-per-node", "100000"])
        for name, password in PASSWORDS.items():
            net.create_user(name, password)
        yield net
    finally:
        net.stop()


def fuzz_node_settings(data_dir: Path, directory_url: str) -> NodeSettings:
    """A node whose rate limits sit above what the fuzzer sends, so it reaches the handlers."""
    return NodeSettings(
        data_dir=data_dir,
        directory_url=directory_url,
        port=9,  # only the address it advertises: nothing listens there, so peers' deliveries fail fast
        password_profile="minimal",
        presence_interval=3600.0,
        messages_per_minute=100_000,
        bytes_per_minute=1 << 40,
        file_bytes_per_hour=1 << 50,
        peer_requests_per_second=100_000,
        logins_per_minute_per_address=100_000,
        logins_per_minute_per_account=100_000,
    )


@dataclass
class NodeUnderTest:
    app: Any
    node_id: str
    cookie: str


@pytest.fixture(scope="module")
def node_app(directory_net: DevNetwork, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeUnderTest]:
    """A node app in this process, registered with the real directory; its lifespan ends with the module."""
    assert directory_net.directory is not None
    app = create_node_app(fuzz_node_settings(tmp_path_factory.mktemp("node"), directory_net.directory.url))
    node_id = app.state.node.key.node_id
    try:
        with asgi.get_client(app):  # starts the lifespan: registration, workers
            pass
        wait_registered(directory_net, app.state.node.key)
        yield NodeUnderTest(app, node_id, cookie_name(node_id))
    finally:
        asgi.shutdown_lifespans()


def wait_registered(net: DevNetwork, key: NodeKey, timeout: float = 20.0) -> None:
    """Poll the directory, signing as the node, until it knows the node (bounded in time)."""
    assert net.directory is not None
    node_id = key.node_id
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, _ = signed_directory_call(net.directory.url, key, "GET", f"/directory/v1/nodes/{node_id}")
        if status == 200:
            return
        time.sleep(0.1)
    raise AssertionError(f"node {node_id} did not register with the directory within {timeout}s")


def signed_directory_call(
    base_url: str, key: NodeKey, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    raw = b"" if body is None else json.dumps(body).encode()
    headers = sign_request(key, method, path, raw, timestamp=int(time.time())).as_dict()
    status, payload, _ = http_json(method, base_url + path, body, headers=headers)
    return status, payload


def register_peer(directory_url: str, key: NodeKey, url: str = "http://127.0.0.1:9") -> None:
    """Register ``key`` as a node with the directory, as a peer would at start-up."""
    body = {"url": url, "public_key": b64encode(key.public_key), "relay": True}
    status, payload = signed_directory_call(
        directory_url, key, "PUT", f"/directory/v1/nodes/{key.node_id}", body
    )
    assert status == 200, (status, payload)


# --- sessions --------------------------------------------------------------------------


class SigningClient(asgi.ASGIClient):
    """Signs every request with a node key over the method, target and exact body bytes sent."""

    def __init__(self, app: Any, key: NodeKey) -> None:
        super().__init__(app, max_stream_events=1)
        self.key = key

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        assert isinstance(body, bytes), "generated bodies are sent whole"
        signed = sign_request(
            self.key, request.method or "GET", request.path_url, body, timestamp=int(time.time())
        )
        request.headers.update(signed.as_dict())
        return super().send(request, **kwargs)


def browser_session(node: NodeUnderTest, username: str) -> asgi.ASGIClient:
    """Log ``username`` in on the node and return a client holding the cookie and CSRF header."""
    client = asgi.ASGIClient(node.app, max_stream_events=1)
    response = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        response = client.post(
            "/api/v1/sessions", json={"username": username, "password": PASSWORDS[username]}, timeout=20
        )
        if response.status_code != 503:  # the directory may not have answered yet
            break
        time.sleep(0.2)
    assert response is not None
    assert response.status_code == 201, response.text
    client.headers[CSRF_HEADER] = response.json()["csrf_token"]
    assert client.cookies.get(node.cookie)
    return client


# --- the one error shape ---------------------------------------------------------------


def assert_error_shape(response: Any) -> None:
    """Every 4xx/5xx is ``{"error": {"code": str, "message": str, ...}}`` and leaks no traceback."""
    status = response.status_code
    if status < 400:
        return
    assert "Traceback (most recent call last)" not in response.text, response.text
    content_type = header(response, "content-type")
    assert content_type.startswith("application/json"), (status, content_type, response.text[:300])
    body = response.json()
    assert isinstance(body, dict), body
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict), body
    assert isinstance(error.get("code"), str), body
    assert error["code"], body
    assert isinstance(error.get("message"), str), body
    assert error["message"], body


def header(response: Any, name: str) -> str:
    """A header of a requests or schemathesis response (the latter keeps lists of values)."""
    value = response.headers.get(name, "")
    if isinstance(value, list):
        return ", ".join(value)
    return str(value)

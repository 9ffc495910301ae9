"""One error shape across the three APIs (local, federation, directory).

Every refusal is ``{"error": {"code": <machine code>, "message": <for people>,
"field"?: ..., "details"?: ...}}`` with a JSON content type: unknown routes,
wrong methods, malformed JSON, bodies too large (announced or streamed), and
bugs, which answer ``500 internal_error`` without leaking a stack trace.
The apps are called in this process straight through ASGI, so a 500 is seen
as the client would see it. Node-signed APIs (federation, directory) check the
signature before they read the body: a malformed body is ``422`` naming the
field only when signed by a known node; unsigned, it is ``401`` whatever it holds.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flamechat.config import DirectorySettings, NodeSettings
from flamechat.crypto import NodeKey, b64encode, sign_request
from flamechat.devnet import free_port
from flamechat.directory.app import create_directory_app
from flamechat.node import create_node_app
from flamechat.storage import node_cache
from flamechat.storage.records import KnownNode

# One event loop for the module: the apps' databases, once used, belong to the loop that used them.
pytestmark = [pytest.mark.fuzz, pytest.mark.asyncio(loop_scope="module")]

NODE_LIMIT = 4096
DIRECTORY_LIMIT = 64 * 1024  # fixed in directory/app.py
ENVELOPE_ID = "0190a5e4-8c1b-7a3e-9f00-123456789abc"
NODE_ID = "n" + "a" * 24
SECRET = "s3cret-detail-that-must-not-leak"
PEER = NodeKey.from_seed(bytes(range(32, 64)))  # a node both apps know once `known_peer` ran
LOGIN_CHECKS = 3  # the directory's password checks per account and minute, here


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def call(
    app: Any,
    method: str,
    path: str,
    body: bytes | list[bytes] = b"",
    headers: dict[str, str] | None = None,
) -> Answer:
    """One request through the app's ASGI interface; a list body is streamed without Content-Length."""
    chunks = body if isinstance(body, list) else [body]
    raw_headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if not isinstance(body, list):
        raw_headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *raw_headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    pending = list(chunks)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if pending:
            chunk = pending.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending)}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    try:
        await app(scope, receive, send)
    except RuntimeError as exc:
        # Starlette re-raises a bug after answering 500, for the server to log; the client saw the answer
        if SECRET not in str(exc):
            raise
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers_out = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Answer(start["status"], headers_out, payload)


def assert_error(answer: Answer, status: int, code: str) -> dict[str, Any]:
    """The one shape: a JSON object with only ``error``, holding a code and a message (and maybe field)."""
    assert answer.status == status, (answer.status, answer.body[:300])
    assert answer.headers["content-type"].startswith("application/json"), answer.headers
    body = answer.json()
    assert list(body) == ["error"], body
    error = body["error"]
    assert error["code"] == code, body
    assert isinstance(error["message"], str), body
    assert error["message"], body
    assert set(error) <= {"code", "message", "field", "details"}, body
    assert isinstance(error.get("details", {}), dict), body  # always an object when present
    text = answer.body.decode()
    assert "Traceback" not in text, text
    assert 'File "' not in text, text
    return dict(error)


@dataclass
class Surface:
    """One API: its app, a path under its prefix, and a few routes to misuse."""

    name: str
    app: Any
    prefix: str
    limit: int
    json_route: tuple[str, str]  # a route whose body is JSON
    get_only: str  # a route that answers GET alone
    methods: tuple[str, tuple[str, ...]]  # a path answering several methods, and those methods


async def _raise() -> None:
    raise RuntimeError(f"a bug with {SECRET} in its message")


@pytest.fixture(scope="module")
def surfaces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Surface]:
    """Apps that are never started: every case here is refused before a service is asked."""
    root: Path = tmp_path_factory.mktemp("shape")
    dead = f"http://127.0.0.1:{free_port()}"
    node = create_node_app(
        NodeSettings(data_dir=root / "node", directory_url=dead, max_request_bytes=NODE_LIMIT)
    )
    directory = create_directory_app(
        DirectorySettings(
            data_dir=root / "directory",
            password_profile="minimal",
            login_checks_per_minute_per_account=LOGIN_CHECKS,
        )
    )
    for app, prefix in ((node, "/api/v1"), (node, "/federation/v1"), (directory, "/directory/v1")):
        app.add_api_route(f"{prefix}/test-only-bug", _raise, methods=["POST"])
    return {
        "local": Surface(
            "local",
            node,
            "/api/v1",
            NODE_LIMIT,
            ("POST", "/api/v1/sessions"),
            "/api/v1/me",
            ("/api/v1/me/status", ("GET", "PUT")),
        ),
        "federation": Surface(
            "federation",
            node,
            "/federation/v1",
            NODE_LIMIT,
            ("PUT", f"/federation/v1/envelopes/{ENVELOPE_ID}"),
            "/federation/v1/version",
            ("/federation/v1/presence", ("GET", "PUT")),
        ),
        "directory": Surface(
            "directory",
            directory,
            "/directory/v1",
            DIRECTORY_LIMIT,
            ("POST", "/directory/v1/logins"),
            "/directory/v1/key",
            (f"/directory/v1/nodes/{NODE_ID}", ("GET", "PUT")),
        ),
    }


SURFACES = ["local", "federation", "directory"]
SIGNED = ["federation", "directory"]
JSON = {"content-type": "application/json"}


async def known_peer(surface: Surface) -> None:
    """Make PEER a node this surface knows: registered with the directory, cached by the node."""
    if surface.name == "directory":
        path = f"/directory/v1/nodes/{PEER.node_id}"
        body = json.dumps({"url": "http://127.0.0.1:9", "public_key": b64encode(PEER.public_key)}).encode()
        assert (await call(surface.app, "PUT", path, body, signed("PUT", path, body))).status == 200
    elif surface.name == "federation":
        node = surface.app.state.node
        async with node.db.write() as conn:
            await node_cache.put_node(
                conn, KnownNode(PEER.node_id, "http://127.0.0.1:9", PEER.public_key, False), 0
            )


def signed(method: str, path: str, body: bytes) -> dict[str, str]:
    return {**JSON, **sign_request(PEER, method, path, body, timestamp=int(time.time())).as_dict()}


async def headers_for(surface: Surface, method: str, path: str, body: bytes) -> dict[str, str]:
    """What a legitimate caller sends: a browser's plain JSON, or a known node's signed request."""
    if surface.name not in SIGNED:
        return JSON
    await known_peer(surface)
    return signed(method, path, body)


@pytest.mark.parametrize("name", SURFACES)
async def test_unknown_route_is_404_not_found(surfaces: dict[str, Surface], name: str) -> None:
    surface = surfaces[name]
    assert_error(await call(surface.app, "GET", f"{surface.prefix}/no-such-thing"), 404, "not_found")


@pytest.mark.parametrize("name", SURFACES)
async def test_wrong_method_is_405_and_allow_names_every_method(
    surfaces: dict[str, Surface], name: str
) -> None:
    surface = surfaces[name]
    answer = await call(surface.app, "DELETE", surface.get_only)
    assert_error(answer, 405, "method_not_allowed")
    assert answer.headers["allow"] == "GET"
    path, methods = surface.methods
    answer = await call(surface.app, "PATCH", path)
    assert_error(answer, 405, "method_not_allowed")
    assert answer.headers["allow"].split(", ") == sorted(methods)


@pytest.mark.parametrize("name", SURFACES)
@pytest.mark.parametrize(
    "raw",
    [b'{"username": ', b"not json at all", b"\xff\xfe\x00{", b"[1, 2"],
    ids=["cut", "text", "binary", "array"],
)
async def test_malformed_json_is_422_on_field_body(
    surfaces: dict[str, Surface], name: str, raw: bytes
) -> None:
    surface = surfaces[name]
    method, path = surface.json_route
    headers = await headers_for(surface, method, path, raw)
    error = assert_error(await call(surface.app, method, path, raw, headers), 422, "invalid_request")
    assert error["field"] == "body"


def wrong_body(name: str) -> tuple[bytes, str]:
    """A body of the surface's JSON route with one field wrong, and that field's name."""
    wrong = {
        "local": {"username": "alice", "password": 12345},
        "federation": {
            "v": 1,
            "id": ENVELOPE_ID,
            "sender": "alice",
            "recipient": "bob",
            "sent_at": "yesterday",
            "ciphertext": "",
            "signature": "A" * 86 + "==",
        },
        "directory": {"username": "Not A Name", "password": "pw"},
    }[name]
    expected = {"local": "password", "federation": "sent_at", "directory": "username"}[name]
    return json.dumps(wrong).encode(), expected


@pytest.mark.parametrize("name", SURFACES)
async def test_a_bad_field_is_422_naming_it(surfaces: dict[str, Surface], name: str) -> None:
    surface = surfaces[name]
    method, path = surface.json_route
    body, expected = wrong_body(name)
    answer = await call(surface.app, method, path, body, await headers_for(surface, method, path, body))
    error = assert_error(answer, 422, "invalid_request")
    assert error["field"] == expected
    assert expected in error["message"]


@pytest.mark.parametrize("name", SIGNED)
@pytest.mark.parametrize("kind", ["bad field", "not json", "empty"])
async def test_an_unsigned_body_is_401_and_its_faults_are_not_told(
    surfaces: dict[str, Surface], name: str, kind: str
) -> None:
    """Only a node that signs learns what its body should hold."""
    surface = surfaces[name]
    method, path = surface.json_route
    body, field = wrong_body(name)
    body = {"bad field": body, "not json": b"not json at all", "empty": b""}[kind]
    error = assert_error(await call(surface.app, method, path, body, JSON), 401, "bad_signature")
    assert "field" not in error
    assert field not in error["message"]
    assert "details" not in error


@pytest.mark.parametrize("name", SIGNED)
async def test_a_body_signed_by_a_stranger_is_401_before_it_is_read(
    surfaces: dict[str, Surface], name: str
) -> None:
    surface = surfaces[name]
    method, path = surface.json_route
    body, _field = wrong_body(name)
    stranger = NodeKey.from_seed(bytes(range(64, 96)))
    headers = {**JSON, **sign_request(stranger, method, path, body, timestamp=int(time.time())).as_dict()}
    answer = await call(surface.app, method, path, body, headers)
    if surface.name == "federation":
        # This node's directory is down: it cannot tell whether the stranger exists,
        # so the caller is to try again (a real new peer must not be refused for good).
        assert_error(answer, 503, "directory_unavailable")
    else:
        assert_error(answer, 401, "unknown_node")


@pytest.mark.parametrize("name", SURFACES)
async def test_a_body_over_the_limit_is_413(surfaces: dict[str, Surface], name: str) -> None:
    surface = surfaces[name]
    method, path = surface.json_route
    too_big = json.dumps({"username": "alice", "password": "x" * surface.limit}).encode()
    headers = await headers_for(surface, method, path, too_big)  # signed: so the body is read at all
    announced = await call(surface.app, method, path, too_big, headers)
    assert_error(announced, 413, "payload_too_large")
    # the same bytes streamed without Content-Length are counted as they arrive
    pieces = [too_big[i : i + 1000] for i in range(0, len(too_big), 1000)]
    streamed = await call(
        surface.app, method, path, pieces, await headers_for(surface, method, path, too_big)
    )
    assert_error(streamed, 413, "payload_too_large")


@pytest.mark.parametrize("name", SURFACES)
async def test_a_bug_is_500_internal_error_without_a_trace(surfaces: dict[str, Surface], name: str) -> None:
    surface = surfaces[name]
    answer = await call(surface.app, "POST", f"{surface.prefix}/test-only-bug")
    assert_error(answer, 500, "internal_error")
    assert SECRET not in answer.body.decode()
    assert "RuntimeError" not in answer.body.decode()


async def test_a_flood_of_password_checks_is_429_with_retry_after(surfaces: dict[str, Surface]) -> None:
    surface = surfaces["directory"]
    await known_peer(surface)
    path = "/directory/v1/logins"
    body = json.dumps({"username": "flooded", "password": "a guess"}).encode()
    answers = [
        await call(surface.app, "POST", path, body, signed("POST", path, body)) for _ in range(LOGIN_CHECKS)
    ]
    assert [a.status for a in answers] == [401] * LOGIN_CHECKS  # no such user: wrong credentials
    refused = await call(surface.app, "POST", path, body, signed("POST", path, body))
    assert_error(refused, 429, "rate_limited")
    assert 1 <= int(refused.headers["retry-after"]) <= 60

"""Signed HTTP calls to other nodes and to the directory, over aiohttp.

aiohttp rather than httpx: on this machine a 16-in-flight loop reaches
14.7k req/s with aiohttp against 0.85k with httpx (DESIGN.md), and this
client is on the hot path of every delivery.
"""

from __future__ import annotations

import errno
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from yarl import URL

from flamechat.crypto import NodeKey, parse_json, sign_request
from flamechat.protocol.addresses import refused_address
from flamechat.protocol.versions import (
    BATCH_FEATURE,
    PRESENCE_PUSH_FEATURE,
    PROTOCOL_VERSIONS,
    NoCommonVersion,
    negotiate,
)
from flamechat.services.clock import Clock
from flamechat.services.ports import TransportError

MAX_ANSWER_BYTES = 8 * 1024 * 1024
VERSION_TTL = 300.0  # seconds a peer's versions and features are remembered


# How much of an answer aiohttp buffers before it stops reading the socket.
# Its default (64 KiB) pauses and resumes the socket several times for every
# 1 MiB piece of a blob; see bench/RESULTS.md for what this is worth.
READ_BUFFER = 2 * 1024 * 1024


def guarded_socket(addr_info: tuple[Any, ...]) -> socket.socket:
    """A socket for one address a peer's (or the directory's) name resolved to,
    unless it is one no node can be at (protocol/addresses.py): every attempt,
    whether the URL named an address or a name, passes here."""
    family, kind, proto, _name, address = addr_info
    refusal = refused_address(str(address[0]))
    if refusal is not None:
        raise OSError(errno.EACCES, f"refusing to connect: {refusal}")
    return socket.socket(family=family, type=kind, proto=proto)


class SignedClient:
    """One aiohttp session; every request signed with this node's key."""

    def __init__(
        self, key: NodeKey, clock: Clock, *, timeout: float = 10.0, connect_timeout: float = 3.0
    ) -> None:
        self.key = key
        self.clock = clock
        self.timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=256, limit_per_host=32, socket_factory=guarded_socket)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self.timeout, read_bufsize=READ_BUFFER
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(
        self,
        method: str,
        url: str,
        body: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        status, raw = await self.call_raw(method, url, body, timeout=timeout)
        try:
            answer = parse_json(raw) if raw else {}
        except ValueError:
            answer = {}
        if status >= 400 or not isinstance(answer, dict):
            raise _refusal(method, url, status, answer)
        return answer

    async def call_raw(
        self, method: str, url: str, body: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> tuple[int, bytes]:
        """Signed request; (status, body bytes). Transport failures raise TransportError."""
        await self.start()
        assert self._session is not None
        data = b"" if body is None else json.dumps(body).encode()
        parts = urlsplit(url)
        target = parts.path + ("?" + parts.query if parts.query else "")
        signed = sign_request(self.key, method, target, data, timestamp=int(self.clock.now()))
        headers = signed.as_dict()
        if body is not None:
            headers["Content-Type"] = "application/json"
        # Always a ClientTimeout: aiohttp takes ``timeout=None`` to mean no timeout at all.
        request_timeout = (
            aiohttp.ClientTimeout(total=timeout, sock_connect=self.timeout.sock_connect)
            if timeout
            else self.timeout
        )
        try:
            async with self._session.request(
                method, URL(url, encoded=True), data=data, headers=headers, timeout=request_timeout
            ) as response:
                raw = await response.content.read(MAX_ANSWER_BYTES + 1)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TransportError(f"{method} {url}: {type(exc).__name__} {exc}", transient=True) from exc
        if len(raw) > MAX_ANSWER_BYTES:
            raise TransportError(f"{method} {url}: answer too large", transient=False, status=status)
        return status, raw

    async def stream_into(
        self,
        url: str,
        sink: Callable[[bytes], Awaitable[None]],
        *,
        headers: dict[str, str] | None = None,
        read_timeout: float = 30.0,
        piece: int = 1024 * 1024,
        expect_status: int | None = None,
    ) -> int:
        """Signed GET whose answer is streamed into ``sink`` piece by piece.

        No total timeout (a 2 GB file takes what it takes) but every read must
        make progress within ``read_timeout``. Returns the HTTP status.
        """
        await self.start()
        assert self._session is not None
        parts = urlsplit(url)
        target = parts.path + ("?" + parts.query if parts.query else "")
        signed = sign_request(self.key, "GET", target, b"", timestamp=int(self.clock.now()))
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.timeout.sock_connect, sock_read=read_timeout
        )
        try:
            async with self._session.get(
                URL(url, encoded=True), headers={**signed.as_dict(), **(headers or {})}, timeout=timeout
            ) as response:
                if response.status >= 400:
                    raw = await response.content.read(64 * 1024)
                    try:
                        answer = parse_json(raw) if raw else {}
                    except ValueError:
                        answer = {}
                    raise _refusal("GET", url, response.status, answer)
                if expect_status is not None and response.status != expect_status:
                    raise TransportError(
                        f"GET {url}: answered {response.status}, not {expect_status}", transient=False
                    )
                async for data in response.content.iter_chunked(piece):
                    await sink(data)
                return response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TransportError(f"GET {url}: {type(exc).__name__} {exc}", transient=True) from exc


def _refusal(method: str, url: str, status: int, answer: Any) -> TransportError:
    error = answer.get("error", {}) if isinstance(answer, dict) else {}
    code = error.get("code") if isinstance(error, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return TransportError(
        f"{method} {url}: {status} {message or ''}".strip(),
        transient=status >= 500 or status == 429,
        status=status,
        code=code,
        peer_message=message if isinstance(message, str) else None,
        peer_details=details
        if isinstance(details := error.get("details") if isinstance(error, dict) else None, dict)
        else None,
    )


class HttpDirectory:
    """:class:`~flamechat.services.ports.DirectoryPort` over the directory's HTTP API."""

    def __init__(self, client: SignedClient, base_url: str, *, timeout: float = 5.0) -> None:
        self.client = client
        self.base = base_url.rstrip("/") + "/directory/v1"
        self.timeout = timeout

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.client.call(method, self.base + path, body, timeout=self.timeout)

    async def fetch_key(self) -> dict[str, Any]:
        return await self._call("GET", "/key")

    async def register_node(self, url: str, public_key: str, relay: bool) -> dict[str, Any]:
        body = {"url": url, "public_key": public_key, "relay": relay}
        return await self._call("PUT", f"/nodes/{self.client.key.node_id}", body)

    async def list_nodes(self) -> dict[str, Any]:
        return await self._call("GET", "/nodes")

    async def get_node(self, node_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/nodes/{quote(node_id, safe='')}")

    async def check_login(self, username: str, password: str) -> dict[str, Any]:
        return await self._call("POST", "/logins", {"username": username, "password": password})

    async def publish_keys(self, username: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._call("PUT", f"/users/{quote(username, safe='')}/keys", body)

    async def get_user(self, username: str) -> dict[str, Any]:
        return await self._call("GET", f"/users/{quote(username, safe='')}")

    async def list_users(self) -> dict[str, Any]:
        return await self._call("GET", "/users")

    async def report_presence(self, users: list[dict[str, Any]]) -> None:
        await self._call("PUT", f"/nodes/{self.client.key.node_id}/presence", {"users": users})

    async def set_card(self, username: str, card: dict[str, str]) -> dict[str, Any]:
        return await self._call("PUT", f"/users/{quote(username, safe='')}/card", dict(card))


class HttpPeers:
    """:class:`~flamechat.services.ports.PeerPort` over other nodes' federation API."""

    def __init__(self, client: SignedClient, *, presence_timeout: float = 2.0) -> None:
        self.client = client
        self.presence_timeout = presence_timeout
        self._spoken: dict[str, tuple[float, frozenset[str]]] = {}

    async def features(self, node_url: str) -> frozenset[str]:
        """What a peer speaks (``GET /federation/v1/version``, cached for a few minutes).

        Refuses a peer with no protocol version in common; a peer too old to
        answer is taken to speak version 1 without optional features.
        """
        now = self.client.clock.now()
        cached = self._spoken.get(node_url)
        if cached is not None and now - cached[0] < VERSION_TTL:
            return cached[1]
        try:
            answer = await self.client.call(
                "GET", self._url(node_url, "/version"), timeout=self.presence_timeout
            )
        except TransportError as exc:
            if exc.transient:
                raise
            answer = {"versions": ["1"], "features": []}
        versions = answer.get("versions")
        try:
            negotiate(PROTOCOL_VERSIONS, [str(v) for v in versions] if isinstance(versions, list) else [])
        except NoCommonVersion as exc:
            raise TransportError(
                f"{node_url}: no protocol version in common", transient=False, code="no_common_version"
            ) from exc
        listed = answer.get("features")
        features = frozenset(str(f) for f in listed) if isinstance(listed, list) else frozenset()
        self._spoken[node_url] = (now, features)
        return features

    async def deliver_batch(self, node_url: str, envelopes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if len(envelopes) > 1 and BATCH_FEATURE in await self.features(node_url):
            try:
                answer = await self.client.call(
                    "POST", self._url(node_url, "/envelopes"), {"envelopes": envelopes}
                )
            except TransportError as exc:
                if exc.status != 413:
                    raise
                # the peer takes smaller bodies than we send: one at a time, then
            else:
                results = answer.get("results")
                return [r for r in results if isinstance(r, dict)] if isinstance(results, list) else []
        return await self._one_by_one(node_url, envelopes)

    async def _one_by_one(self, node_url: str, envelopes: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The legacy way: one PUT per envelope, in order, stopping at the first outage."""
        outcomes: list[dict[str, Any]] = []
        for index, envelope in enumerate(envelopes):
            try:
                answer = await self.deliver(node_url, envelope)
            except TransportError as exc:
                if exc.transient:
                    if index == 0:
                        raise  # nothing got through: the node is unreachable
                    outcomes += [
                        {
                            "id": e.get("id"),
                            "status": "refused",
                            "error": {"code": "peer_unavailable", "message": str(exc)},
                        }
                        for e in envelopes[index:]
                    ]
                    return outcomes
                error = {"code": exc.code or "refused", "message": exc.peer_message or str(exc)}
                outcomes.append({"id": envelope.get("id"), "status": "refused", "error": error})
                continue
            outcomes.append({"id": envelope.get("id"), "status": answer.get("status", "stored")})
        return outcomes

    @staticmethod
    def _url(node_url: str, path: str) -> str:
        return f"{node_url.rstrip('/')}/federation/v1{path}"

    async def deliver(self, node_url: str, envelope: dict[str, Any]) -> dict[str, Any]:
        path = f"/envelopes/{quote(str(envelope['id']), safe='')}"
        return await self.client.call("PUT", self._url(node_url, path), envelope)

    async def deposit(self, relay_url: str, recipient_node: str, envelope: dict[str, Any]) -> dict[str, Any]:
        path = f"/relay/envelopes/{quote(str(envelope['id']), safe='')}"
        body = {"recipient_node": recipient_node, "envelope": envelope}
        return await self.client.call("PUT", self._url(relay_url, path), body)

    async def fetch_relayed(self, relay_url: str, limit: int) -> dict[str, Any]:
        return await self.client.call("GET", self._url(relay_url, f"/relay/envelopes?limit={limit}"))

    async def ack_relayed(self, relay_url: str, seqs: list[int]) -> dict[str, Any]:
        return await self.client.call("POST", self._url(relay_url, "/relay/acks"), {"seqs": seqs})

    async def presence(self, node_url: str) -> dict[str, Any]:
        return await self.client.call("GET", self._url(node_url, "/presence"), timeout=self.presence_timeout)

    async def push_presence(self, node_url: str, users: list[dict[str, Any]]) -> None:
        if PRESENCE_PUSH_FEATURE not in await self.features(node_url):
            return  # an older peer learns it at its next poll of the directory
        await self.client.call(
            "PUT", self._url(node_url, "/presence"), {"users": users}, timeout=self.presence_timeout
        )

    async def typing(self, node_url: str, envelope: dict[str, Any]) -> None:
        path = f"/typing/{quote(str(envelope.get('id', '')), safe='')}"
        await self.client.call("PUT", self._url(node_url, path), envelope, timeout=self.presence_timeout)

    async def profile(self, node_url: str, username: str) -> dict[str, Any]:
        path = f"/profiles/{quote(username, safe='')}"
        return await self.client.call("GET", self._url(node_url, path), timeout=self.presence_timeout)

    async def avatar(self, node_url: str, username: str) -> bytes:
        url = self._url(node_url, f"/profiles/{quote(username, safe='')}/avatar")
        status, raw = await self.client.call_raw("GET", url, timeout=self.presence_timeout)
        if status >= 400:
            raise _refusal("GET", url, status, {})
        return raw

    async def fetch_blob(
        self, node_url: str, blob_id: str, offset: int, sink: Callable[[bytes], Awaitable[None]]
    ) -> None:
        url = self._url(node_url, f"/blobs/{quote(blob_id, safe='')}")
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        await self.client.stream_into(url, sink, headers=headers, expect_status=206 if offset else 200)

"""Verify node-signed requests (federation and directory APIs)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from flamechat.crypto import SignatureError, SignedRequestHeaders, verify_request
from flamechat.crypto.errors import MalformedError
from flamechat.crypto.requests import (
    HEADER_NODE,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
)
from flamechat.protocol import errors
from flamechat.protocol.replay import ReplayGuard
from flamechat.services.clock import Clock

KeyLookup = Callable[[str], Awaitable[bytes | None]]
AdmitNode = Callable[[str], Awaitable[None]]


def request_target(request: Request) -> str:
    """The path and query exactly as sent, which is what the caller signed."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    target: str = raw.decode("latin-1")
    query = request.scope.get("query_string", b"")
    return target + ("?" + query.decode("latin-1") if query else "")


class RequestVerifier:
    def __init__(
        self,
        keys: KeyLookup,
        clock: Clock,
        guard: ReplayGuard | None = None,
        *,
        admit: AdmitNode | None = None,
    ) -> None:
        """``admit(node_id)`` runs after a signature verifies and may refuse the
        node (operator block, rate limit) by raising a FlameError."""
        self.keys = keys
        self.clock = clock
        self.guard = guard or ReplayGuard()
        self.admit = admit

    async def verify(self, request: Request, *, public_key: bytes | None = None) -> str:
        """Return the calling node's id, or raise a 401 error. Nothing is stored before."""
        try:
            headers = SignedRequestHeaders.parse(_signature_headers(request))
        except MalformedError as exc:
            raise errors.BadNodeSignature(f"unsigned or malformed signature headers: {exc}") from exc
        now = self.clock.now()
        if not self.guard.fresh(headers.timestamp, now):
            raise errors.ReplayedRequest("request timestamp is outside the allowed window")
        key = public_key if public_key is not None else await self.keys(headers.node_id)
        if key is None:
            raise errors.UnknownNode(f"node {headers.node_id} is not known")
        body = await request.body()
        try:
            verify_request(key, headers, request.method, request_target(request), body)
        except SignatureError as exc:
            raise errors.BadNodeSignature("request signature does not verify") from exc
        if not self.guard.check(f"{headers.node_id}:{headers.nonce}", headers.timestamp, now):
            raise errors.ReplayedRequest("this request was already received")
        if self.admit is not None:
            await self.admit(headers.node_id)
        return headers.node_id


def _signature_headers(request: Request) -> dict[str, str]:
    names = (HEADER_NODE, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP)
    return {name: request.headers[name] for name in names if name in request.headers}

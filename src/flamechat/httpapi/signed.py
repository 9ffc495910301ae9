"""Verify node-signed requests (federation and directory APIs).

The signature is checked over the raw body before the body is parsed: a
caller who cannot sign learns nothing about what the body should hold
(``401``, never a ``422`` naming a field), and no parsing work is done for
it. Routes therefore take no pydantic body parameter (FastAPI would validate
it before the route runs); they call :meth:`RequestVerifier.verify_body` and
describe the body in the OpenAPI document with :func:`json_body`.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from flamechat.crypto import SignatureError, SignedRequestHeaders, parse_json, verify_request
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

M = TypeVar("M", bound=BaseModel)
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

    async def verify_body(
        self, request: Request, model: type[M], *, public_key: bytes | None = None
    ) -> tuple[str, M]:
        """The calling node's id and the body parsed as ``model``: signature first."""
        node_id = await self.verify(request, public_key=public_key)
        return node_id, parse_body(model, await request.body())


def parse_body(model: type[M], raw: bytes) -> M:
    """Parse a JSON body the way FastAPI would, failing with the same ``422`` naming the field."""
    if not raw:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required"}])
    try:
        data = parse_json(raw)
    except ValueError as exc:  # not JSON, not UTF-8, or nested too deeply
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": "JSON decode error"}]
        ) from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = exc.errors(include_url=False, include_context=False, include_input=False)
        raise RequestValidationError([{**p, "loc": ("body", *p["loc"])} for p in problems]) from exc


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` describing a route's JSON body as ``model`` (inlined, self-contained)."""
    schema = model.model_json_schema(mode="validation")
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(copy.deepcopy(definitions[ref.removeprefix("#/$defs/")]))
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inline(schema)}}}}


def _signature_headers(request: Request) -> dict[str, str]:
    names = (HEADER_NODE, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP)
    return {name: request.headers[name] for name in names if name in request.headers}

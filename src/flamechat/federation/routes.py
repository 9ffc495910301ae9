"""The federation API a node offers other nodes, ``/federation/v1``."""

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from flamechat import __version__
from flamechat.httpapi.signed import RequestVerifier, json_body
from flamechat.protocol import errors, models
from flamechat.protocol.ids import USERNAME_PATTERN
from flamechat.protocol.versions import FEATURES, PROTOCOL_VERSIONS
from flamechat.services.presence import PresenceService
from flamechat.services.profiles import ProfileService
from flamechat.services.receiving import ReceivingService
from flamechat.services.relay import RelayService
from flamechat.services.typing import TypingService
from flamechat.storage.records import PresenceEntry

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": models.ErrorBody, "description": "unsigned, badly signed, unknown node or replay"},
    403: {"model": models.ErrorBody, "description": "the envelope's sender signature fails"},
    404: {"model": models.ErrorBody, "description": "the recipient does not live here"},
    413: {"model": models.ErrorBody, "description": "request body over the node's limit"},
    422: {"model": models.ErrorBody, "description": "malformed envelope"},
    429: {"model": models.ErrorBody, "description": "too many requests from this node; see Retry-After"},
    507: {"model": models.ErrorBody, "description": "relay storage for this recipient is full"},
}

# Path ids are checked like the same ids in bodies, before any signature work or lookup (invariant 6).
EnvelopeIdPath = Annotated[
    str, Path(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
]
UserPath = Annotated[str, Path(pattern=USERNAME_PATTERN)]


def federation_router(
    receiving: ReceivingService,
    relay: RelayService,
    presence: PresenceService,
    profiles: ProfileService,
    typing: TypingService,
    verifier: RequestVerifier,
) -> APIRouter:
    router = APIRouter(prefix="/federation/v1", tags=["federation"], responses=ERRORS)

    @router.get("/version", response_model=models.VersionInfo)
    async def version() -> dict[str, Any]:
        return {
            "software": f"flamechat-node/{__version__}",
            "versions": list(PROTOCOL_VERSIONS),
            "features": list(FEATURES),
        }

    # Bodies are parsed only once the signature over their raw bytes holds (httpapi/signed.py).

    @router.put(
        "/envelopes/{envelope_id}",
        response_model=models.EnvelopeAccepted,
        openapi_extra=json_body(models.EnvelopeWire),
    )
    async def put_envelope(envelope_id: EnvelopeIdPath, request: Request) -> dict[str, Any]:
        node_id, envelope = await verifier.verify_body(request, models.EnvelopeWire)
        if envelope.id != envelope_id:
            raise errors.InvalidRequest("the path id and the envelope id differ", field="id")
        status = await receiving.receive(node_id, envelope.model_dump())
        return {"id": envelope_id, "status": status}

    @router.post(
        "/envelopes", response_model=models.EnvelopeBatchResult, openapi_extra=json_body(models.EnvelopeBatch)
    )
    async def post_envelopes(request: Request) -> dict[str, Any]:
        """Several envelopes at once, stored in one transaction; each gets its own outcome."""
        node_id, batch = await verifier.verify_body(request, models.EnvelopeBatch)
        outcomes = await receiving.receive_batch(node_id, [e.model_dump() for e in batch.envelopes])
        return {"results": [o.to_wire() for o in outcomes]}

    @router.put("/typing/{envelope_id}", status_code=204, openapi_extra=json_body(models.EnvelopeWire))
    async def typing_notice(envelope_id: EnvelopeIdPath, request: Request) -> None:
        """One of this node's users is being written to: shown live to them, never stored.
        The same answer whether it was shown or dropped (blocked, stale, signed out)."""
        node_id, envelope = await verifier.verify_body(request, models.EnvelopeWire)
        if envelope.id != envelope_id:
            raise errors.InvalidRequest("the path id and the envelope id differ", field="id")
        await typing.receive(node_id, envelope.model_dump())

    @router.put(
        "/relay/envelopes/{envelope_id}",
        response_model=models.EnvelopeAccepted,
        openapi_extra=json_body(models.RelayDeposit),
    )
    async def deposit(envelope_id: EnvelopeIdPath, request: Request) -> dict[str, Any]:
        node_id, body = await verifier.verify_body(request, models.RelayDeposit)
        if body.envelope.id != envelope_id:
            raise errors.InvalidRequest("the path id and the envelope id differ", field="envelope.id")
        status = await relay.accept(node_id, body.recipient_node, body.envelope.model_dump())
        return {"id": envelope_id, "status": status}

    @router.get("/relay/envelopes", response_model=models.RelayedList)
    async def relayed(request: Request, limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict[str, Any]:
        node_id = await verifier.verify(request)
        items = await relay.pending(node_id, limit)
        return {"envelopes": [{"seq": i.seq, "envelope": json.loads(i.payload)} for i in items]}

    @router.post("/relay/acks", response_model=models.RelayAcked, openapi_extra=json_body(models.RelayAcks))
    async def acknowledge(request: Request) -> dict[str, Any]:
        node_id, body = await verifier.verify_body(request, models.RelayAcks)
        return {"acknowledged": await relay.acknowledge(node_id, body.seqs)}

    @router.get("/presence", response_model=models.PresenceAnswer)
    async def who_is_online(request: Request) -> dict[str, Any]:
        node_id = await verifier.verify(request)
        entries = await presence.for_node(node_id)
        return {
            "users": [
                {
                    "username": e.username,
                    "status": e.status,
                    "status_text": e.status_text,
                    "hidden_from": list(e.hidden_from),
                }
                for e in entries
            ]
        }

    @router.put("/presence", status_code=204, openapi_extra=json_body(models.PresenceReport))
    async def pushed_presence(request: Request) -> None:
        """A peer's users as it shows them to this node, sent when one changes."""
        node_id, body = await verifier.verify_body(request, models.PresenceReport)
        await presence.receive_push(
            node_id,
            [PresenceEntry(u.username, u.status, u.status_text, tuple(u.hidden_from)) for u in body.users],
        )

    @router.get("/profiles/{username}", response_model=models.SignedProfile)
    async def profile(username: UserPath, request: Request) -> dict[str, Any]:
        await verifier.verify(request)
        return await profiles.signed(username)

    @router.get(
        "/profiles/{username}/avatar",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}},
    )
    async def avatar(username: UserPath, request: Request) -> Response:
        await verifier.verify(request)
        return Response(await profiles.hosted_avatar(username), media_type="image/png")

    return router

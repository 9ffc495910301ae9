"""The federation API a node offers other nodes, ``/federation/v1``."""


from typing import Any

from fastapi import APIRouter, Request

from flamechat import __version__
from flamechat.httpapi.signed import RequestVerifier
from flamechat.protocol import errors, models
from flamechat.protocol.versions import FEATURES, PROTOCOL_VERSIONS
from flamechat.services.messaging import MessagingService

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": models.ErrorBody, "description": "unsigned, badly signed, unknown node or replay"},
    403: {"model": models.ErrorBody, "description": "the envelope's sender signature fails"},
    404: {"model": models.ErrorBody, "description": "the recipient does not live here"},
    422: {"model": models.ErrorBody, "description": "malformed envelope"},
}


def federation_router(messaging: MessagingService, verifier: RequestVerifier) -> APIRouter:
    router = APIRouter(prefix="/federation/v1", tags=["federation"], responses=ERRORS)

    @router.get("/version", response_model=models.VersionInfo)
    async def version() -> dict[str, Any]:
        return {
            "software": f"flamechat-node/{__version__}",
            "versions": list(PROTOCOL_VERSIONS),
            "features": list(FEATURES),
        }

    @router.put("/envelopes/{envelope_id}", response_model=models.EnvelopeAccepted)
    async def put_envelope(
        envelope_id: str, envelope: models.EnvelopeWire, request: Request
    ) -> dict[str, Any]:
        node_id = await verifier.verify(request)
        if envelope.id != envelope_id:
            raise errors.InvalidRequest("the path id and the envelope id differ", field="id")
        status = await messaging.receive(node_id, envelope.model_dump())
        return {"id": envelope_id, "status": status}

    return router

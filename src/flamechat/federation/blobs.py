"""The federation API's blob endpoint: a recipient's node fetches a file's ciphertext.

``GET /federation/v1/blobs/{blob_id}`` (signed), with ``Range`` for resuming.
Only the home node of a user the blob was sent to gets it; anyone else
hears 404, so blob ids cannot be probed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import Response, StreamingResponse

from flamechat.httpapi.signed import RequestVerifier
from flamechat.protocol import models
from flamechat.protocol.ranges import parse_range
from flamechat.services.directory_view import DirectoryView
from flamechat.services.files import FileService

PIECE = 1024 * 1024

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": models.ErrorBody, "description": "unsigned, badly signed, unknown node or replay"},
    404: {"model": models.ErrorBody, "description": "no such blob for the calling node"},
    416: {"model": models.ErrorBody, "description": "the range starts past the end"},
}


async def read_range(path: Path, start: int, end: int, rate: int) -> AsyncIterator[bytes]:
    """Bytes ``start..end`` of ``path`` in pieces; at most ``rate`` bytes/s if set."""
    handle = await asyncio.to_thread(path.open, "rb")
    began = time.monotonic()
    sent = 0
    try:
        await asyncio.to_thread(handle.seek, start)
        left = end - start + 1
        while left > 0:
            data = await asyncio.to_thread(handle.read, min(PIECE if not rate else max(rate // 8, 1), left))
            if not data:
                return
            left -= len(data)
            sent += len(data)
            yield data
            if rate:
                ahead = sent / rate - (time.monotonic() - began)
                if ahead > 0:
                    await asyncio.sleep(ahead)
    finally:
        handle.close()


def blobs_router(
    files: FileService, directory: DirectoryView, verifier: RequestVerifier, *, send_rate: int = 0
) -> APIRouter:
    router = APIRouter(prefix="/federation/v1", tags=["federation"], responses=ERRORS)

    async def home_of(username: str) -> str | None:
        return (await directory.resolve(username)).home_node

    @router.get(
        "/blobs/{blob_id}",
        response_class=Response,
        responses={
            200: {"content": {"application/octet-stream": {}}, "description": "the whole blob"},
            206: {"content": {"application/octet-stream": {}}, "description": "the requested range"},
        },
    )
    async def blob(
        blob_id: Annotated[str, PathParam(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the blob")],
        request: Request,
    ) -> Response:
        node_id = await verifier.verify(request)
        path, size = await files.blob_for_node(node_id, blob_id, home_of)
        span = parse_range(request.headers.get("range"), size)
        start, end = span if span is not None else (0, size - 1)
        headers = {
            "Accept-Ranges": "bytes",
            "Content-Length": str(end - start + 1),
            "Cache-Control": "no-store",
        }
        if span is not None:
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        return StreamingResponse(
            read_range(path, start, end, send_rate),
            status_code=206 if span is not None else 200,
            media_type="application/octet-stream",
            headers=headers,
        )

    return router

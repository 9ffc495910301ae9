"""The local API for files: resumable uploads, downloads, thumbnails (``/api/v1``).

Uploads follow the shape of the tus protocol without its library: declare
the file, then ``PATCH`` parts with an ``Upload-Offset`` header; the answer
says how far the node got, so a client that lost its connection asks
(``GET``) and continues from there.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from flamechat.crypto.filestream import CHUNK_SIZE
from flamechat.protocol import errors, models
from flamechat.services.accounts import AccountService, Session
from flamechat.services.files import PART_MAX_BYTES, Download, FileService, UploadState
from flamechat.services.messaging import message_view
from flamechat.web.api import MESSAGE_ID_PATTERN, UserName
from flamechat.web.markup import with_html
from flamechat.web.security import session_dependencies

# Files are never rendered by the app's origin: no script, no plugins, no
# framing, even if a browser were talked into sniffing them.
FILE_CSP = "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; sandbox"
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": models.ErrorBody, "description": "not logged in"},
    403: {"model": models.ErrorBody, "description": "CSRF check failed"},
    404: {"model": models.ErrorBody, "description": "no such upload or file"},
    409: {"model": models.ErrorBody, "description": "wrong offset, or the file has not arrived"},
    413: {"model": models.ErrorBody, "description": "file or part too large"},
    416: {"model": models.ErrorBody, "description": "range not satisfiable"},
    422: {"model": models.ErrorBody, "description": "malformed input, or a stored file failed its checks"},
    507: {"model": models.ErrorBody, "description": "storage quota exceeded"},
}

# Ids in paths are upload and message UUIDs: checked before any lookup (invariant 6).
MessageId = Annotated[str, Path(pattern=MESSAGE_ID_PATTERN)]


def content_disposition(kind: str, name: str) -> str:
    """RFC 6266: an ASCII fallback plus the exact UTF-8 name."""
    fallback = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\;%' else "_" for c in name) or "file"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def file_headers(download: Download) -> dict[str, str]:
    att = download.attachment
    headers = {
        "Content-Disposition": content_disposition(
            "inline" if download.inline else "attachment", download.name
        ),
        "Content-Security-Policy": FILE_CSP,
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Resource-Policy": "same-origin",
        "Cache-Control": "private, max-age=3600",
        "ETag": f'"{att.sha256}"',
        "Accept-Ranges": "bytes",
        "Content-Length": str(download.body.length),
    }
    if download.span is not None:
        start, end = download.span
        headers["Content-Range"] = f"bytes {start}-{end}/{att.size}"
    return headers


class _Cut(Exception):
    """The file failed its check after the headers went out: cut the connection."""


class CuttableStream(StreamingResponse):
    """A streaming response that can end without completing.

    HTTP has no way to take back a 200 already sent, so a download whose
    later bytes fail their check is cut short: returning without the final
    body makes the server close the connection, and the client sees an
    incomplete transfer instead of a file that merely looks shorter.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with contextlib.suppress(_Cut):
            await super().__call__(scope, receive, send)


async def _stream(download: Download, files: FileService) -> AsyncIterator[bytes]:
    try:
        if download.first:
            yield download.first
        while True:
            try:
                batch = await asyncio.to_thread(download.body.next_batch)
            except errors.FileCorrupted as exc:
                await files.repair(download.attachment, exc)
                raise _Cut from exc
            if batch is None:
                return
            yield batch
    finally:
        download.body.close()


def files_router(*, accounts: AccountService, files: FileService, cookie: str) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["files"], responses=ERRORS)
    reading, writing = session_dependencies(accounts, cookie)
    Reader = Annotated[Session, Depends(reading)]
    Writer = Annotated[Session, Depends(writing)]

    async def upload_view(state: UploadState, owner: str) -> dict[str, Any]:
        message = None
        if state.message is not None:
            message = (await files.decorate(owner, [with_html(message_view(state.message))]))[0]
        return {
            "id": state.id,
            "size": state.size,
            "received": state.received,
            "complete": state.complete,
            "part_size": PART_MAX_BYTES,
            "chunk_size": CHUNK_SIZE,
            "message": message,
        }

    @router.post("/conversations/{peer}/uploads", response_model=models.UploadView, status_code=201)
    async def start_upload(peer: UserName, body: models.StartUpload, session: Writer) -> dict[str, Any]:
        state = await files.start_upload(session.username, peer, body.id, body.name, body.size, body.type)
        return await upload_view(state, session.username)

    @router.get("/uploads/{upload_id}", response_model=models.UploadView)
    async def get_upload(upload_id: MessageId, session: Reader) -> dict[str, Any]:
        return await upload_view(await files.upload_state(session.username, upload_id), session.username)

    @router.patch(
        "/uploads/{upload_id}",
        response_model=models.UploadView,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/offset+octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            }
        },
    )
    async def append(
        upload_id: MessageId,
        request: Request,
        session: Writer,
        upload_offset: Annotated[int, Header(ge=0, le=2**53, description="where this part starts")],
    ) -> dict[str, Any]:
        async def body() -> AsyncIterator[bytes]:
            try:
                async for piece in request.stream():
                    if piece:
                        yield piece
            except ClientDisconnect:
                return  # keep the whole chunks that arrived; the client resumes from the offset

        declared = request.headers.get("content-length", "")
        length = int(declared) if declared.isdigit() else None
        state = await files.append(session.username, upload_id, upload_offset, body(), length=length)
        return await upload_view(state, session.username)

    @router.delete("/uploads/{upload_id}", status_code=204)
    async def cancel(upload_id: MessageId, session: Writer) -> None:
        await files.cancel(session.username, upload_id)

    @router.get(
        "/files/{message_id}",
        response_class=Response,
        responses={
            200: {"content": {"application/octet-stream": {}}, "description": "the file, decrypted"},
            206: {"content": {"application/octet-stream": {}}, "description": "a byte range of it"},
        },
    )
    async def download(
        message_id: MessageId,
        request: Request,
        session: Reader,
        inline: Annotated[bool, Query(description="show images, audio and video in the page")] = False,
    ) -> Response:
        got = await files.download(session.username, message_id, request.headers.get("range"), inline=inline)
        return CuttableStream(
            _stream(got, files),
            status_code=206 if got.span is not None else 200,
            media_type=got.content_type,
            headers=file_headers(got),
        )

    @router.get(
        "/files/{message_id}/thumbnail",
        response_class=Response,
        responses={200: {"content": {"image/webp": {}}}},
    )
    async def thumbnail(message_id: MessageId, session: Reader) -> Response:
        data = await files.thumbnail(session.username, message_id)
        return Response(
            data,
            media_type="image/webp",
            headers={
                "Cache-Control": "private, max-age=86400",
                "Content-Security-Policy": FILE_CSP,
                "X-Content-Type-Options": "nosniff",
            },
        )

    return router

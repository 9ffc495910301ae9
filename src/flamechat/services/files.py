"""Files: upload, encrypt, send, accept, and serve them back decrypted.

Sending. The browser declares a file (name, size, type) for a peer and
sends its bytes in parts at increasing offsets (resumable: the node says
how far it got). The node seals each 64 KiB chunk as it arrives under a
fresh file key (:mod:`flamechat.crypto.filestream`) and appends it to a
``.part`` file, fsynced before the part is acknowledged: the plaintext is
never on disk and never whole in memory. When the last chunk is in, the
ciphertext is stored under its SHA-256 and a sealed ``file`` message
carrying the key, the plaintext hash, name, size and type goes through the
ordinary outbox, in the same transaction as the history row, the sender's
attachment and the grant that lets the recipient's node fetch the blob.

Receiving. Opening a ``file`` message stores the message and an attachment
in state ``fetching``; :mod:`flamechat.services.file_fetch` pulls the blob
from the sender's node (resumable by byte range), verifies it, and marks
it ``ready``. Serving decrypts as it streams and refuses altered blobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flamechat.crypto import OpenedEnvelope, b64decode, b64encode
from flamechat.crypto.errors import CryptoError
from flamechat.crypto.filestream import (
    CHUNK_SIZE,
    SEALED_CHUNK_SIZE,
    StreamEncryptor,
    chunk_span,
    ciphertext_size,
    decrypt_chunk,
    new_file_key,
    open_small,
    seal_small,
)
from flamechat.protocol import errors
from flamechat.protocol.ids import is_uuid
from flamechat.protocol.ranges import parse_range
from flamechat.services.blob_reader import DecryptingReader, PlaintextRange
from flamechat.services.clock import Clock, ms
from flamechat.services.media import (
    DOWNLOAD_TYPE,
    MAX_THUMBNAIL_SOURCE,
    SNIFF_BYTES,
    THUMBNAIL_TYPES,
    clean_declared_type,
    make_thumbnail,
    media_kind,
    name_for_type,
    sanitize_filename,
    sniff,
)
from flamechat.services.messaging import AlreadyStored, MessagingService
from flamechat.services.pipeline import ThreadStage
from flamechat.storage import node_files, node_messages
from flamechat.storage.blob_store import BlobStore, check_blob_id
from flamechat.storage.database import Database
from flamechat.storage.records import AttachmentRecord, MessageRecord, UploadRecord

log = logging.getLogger(__name__)

PART_MAX_BYTES = 8 * 1024 * 1024
THUMBNAIL_PURPOSE = b"flame-thumbnail"
FILE_KIND = "file"


@dataclass(frozen=True)
class FileLimits:
    max_file_bytes: int = 2 * 1024**3
    quota_bytes: int = 20 * 1024**3
    upload_ttl: float = 24 * 3600.0


@dataclass(frozen=True)
class UploadState:
    id: str
    size: int
    received: int
    message: MessageRecord | None = None

    @property
    def complete(self) -> bool:
        return self.message is not None


@dataclass(frozen=True)
class Download:
    """What the web layer needs to answer a download."""

    body: PlaintextRange
    first: bytes  # the first batch, read (and so authenticated) before any header goes out
    attachment: AttachmentRecord
    span: tuple[int, int] | None  # the byte range served, None for the whole file
    content_type: str
    inline: bool
    name: str  # the name to offer: the stored one, with an extension that matches ``content_type``


def file_view(att: AttachmentRecord) -> dict[str, Any]:
    """An attachment as the browser sees it (no key, no blob address)."""
    progress = att.size if att.state == "ready" else min(att.size, att.received)
    kind = media_kind(att.sniffed_type) if att.state == "ready" else None
    return {
        "name": att.name,
        "size": att.size,
        "declared_type": att.declared_type,
        "type": att.sniffed_type,
        "media": kind,
        "state": att.state,
        "received": progress,
        "error": att.error,
        "url": f"/api/v1/files/{att.message_id}",
        "thumbnail_url": f"/api/v1/files/{att.message_id}/thumbnail" if att.has_thumbnail else None,
    }


def parse_file_body(body: dict[str, Any], *, max_size: int) -> dict[str, Any]:
    """Check the content of a ``file`` message; raise InvalidRequest if malformed."""
    try:
        name, size, sha, blob = body["name"], body["size"], body["sha256"], body["blob"]
        key = b64decode(body["key"], size=32, what="file key")
        node = body["node"]
        declared = body.get("type", DOWNLOAD_TYPE)
    except (KeyError, TypeError, CryptoError) as exc:
        raise errors.InvalidRequest(f"malformed file message: {exc}") from exc
    if not (isinstance(name, str) and isinstance(node, str) and isinstance(declared, str)):
        raise errors.InvalidRequest("malformed file message")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= max_size:
        raise errors.InvalidRequest("file size out of range")
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        raise errors.InvalidRequest("malformed file hash")
    check_blob_id(blob if isinstance(blob, str) else "")
    return {
        "name": sanitize_filename(name),
        "size": size,
        "sha256": sha,
        "blob": blob,
        "key": key,
        "node": node[:64],
        "type": clean_declared_type(declared),
    }


class _Cancelled(Exception):
    """The upload's row was gone when its finished file was to be sent."""


class FileService:
    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        messaging: MessagingService,
        clock: Clock,
        *,
        node_id: str,
        limits: FileLimits | None = None,
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.messaging = messaging
        self.clock = clock
        self.node_id = node_id
        self.limits = limits or FileLimits()
        self._encryptors: dict[tuple[str, str], StreamEncryptor] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._cancelled: set[tuple[str, str]] = set()  # cancelled while a part was arriving
        self._wake_fetcher: Callable[[], None] = lambda: None

    def on_incoming(self, wake: Callable[[], None]) -> None:
        self._wake_fetcher = wake

    # --- uploads -----------------------------------------------------------------

    async def start_upload(
        self, owner: str, peer: str, upload_id: str, name: str, size: int, declared_type: str
    ) -> UploadState:
        """Declare a file for ``peer``; idempotent for the same id and file."""
        if not is_uuid(upload_id):
            raise errors.InvalidRequest("the upload id is a lower-case UUID", field="id")
        name = sanitize_filename(name)
        declared = clean_declared_type(declared_type)
        async with self.db.read() as conn:
            existing = await node_files.find_upload(conn, owner, upload_id)
            sent = await node_messages.find_message(conn, owner, upload_id)
        if sent is not None:
            if sent.kind != FILE_KIND or sent.peer != peer:
                raise errors.Conflict("this id is already used by another message", field="id")
            return UploadState(upload_id, size, size, sent)
        if existing is not None:
            if (existing.peer, existing.name, existing.size) != (peer, name, size):
                raise errors.Conflict("this upload id is already used for another file", field="id")
            return UploadState(upload_id, existing.size, existing.received)
        if size > self.limits.max_file_bytes:
            raise errors.FileTooLarge(
                f"files are limited to {self.limits.max_file_bytes} bytes on this node",
                field="size",
                limit=self.limits.max_file_bytes,
            )
        await self.messaging.check_may_send(owner, peer)
        await self.messaging.count_file_bytes(owner, size)
        now = ms(self.clock)
        record = UploadRecord(
            owner=owner,
            id=upload_id,
            peer=peer,
            name=name,
            size=size,
            declared_type=declared,
            file_key=new_file_key(),
            received=0,
            expires_at=now + int(self.limits.upload_ttl * 1000),
        )
        async with self.db.write() as conn:
            used = await node_files.bytes_used(conn, owner)
            if used + size > self.limits.quota_bytes:
                raise errors.QuotaExceeded(
                    f"this file would take your storage past its quota of {self.limits.quota_bytes} bytes",
                    field="size",
                    used=used,
                    quota=self.limits.quota_bytes,
                )
            await node_files.create_upload(conn, record, now=now)
        self.blobs.remove(self.blobs.upload_path(owner, upload_id))
        return UploadState(upload_id, size, 0)

    async def upload_state(self, owner: str, upload_id: str) -> UploadState:
        async with self.db.read() as conn:
            upload = await node_files.find_upload(conn, owner, upload_id)
            sent = await node_messages.find_message(conn, owner, upload_id)
        if upload is not None:
            return UploadState(upload_id, upload.size, upload.received)
        if sent is not None and sent.kind == FILE_KIND:
            async with self.db.read() as conn:
                att = await node_files.find_attachment(conn, owner, upload_id)
            size = att.size if att else 0
            return UploadState(upload_id, size, size, sent)
        raise errors.NotFound("no such upload", field="id")

    async def append(
        self,
        owner: str,
        upload_id: str,
        offset: int,
        body: AsyncIterator[bytes],
        *,
        length: int | None = None,
    ) -> UploadState:
        """Seal and store the bytes of ``body`` at ``offset``; finish the file at its end.

        ``length`` is the part's size when the request said it (``Content-Length``):
        a part too large for the bound or for the declared file is refused
        before any of its bytes is stored.
        """
        if length is not None and length > PART_MAX_BYTES:
            raise errors.PayloadTooLarge(f"a part holds at most {PART_MAX_BYTES} bytes")
        key = (owner, upload_id)
        lock = self._locks.setdefault(key, asyncio.Lock())
        if lock.locked():
            raise errors.Conflict("another part of this upload is still arriving", field="id")
        async with lock:
            try:
                return await self._append(owner, upload_id, offset, body, length)
            finally:
                self._locks.pop(key, None)
                if key in self._cancelled:  # cancel() left the .part to us
                    self._cancelled.discard(key)
                    self._encryptors.pop(key, None)
                    await asyncio.to_thread(self.blobs.remove, self.blobs.upload_path(owner, upload_id))

    def _check_not_cancelled(self, owner: str, upload_id: str) -> None:
        if (owner, upload_id) in self._cancelled:
            raise errors.NotFound("this upload was cancelled", field="id")

    async def _append(
        self, owner: str, upload_id: str, offset: int, body: AsyncIterator[bytes], length: int | None
    ) -> UploadState:
        async with self.db.read() as conn:
            upload = await node_files.find_upload(conn, owner, upload_id)
        if upload is None:
            return await self.upload_state(owner, upload_id)  # finished already, or NotFound
        if offset != upload.received:
            raise errors.UploadOffsetMismatch(
                f"this upload continues at byte {upload.received}", field="offset", offset=upload.received
            )
        if length is not None and upload.received + length > upload.size:
            raise errors.InvalidRequest("more bytes than the declared file size", field="size")
        encryptor = await self._encryptor(upload)
        path = self.blobs.upload_path(owner, upload_id)
        handle = BlobStore.open_append(path, at=encryptor.index * SEALED_CHUNK_SIZE)
        written = [encryptor.index * SEALED_CHUNK_SIZE]  # bytes of the .part file, by the writing thread
        received = 0

        def write(sealed: bytes) -> bytes | None:
            handle.write(sealed)
            written[0] += len(sealed)
            return None

        # Sealing (the AEAD and two hashes) and writing run in two threads, one
        # feeding the other, overlapped with each other and with the next bytes
        # arriving: a large upload holds neither the event loop nor one core.
        writer = ThreadStage(write)
        sealer = ThreadStage(encryptor.feed, then=writer)
        try:
            try:
                async for piece in body:
                    self._check_not_cancelled(owner, upload_id)
                    received += len(piece)
                    if received > PART_MAX_BYTES:
                        raise errors.PayloadTooLarge(f"a part holds at most {PART_MAX_BYTES} bytes")
                    if upload.received + received > upload.size:
                        raise errors.InvalidRequest("more bytes than the declared file size", field="size")
                    await sealer.put(piece)
                await sealer.put(b"")  # an empty file is one empty, final chunk
            finally:
                try:
                    await sealer.close()
                finally:
                    await writer.close()
        finally:
            # Whatever whole chunks reached the file are kept (even if the client went
            # away): on disk first, then counted, so the offset never runs ahead of the
            # file. A failed write leaves the encryptor ahead of the file; the next part
            # then rebuilds it from the disk (``_encryptor``).
            await asyncio.to_thread(BlobStore.sync, handle)
            handle.close()
            encryptor.discard_pending()
            kept = whole_chunks_plaintext(written[0], upload.size)
            async with self.db.write() as conn:
                await node_files.set_upload_received(conn, owner, upload_id, kept)
        self._check_not_cancelled(owner, upload_id)
        if not encryptor.done:
            return UploadState(upload_id, upload.size, kept)
        message = await self._finish(upload, encryptor, path)
        return UploadState(upload_id, upload.size, upload.size, message)

    async def _encryptor(self, upload: UploadRecord) -> StreamEncryptor:
        key = (upload.owner, upload.id)
        current = self._encryptors.get(key)
        if current is not None and current.consumed == upload.received:
            return current
        # After a restart: rebuild both hash states from the chunks already on disk.
        path = self.blobs.upload_path(upload.owner, upload.id)
        index = upload.received // CHUNK_SIZE
        try:
            encryptor = await asyncio.to_thread(_rebuild_encryptor, path, upload, index)
        except (OSError, CryptoError, errors.FileCorrupted) as exc:
            log.warning("partial upload %s is damaged (%s); it starts again", upload.id, exc)
            async with self.db.write() as conn:
                await node_files.set_upload_received(conn, upload.owner, upload.id, 0)
            raise errors.UploadOffsetMismatch(
                "the partial upload was lost; start again at byte 0", field="offset", offset=0
            ) from exc
        self._encryptors[key] = encryptor
        return encryptor

    async def _finish(self, upload: UploadRecord, encryptor: StreamEncryptor, part: Path) -> MessageRecord:
        self._encryptors.pop((upload.owner, upload.id), None)
        blob_id = encryptor.blob_hash.hexdigest()
        sha256 = encryptor.plain_hash.hexdigest()
        await asyncio.to_thread(self.blobs.commit, part, blob_id)
        sniffed, thumbnail = await self.inspect(blob_id, upload.file_key, upload.size)
        body = {
            "name": upload.name,
            "size": upload.size,
            "type": upload.declared_type,
            "sha256": sha256,
            "blob": blob_id,
            "key": b64encode(upload.file_key),
            "node": self.node_id,
        }

        async def also(conn: Any, now: int) -> None:
            # Cancelled (or expired) while the blob was being stored: send nothing.
            if await node_files.find_upload(conn, upload.owner, upload.id) is None:
                raise _Cancelled
            await node_files.add_attachment(
                conn,
                owner=upload.owner,
                message_id=upload.id,
                blob_id=blob_id,
                name=upload.name,
                size=upload.size,
                declared_type=upload.declared_type,
                sha256=sha256,
                file_key=upload.file_key,
                source_node=self.node_id,
                state="ready",
                received=upload.size,
                sniffed_type=sniffed,
                now=now,
            )
            if thumbnail is not None:
                await node_files.update_attachment(conn, upload.owner, upload.id, thumbnail=thumbnail)
            await node_files.grant(conn, blob_id, upload.peer, now=now)
            await node_files.delete_upload(conn, upload.owner, upload.id)

        try:
            return await self.messaging.send_sealed(
                upload.owner, upload.peer, upload.id, FILE_KIND, body, upload.name, also=also
            )
        except _Cancelled:
            await asyncio.to_thread(self.blobs.remove, self.blobs.blob_path(blob_id))
            raise errors.NotFound("this upload was cancelled", field="id") from None
        except AlreadyStored:  # finished by an earlier request after all
            async with self.db.read() as conn:
                sent = await node_messages.find_message(conn, upload.owner, upload.id)
            if sent is None or sent.kind != FILE_KIND:
                raise errors.Conflict("this id is already used by another message", field="id") from None
            return sent

    async def inspect(self, blob_id: str, key: bytes, size: int) -> tuple[str | None, bytes | None]:
        """(sniffed type, sealed thumbnail) of a stored blob, read through its decryption."""
        return await asyncio.to_thread(_inspect_blob, self.blobs, blob_id, key, size)

    async def cancel(self, owner: str, upload_id: str) -> None:
        """Forget an upload in progress and its bytes.

        Never waits for a part that is still arriving (its client may be
        stalled): that part's appender sees the cancellation at its next bytes,
        or when it goes to store the finished file, answers ``404`` and
        removes the ``.part`` file itself.
        """
        key = (owner, upload_id)
        async with self.db.write() as conn:
            upload = await node_files.find_upload(conn, owner, upload_id)
            if upload is None:
                raise errors.NotFound("no such upload in progress", field="id")
            await node_files.delete_upload(conn, owner, upload_id)
        self._encryptors.pop(key, None)
        lock = self._locks.get(key)
        if lock is not None and lock.locked():
            self._cancelled.add(key)
            return
        await asyncio.to_thread(self.blobs.remove, self.blobs.upload_path(owner, upload_id))

    async def expire_uploads(self) -> int:
        async with self.db.read() as conn:
            stale = await node_files.expired_uploads(conn, ms(self.clock))
        for upload in stale:
            with contextlib.suppress(errors.NotFound):
                await self.cancel(upload.owner, upload.id)
        return len(stale)

    # --- receiving (the receiving service's KindHandler for "file") ----------------

    def history_text(self, opened: OpenedEnvelope) -> str | None:
        try:
            return str(parse_file_body(opened.body, max_size=2**53)["name"])
        except errors.FlameError as exc:
            log.info("refusing file message %s: %s", opened.id, exc.message)
            return None

    async def stored(self, conn: Any, opened: OpenedEnvelope, now: int) -> None:
        body = parse_file_body(opened.body, max_size=2**53)
        state, error = "fetching", None
        if body["size"] > self.limits.max_file_bytes:
            state, error = "refused", "larger than this node accepts"
        elif await node_files.bytes_used(conn, opened.recipient) + body["size"] > self.limits.quota_bytes:
            state, error = "refused", "your file storage is full"
        await node_files.add_attachment(
            conn,
            owner=opened.recipient,
            message_id=opened.id,
            blob_id=body["blob"],
            name=body["name"],
            size=body["size"],
            declared_type=body["type"],
            sha256=body["sha256"],
            file_key=body["key"],
            source_node=body["node"],
            state=state,
            received=0,
            now=now,
            error=error,
        )

    def after_commit(self, opened: OpenedEnvelope) -> None:
        self._wake_fetcher()

    # --- deleted file messages ------------------------------------------------------------

    async def forget(
        self, conn: Any, owner: str, message_id: str, *, revoke_from: str | None = None
    ) -> str | None:
        """In the caller's transaction: drop a deleted message's attachment (with the
        file's key) and, with ``revoke_from``, that recipient's grant to fetch the blob.
        Returns the blob's id, to :meth:`reclaim` once committed."""
        blob_id = await node_files.forget_attachment(conn, owner, message_id)
        if blob_id is not None and revoke_from is not None:
            await node_files.revoke(conn, blob_id, revoke_from)
        return blob_id

    async def reclaim(self, blob_ids: Iterable[str]) -> int:
        """Remove the blobs (and partial fetches) of these ids that nothing here needs
        any more; looked at again first, so an id whose deletion was rolled back stays."""
        removed = 0
        for blob_id in set(blob_ids):
            async with self.db.read() as conn:
                if await node_files.blob_in_use(conn, blob_id):
                    continue
            for path in (self.blobs.blob_path(blob_id), self.blobs.incoming_path(blob_id)):
                await asyncio.to_thread(self.blobs.remove, path)
            removed += 1
        return removed

    # --- views and serving ------------------------------------------------------------

    async def decorate(self, owner: str, views: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Add ``file`` to the views of file messages."""
        ids = [v["id"] for v in views if v.get("kind") == FILE_KIND]
        if not ids:
            return views
        async with self.db.read() as conn:
            found = await node_files.attachments_for(conn, owner, ids)
        return [{**v, "file": file_view(found[v["id"]])} if v["id"] in found else v for v in views]

    async def attachment(self, owner: str, message_id: str) -> AttachmentRecord:
        async with self.db.read() as conn:
            att = await node_files.find_attachment(conn, owner, message_id)
        if att is None:
            raise errors.NotFound("no such file", field="message_id")
        return att

    async def download(
        self, owner: str, message_id: str, range_header: str | None, *, inline: bool
    ) -> Download:
        att = await self.attachment(owner, message_id)
        if att.state != "ready":
            raise errors.FileNotReady(
                att.error or "the file has not arrived yet", state=att.state, received=att.received
            )
        span = parse_range(range_header, att.size)
        start, end = span if span is not None else (0, max(att.size - 1, 0))
        kind = media_kind(att.sniffed_type)
        shown_inline = inline and kind is not None
        handle = await asyncio.to_thread(self.blobs.open_blob, att.blob_id)
        body = PlaintextRange(handle, att.file_key, att.size, start, end, att.sha256)
        try:
            first = await asyncio.to_thread(body.next_batch) or b""
        except errors.FileCorrupted as exc:
            body.close()
            await self.repair(att, exc)
            raise
        except BaseException:
            body.close()
            raise
        content_type = (att.sniffed_type or DOWNLOAD_TYPE) if shown_inline else DOWNLOAD_TYPE
        return Download(
            body=body,
            first=first,
            attachment=att,
            span=span,
            content_type=content_type,
            inline=shown_inline,
            name=name_for_type(att.name, content_type),
        )

    async def repair(self, att: AttachmentRecord, problem: errors.FileCorrupted) -> None:
        """A stored blob failed its check while being served: throw it away and
        fetch it again from the sender's node (for every recipient here who has it).

        The download that found it is refused or cut; the next one, once the
        fetch worker has brought and checked a good copy, succeeds. A file this
        node sent itself has no other copy, and so fails visibly instead.
        """
        log.error(
            "file %s of %s failed its check at rest (%s): discarded, to be fetched again from %s",
            att.message_id,
            att.owner,
            problem.message,
            "its sender's node" if att.source_node != self.node_id else "nowhere (sent from here)",
        )
        await asyncio.to_thread(self.blobs.remove, self.blobs.blob_path(att.blob_id))
        async with self.db.write() as conn:
            await node_files.refetch_blob(conn, att.blob_id, now=ms(self.clock))
        self._wake_fetcher()

    async def thumbnail(self, owner: str, message_id: str) -> bytes:
        att = await self.attachment(owner, message_id)
        async with self.db.read() as conn:
            sealed = await node_files.thumbnail(conn, owner, message_id)
        if sealed is None or att.state != "ready":
            raise errors.NotFound("this file has no thumbnail", field="message_id")
        try:
            return open_small(att.file_key, THUMBNAIL_PURPOSE, sealed)
        except CryptoError as exc:
            raise errors.FileCorrupted("the stored thumbnail was altered") from exc

    async def blob_for_node(
        self, caller_node: str, blob_id: str, home_of: Callable[[str], Awaitable[str | None]]
    ) -> tuple[Path, int]:
        """Path and size of ``blob_id`` if ``caller_node`` hosts a recipient it was sent to."""
        check_blob_id(blob_id)
        async with self.db.read() as conn:
            recipients = await node_files.grantees(conn, blob_id)
        for recipient in recipients:
            with contextlib.suppress(errors.FlameError):
                if await home_of(recipient) == caller_node:
                    path = self.blobs.blob_path(blob_id)
                    with contextlib.suppress(FileNotFoundError):
                        return path, (await asyncio.to_thread(path.stat)).st_size
        raise errors.NotFound("no such file for your node", field="blob_id")


def _inspect_blob(blobs: BlobStore, blob_id: str, key: bytes, size: int) -> tuple[str | None, bytes | None]:
    """Sniff the type from the first bytes and make a sealed thumbnail of images (blocking)."""
    with blobs.open_blob(blob_id) as handle:
        reader = DecryptingReader(handle, key, size)
        sniffed = sniff(reader.read(SNIFF_BYTES) or b"")
        if sniffed not in THUMBNAIL_TYPES or size > MAX_THUMBNAIL_SOURCE:
            return sniffed, None
        reader.seek(0)
        picture = make_thumbnail(io.BufferedReader(reader))
    return sniffed, None if picture is None else seal_small(key, THUMBNAIL_PURPOSE, picture)


def whole_chunks_plaintext(blob_bytes: int, size: int) -> int:
    """The plaintext bytes of the whole sealed chunks among the first ``blob_bytes``
    of a file of ``size``: what an interrupted upload or download keeps."""
    if blob_bytes >= ciphertext_size(size):
        return size
    return min(size, blob_bytes // SEALED_CHUNK_SIZE * CHUNK_SIZE)


def _rebuild_encryptor(path: Path, upload: UploadRecord, index: int) -> StreamEncryptor:
    """Re-hash the chunks already sealed (blocking; after a node restart)."""
    plain_hash, blob_hash = hashlib.sha256(), hashlib.sha256()
    with open(path, "rb") if index else contextlib.nullcontext() as handle:
        for i in range(index):
            offset, length, last = chunk_span(i, upload.size)
            assert handle is not None
            handle.seek(offset)
            sealed = handle.read(length)
            if len(sealed) != length:
                raise errors.FileCorrupted("the partial upload on disk is shorter than recorded")
            blob_hash.update(sealed)
            plain_hash.update(decrypt_chunk(upload.file_key, i, sealed, last=last))
    return StreamEncryptor(
        upload.file_key, upload.size, start_index=index, plain_hash=plain_hash, blob_hash=blob_hash
    )

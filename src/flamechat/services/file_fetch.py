"""The fetch worker: bring received files' blobs here from the sender's node.

Rules:
* A received file message leaves an attachment in state ``fetching``. The
  worker asks the sender's node (``GET /federation/v1/blobs/{id}``) for the
  bytes it does not have yet (``Range: bytes=<have>-``), so an interrupted
  transfer, or a restart of either node, continues where it stopped.
* Every byte is checked as it arrives: the SHA-256 of the blob must equal
  its address, every chunk must authenticate under the file key, and the
  plaintext's SHA-256 must equal the hash the sender signed. Checking and
  writing run in two threads side by side, so the ``.part`` file may hold
  bytes not yet checked; it becomes the blob only after every check passed,
  a resumed transfer checks it again from its first byte, and a blob that
  fails is thrown away and never served.
* A resumed transfer keeps only the whole chunks already on disk that
  authenticate, and fetches again from the first one that does not (a torn
  or garbage tail after a crash or a power cut costs a re-fetch, not the file).
* Transient failures (sender's node down, timeouts) retry with backoff, as
  the outbox does; refusals and expiry fail the file visibly.
* At most ``concurrency`` fetches run at once; progress reaches the
  recipient's open pages as ``file`` events, at most every ``progress_every``
  seconds per file.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import random
from collections.abc import Callable
from typing import Any, BinaryIO

from flamechat.crypto.errors import CryptoError
from flamechat.crypto.filestream import (
    SEALED_CHUNK_SIZE,
    StreamDecryptor,
    chunk_count,
    chunk_span,
    ciphertext_size,
)
from flamechat.protocol import errors
from flamechat.services.clock import Clock, ms
from flamechat.services.delivery import backoff_delay
from flamechat.services.directory_view import DirectoryView
from flamechat.services.events import EventHub
from flamechat.services.files import FileService, file_view, whole_chunks_plaintext
from flamechat.services.keyed_locks import KeyedLocks
from flamechat.services.pipeline import ThreadStage
from flamechat.services.ports import PeerPort, TransportError
from flamechat.services.worker import Worker
from flamechat.storage import node_files, node_messages
from flamechat.storage.blob_store import BlobStore
from flamechat.storage.database import Database
from flamechat.storage.records import AttachmentRecord

log = logging.getLogger(__name__)

READ_SIZE = 1024 * 1024


class TransferCheck:
    """Hashes and decrypts a blob as it arrives (nothing is kept)."""

    def __init__(self, key: bytes, size: int) -> None:
        self.blob_hash = hashlib.sha256()
        self.decryptor = StreamDecryptor(key, size)

    def feed(self, data: bytes) -> None:
        self.decryptor.feed(data, keep=False)  # first: bytes that fail are not hashed
        self.blob_hash.update(data)

    def finish(self, blob_id: str, sha256: str) -> None:
        if self.blob_hash.hexdigest() != blob_id:
            raise errors.FileCorrupted("the blob does not match its address")
        if self.decryptor.finish() != sha256:
            raise errors.FileCorrupted("the file does not match the hash its sender signed")


def _check_existing(path: Any, key: bytes, size: int, length: int) -> TransferCheck:
    """Feed the first ``length`` bytes already on disk to a new check (blocking)."""
    check = TransferCheck(key, size)
    with open(path, "rb") as handle:
        left = length
        while left:
            data = handle.read(min(READ_SIZE, left))
            if not data:
                break
            check.feed(data)
            left -= len(data)
    return check


def _resume_point(path: Any, key: bytes, size: int, length: int) -> tuple[TransferCheck, int]:
    """Check the whole chunks among the first ``length`` bytes of a ``.part`` file
    (blocking): the check fed with those that authenticate, up to the first that
    does not, and how many bytes they make. The rest is to be fetched again."""
    check = TransferCheck(key, size)
    good = 0
    with open(path, "rb") as handle:
        for index in range(chunk_count(size)):
            _, sealed_length, _ = chunk_span(index, size)
            if good + sealed_length > length:
                break
            sealed = handle.read(sealed_length)
            if len(sealed) != sealed_length:
                break
            try:
                check.feed(sealed)
            except CryptoError:
                break
            good += sealed_length
    return check, good


class _Fatal(Exception):
    """The file cannot arrive: fail it visibly."""


class FetchWorker(Worker):
    """One task per attachment in flight (the keys are (owner, message id))."""

    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        files: FileService,
        directory: DirectoryView,
        peers: PeerPort,
        events: EventHub,
        clock: Clock,
        *,
        node_id: str,
        concurrency: int = 4,
        base_delay: float = 0.5,
        max_delay: float = 300.0,
        ttl: float = 7 * 24 * 3600.0,
        progress_every: float = 0.5,
        rng: Callable[[], float] = random.random,
    ) -> None:
        super().__init__()
        self.db = db
        self.blobs = blobs
        self.files = files
        self.directory = directory
        self.peers = peers
        self.events = events
        self.clock = clock
        self.node_id = node_id
        self.concurrency = concurrency
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.ttl = ttl
        self.progress_every = progress_every
        self.rng = rng
        self._blob_locks = KeyedLocks()  # by blob id, which peers choose: never one per id ever seen

    async def dispatch(self) -> int:
        free = self.concurrency - self.running
        if free <= 0:
            return 0
        async with self.db.read() as conn:
            due = await node_files.due_fetches(conn, ms(self.clock), limit=free + self.running)
        started = 0
        for att in due:
            key = (att.owner, att.message_id)
            if self.in_flight(key) or started >= free:
                continue
            self.start(key, self._fetch(att))
            started += 1
        return started

    async def _fetch(self, att: AttachmentRecord) -> None:
        peer = await self._peer_of(att)
        try:
            # Two recipients on this node share one blob: one transfer at a time.
            async with self._blob_locks.hold(att.blob_id):
                if not self.blobs.has(att.blob_id):
                    await self._transfer(att, peer)
                else:
                    await asyncio.to_thread(self._verify_stored, att)
        except TransportError as exc:
            if not exc.transient:
                await self._fail(att, peer, f"refused by the sender's node: {exc.code or exc}")
            else:
                await self._retry(att, str(exc))
            return
        except errors.FileCorrupted as exc:
            await self._fail(att, peer, exc.message)
            return
        except (_Fatal, CryptoError) as exc:
            await self._fail(att, peer, str(exc))
            return
        except (errors.DirectoryUnavailable, errors.ServiceUnavailable) as exc:
            await self._retry(att, exc.message)
            return
        sniffed, thumbnail = await self.files.inspect(att.blob_id, att.file_key, att.size)
        async with self.db.write() as conn:
            await node_files.update_attachment(
                conn,
                att.owner,
                att.message_id,
                state="ready",
                received=att.size,
                sniffed_type=sniffed,
                thumbnail=thumbnail,
                error=None,
                updated_at=ms(self.clock),
            )
            done = await node_files.find_attachment(conn, att.owner, att.message_id)
        if done is not None:
            self._publish(done, peer)

    async def _peer_of(self, att: AttachmentRecord) -> str | None:
        async with self.db.read() as conn:
            message = await node_messages.find_message(conn, att.owner, att.message_id)
        return None if message is None else message.peer

    def _verify_stored(self, att: AttachmentRecord) -> None:
        """A blob already here (same-node sender, or a second recipient): check it is this file."""
        path = self.blobs.blob_path(att.blob_id)
        check = _check_existing(path, att.file_key, att.size, path.stat().st_size)
        check.finish(att.blob_id, att.sha256)

    async def _transfer(self, att: AttachmentRecord, peer: str | None) -> None:
        if att.source_node == self.node_id:
            raise _Fatal("the file's data is no longer on this node")
        if (ms(self.clock) - att.created_at) / 1000 > self.ttl:
            raise _Fatal("expired: the sender's node could not be reached in time")
        node = await self.directory.node(att.source_node)
        if node is None:
            raise TransportError("the sender's node is not known yet", transient=True)
        part = self.blobs.incoming_path(att.blob_id)
        expected = ciphertext_size(att.size)
        on_disk = BlobStore.length(part)
        check, have = TransferCheck(att.file_key, att.size), 0
        if on_disk:
            check, have = await asyncio.to_thread(_resume_point, part, att.file_key, att.size, on_disk)
            if have + SEALED_CHUNK_SIZE <= min(on_disk, expected):  # more than a torn last chunk
                log.warning(
                    "partial download of file %s is damaged after byte %d of %d; fetching again from there",
                    att.message_id,
                    have,
                    on_disk,
                )
        handle = BlobStore.open_append(part, at=have)
        last_report = 0.0
        started_with = have
        queued = have  # bytes taken from the network
        checked = [have]  # bytes checked by the checking stage's thread
        written = [have]  # bytes written by the writing stage's thread

        def check_piece(data: bytes) -> None:
            try:
                check.feed(data)
            except CryptoError as exc:
                raise errors.FileCorrupted("the blob was altered in transit") from exc
            checked[0] += len(data)

        def write_piece(data: bytes) -> None:
            handle.write(data)
            written[0] += len(data)

        # Checking (CPU) and writing (the disk) take about as long each: in two
        # threads they overlap instead of adding up. Unchecked bytes may reach
        # the .part file, which is only ever served after a full check and is
        # checked again from the start when a transfer resumes.
        stages = (ThreadStage(check_piece), ThreadStage(write_piece))

        def done() -> int:
            return min(checked[0], written[0])

        async def sink(data: bytes) -> None:
            nonlocal queued, last_report
            if queued + len(data) > expected:
                raise errors.FileCorrupted("the sender's node sent more bytes than the file holds")
            queued += len(data)
            for stage in stages:
                await stage.put(data)
            now = self.clock.now()
            if now - last_report >= self.progress_every:
                last_report = now
                progress = _plain_progress(done(), att.size)
                self._publish(dataclasses.replace(att, received=progress), peer)
                async with self.db.write() as conn:  # so a reloaded page shows it too
                    await node_files.update_attachment(conn, att.owner, att.message_id, received=progress)

        try:
            try:
                if queued < expected:
                    await self.peers.fetch_blob(node.url, att.blob_id, queued, sink)
            finally:
                # What arrived is checked and on disk before we go on; a check
                # that failed is the error to report, whatever else went wrong.
                closed = await asyncio.gather(*(stage.close() for stage in stages), return_exceptions=True)
                for outcome in closed:
                    if isinstance(outcome, BaseException):
                        raise outcome
        except errors.FileCorrupted:
            await asyncio.gather(*(stage.abort() for stage in stages))
            handle.close()
            self.blobs.remove(part)  # never keep, never serve, bytes that failed
            raise
        finally:
            have = done()
            if not handle.closed:
                await asyncio.to_thread(_sync_close, handle)
            if have != started_with:
                async with self.db.write() as conn:
                    await node_files.update_attachment(
                        conn, att.owner, att.message_id, received=_plain_progress(have, att.size)
                    )
        if have < expected:
            raise TransportError("the transfer stopped before the end", transient=True)
        try:
            check.finish(att.blob_id, att.sha256)
        except errors.FileCorrupted:
            self.blobs.remove(part)
            raise
        await asyncio.to_thread(self.blobs.commit, part, att.blob_id)

    async def _retry(self, att: AttachmentRecord, error: str) -> None:
        attempts = att.attempts + 1
        delay = backoff_delay(attempts, base=self.base_delay, cap=self.max_delay, rng=self.rng)
        log.info("fetching file %s failed (%s); retry in %.1fs", att.message_id, error, delay)
        async with self.db.write() as conn:
            await node_files.update_attachment(
                conn,
                att.owner,
                att.message_id,
                attempts=attempts,
                next_attempt_at=ms(self.clock) + int(delay * 1000),
                error=None,
            )

    async def _fail(self, att: AttachmentRecord, peer: str | None, error: str) -> None:
        log.warning("giving up on file %s: %s", att.message_id, error)
        async with self.db.write() as conn:
            await node_files.update_attachment(
                conn, att.owner, att.message_id, state="failed", error=error[:500], updated_at=ms(self.clock)
            )
            failed = await node_files.find_attachment(conn, att.owner, att.message_id)
        if failed is not None:
            self._publish(failed, peer)

    def _publish(self, att: AttachmentRecord, peer: str | None) -> None:
        self.events.publish(
            att.owner,
            {"type": "file", "id": att.message_id, "conversation": peer, "file": file_view(att)},
        )


def _plain_progress(blob_bytes: int, size: int) -> int:
    """Progress in whole chunks: what a resumed transfer keeps, so it never goes back."""
    return whole_chunks_plaintext(blob_bytes, size)


def _sync_close(handle: BinaryIO) -> None:
    BlobStore.sync(handle)
    handle.close()

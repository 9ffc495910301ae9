"""Reading plaintext out of an encrypted blob, chunk by chunk, never whole.

Blocking code (file reads + libsodium, which releases the GIL): callers on
the event loop run it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import hashlib
import io
from typing import BinaryIO

from flamechat.crypto.errors import CryptoError
from flamechat.crypto.filestream import (
    CHUNK_SIZE,
    chunk_span,
    chunks_for_range,
    decrypt_chunk,
)
from flamechat.protocol import errors

BATCH_CHUNKS = 16  # 1 MiB of plaintext per thread hop


def read_chunk(handle: BinaryIO, key: bytes, index: int, plain_size: int) -> bytes:
    """Decrypt chunk ``index``; FileCorrupted if it is missing or was altered."""
    offset, length, last = chunk_span(index, plain_size)
    handle.seek(offset)
    sealed = handle.read(length)
    if len(sealed) != length:
        raise errors.FileCorrupted("the stored file is truncated")
    try:
        return decrypt_chunk(key, index, sealed, last=last)
    except CryptoError as exc:
        raise errors.FileCorrupted("the stored file was altered; it will not be served") from exc


class PlaintextRange:
    """Plaintext bytes ``start..end`` (inclusive) of a blob, in batches.

    When the range is the whole file, the SHA-256 of everything read is
    compared with ``sha256`` before the final batch is handed out, so a blob
    that authenticates chunk by chunk but is not the file that was sent (a
    swapped key and blob) is never served whole.
    """

    def __init__(
        self, handle: BinaryIO, key: bytes, plain_size: int, start: int, end: int, sha256: str | None
    ) -> None:
        self.handle = handle
        self.key = key
        self.plain_size = plain_size
        self.start = start
        self.end = end
        self.whole = start == 0 and end >= plain_size - 1
        self.sha256 = sha256 if self.whole else None
        self._indices = list(chunks_for_range(start, end, plain_size)) if plain_size else [0]
        self._position = 0
        self._hash = hashlib.sha256()

    @property
    def length(self) -> int:
        return 0 if self.plain_size == 0 else self.end - self.start + 1

    def next_batch(self) -> bytes | None:
        """The next batch of plaintext, or ``None`` when done (blocking)."""
        if self._position >= len(self._indices):
            return None
        batch = self._indices[self._position : self._position + BATCH_CHUNKS]
        self._position += len(batch)
        out = bytearray()
        for index in batch:
            plain = read_chunk(self.handle, self.key, index, self.plain_size)
            self._hash.update(plain)
            lo = max(self.start - index * CHUNK_SIZE, 0)
            hi = min(self.end - index * CHUNK_SIZE + 1, len(plain))
            out += plain[lo:hi]
        finished = self._position >= len(self._indices)
        if finished and self.sha256 is not None and self._hash.hexdigest() != self.sha256:
            raise errors.FileCorrupted("the stored file does not match the hash its sender signed")
        return bytes(out)

    def close(self) -> None:
        self.handle.close()


class DecryptingReader(io.RawIOBase):
    """A seekable, read-only file of the plaintext (for Pillow and sniffing)."""

    def __init__(self, handle: BinaryIO, key: bytes, plain_size: int) -> None:
        super().__init__()
        self.handle = handle
        self.key = key
        self.plain_size = plain_size
        self._pos = 0
        self._cached: tuple[int, bytes] | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.plain_size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def _chunk(self, index: int) -> bytes:
        if self._cached is None or self._cached[0] != index:
            self._cached = (index, read_chunk(self.handle, self.key, index, self.plain_size))
        return self._cached[1]

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._pos >= self.plain_size:
            return 0
        index, skip = divmod(self._pos, CHUNK_SIZE)
        piece = self._chunk(index)[skip : skip + len(buffer)]
        buffer[: len(piece)] = piece
        self._pos += len(piece)
        return len(piece)

"""Encrypted blobs on disk, addressed by the SHA-256 of their bytes.

Layout under the node's data folder::

    blobs/<first two hex digits>/<sha256 hex>   complete, verified blobs
    blobs/uploads/<owner>.<upload id>.part      uploads in progress
    blobs/incoming/<sha256 hex>.part            blobs being fetched from a peer

A ``.part`` file only ever grows by whole appends that are fsynced before
the node answers, so its length is how far a transfer got; a blob becomes
visible by an atomic rename once complete. Blobs are ciphertext: nothing
here can read them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import BinaryIO

from flamechat.protocol import errors

_BLOB_ID = re.compile(r"[0-9a-f]{64}")  # fullmatch: "$" would let a final newline through
_SAFE = re.compile(r"[A-Za-z0-9_.-]{1,80}")


def check_blob_id(blob_id: str) -> str:
    if not (isinstance(blob_id, str) and _BLOB_ID.fullmatch(blob_id)):
        raise errors.InvalidRequest("a blob id is 64 lower-case hex digits", field="blob_id")
    return blob_id


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("uploads", "incoming"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    def blob_path(self, blob_id: str) -> Path:
        check_blob_id(blob_id)
        return self.root / blob_id[:2] / blob_id

    def has(self, blob_id: str) -> bool:
        return self.blob_path(blob_id).is_file()

    def upload_path(self, owner: str, upload_id: str) -> Path:
        if not (_SAFE.fullmatch(owner) and _SAFE.fullmatch(upload_id)):
            raise errors.InvalidRequest("bad upload id", field="id")
        return self.root / "uploads" / f"{owner}.{upload_id}.part"

    def incoming_path(self, blob_id: str) -> Path:
        return self.root / "incoming" / f"{check_blob_id(blob_id)}.part"

    @staticmethod
    def length(path: Path) -> int:
        try:
            return path.stat().st_size
        except FileNotFoundError:
            return 0

    @staticmethod
    def open_append(path: Path, *, at: int) -> BinaryIO:
        """Open ``path`` for appending after its first ``at`` bytes (a torn tail is cut)."""
        handle = path.open("ab")
        handle.truncate(at)
        handle.seek(at)
        return handle

    @staticmethod
    def sync(handle: BinaryIO) -> None:
        handle.flush()
        os.fsync(handle.fileno())

    def commit(self, part: Path, blob_id: str) -> Path:
        """Move a finished ``.part`` file into place under its hash (atomic)."""
        target = self.blob_path(blob_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            part.unlink(missing_ok=True)  # the same bytes are already here
        else:
            os.replace(part, target)
        _sync_dir(target.parent)
        return target

    @staticmethod
    def remove(path: Path) -> None:
        path.unlink(missing_ok=True)

    def open_blob(self, blob_id: str) -> BinaryIO:
        try:
            return self.blob_path(blob_id).open("rb")
        except FileNotFoundError as exc:
            raise errors.NotFound("the file's data is not on this node", field="blob_id") from exc


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""Resuming a download from a damaged ``.part`` file (services/file_fetch.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from flamechat.crypto import b64encode
from flamechat.crypto.filestream import (
    CHUNK_SIZE,
    SEALED_CHUNK_SIZE,
    ciphertext_size,
    encrypt_bytes,
    new_file_key,
)
from flamechat.protocol import errors
from flamechat.services.file_fetch import TransferCheck, _plain_progress, _resume_point
from flamechat.services.files import parse_file_body
from flamechat.storage.blob_store import check_blob_id

SIZE = 5 * CHUNK_SIZE + 1234
FILE_BODY = {
    "name": "a.txt",
    "size": 3,
    "type": "text/plain",
    "sha256": "b" * 64,
    "blob": "c" * 64,
    "key": b64encode(bytes(32)),
    "node": "n" + "a" * 24,
}


def _blob() -> tuple[bytes, bytes, bytes]:
    key = new_file_key()
    plain = bytes(range(256)) * (SIZE // 256) + b"x" * (SIZE % 256)
    return key, plain, encrypt_bytes(key, plain)


def _resume(tmp_path: Path, key: bytes, on_disk: bytes) -> tuple[TransferCheck, int]:
    part = tmp_path / "blob.part"
    part.write_bytes(on_disk)
    return _resume_point(part, key, SIZE, len(on_disk))


def _finishes(check: TransferCheck, blob: bytes, have: int, plain: bytes) -> None:
    """The check handed back, fed the rest of the real blob, accepts the whole file."""
    check.feed(blob[have:])
    check.finish(hashlib.sha256(blob).hexdigest(), hashlib.sha256(plain).hexdigest())


def test_a_garbage_tail_is_cut_back_to_the_last_chunk_that_authenticates(tmp_path: Path) -> None:
    key, plain, blob = _blob()
    # Three good chunks, then what a power cut can leave: zeros where a chunk was being written.
    damaged = blob[: 3 * SEALED_CHUNK_SIZE] + bytes(SEALED_CHUNK_SIZE + 5000)
    check, have = _resume(tmp_path, key, damaged)
    assert have == 3 * SEALED_CHUNK_SIZE
    _finishes(check, blob, have, plain)


def test_a_chunk_altered_in_the_middle_keeps_only_the_chunks_before_it(tmp_path: Path) -> None:
    key, plain, blob = _blob()
    altered = bytearray(blob)
    altered[2 * SEALED_CHUNK_SIZE + 10] ^= 0x40
    check, have = _resume(tmp_path, key, bytes(altered))
    assert have == 2 * SEALED_CHUNK_SIZE
    _finishes(check, blob, have, plain)


def test_a_torn_partial_chunk_is_fetched_again_and_whole_good_chunks_are_kept(tmp_path: Path) -> None:
    key, plain, blob = _blob()
    check, have = _resume(tmp_path, key, blob[: 4 * SEALED_CHUNK_SIZE + 777])
    assert have == 4 * SEALED_CHUNK_SIZE
    _finishes(check, blob, have, plain)
    check, have = _resume(tmp_path, key, blob)  # all there: nothing to fetch
    assert have == len(blob)
    _finishes(check, blob, have, plain)


def test_progress_counts_whole_chunks_so_it_never_goes_back_on_resume() -> None:
    total = ciphertext_size(SIZE)
    assert _plain_progress(0, SIZE) == 0
    assert _plain_progress(SEALED_CHUNK_SIZE - 1, SIZE) == 0
    assert _plain_progress(2 * SEALED_CHUNK_SIZE + 777, SIZE) == 2 * CHUNK_SIZE
    assert _plain_progress(total - 1, SIZE) == 5 * CHUNK_SIZE
    assert _plain_progress(total, SIZE) == SIZE
    assert _plain_progress(ciphertext_size(0), 0) == 0


@pytest.mark.parametrize("blob_id", ["a" * 64 + "\n", "A" * 64, "a" * 63, "../" + "a" * 61, "a" * 65])
def test_only_64_lower_case_hex_digits_are_a_blob_id(blob_id: str) -> None:
    # A sender's file message names the blob: Python's "$" matched before a final newline.
    with pytest.raises(errors.InvalidRequest):
        check_blob_id(blob_id)
    with pytest.raises(errors.InvalidRequest):
        parse_file_body({**FILE_BODY, "blob": blob_id}, max_size=2**40)
    assert parse_file_body(FILE_BODY, max_size=2**40)["blob"] == FILE_BODY["blob"]

"""The file stream construction (crypto/filestream.py): round trips however the bytes
are cut, and refusal of every alteration a relay, a peer or a disk could make."""

from __future__ import annotations

import hashlib
import itertools
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flamechat.crypto.errors import CryptoError, MalformedError, UndecryptableError
from flamechat.crypto.filestream import (
    CHUNK_SIZE,
    SEALED_CHUNK_SIZE,
    TAG_SIZE,
    StreamDecryptor,
    StreamEncryptor,
    chunk_count,
    chunk_span,
    ciphertext_size,
    decrypt_bytes,
    decrypt_chunk,
    derive_key,
    encrypt_bytes,
    new_file_key,
    open_small,
    plaintext_size,
    seal_small,
)
from tests.unit.support import PROPERTY, SLOW_PROPERTY, seed

KEY = seed("file-key")
BOUNDARY_SIZES = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE, 3 * CHUNK_SIZE + 7]


def feed_in_cuts(feeder: StreamEncryptor | StreamDecryptor, data: bytes, cuts: list[int]) -> bytes:
    out = []
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for start, end in itertools.pairwise(points):
        out.append(feeder.feed(data[start:end]))
    out.append(feeder.feed(b""))
    return b"".join(out)


@pytest.mark.parametrize("size", BOUNDARY_SIZES)
def test_sizes_at_chunk_boundaries_round_trip(size: int) -> None:
    data = os.urandom(size)
    blob = encrypt_bytes(KEY, data)
    assert len(blob) == ciphertext_size(size) == size + TAG_SIZE * chunk_count(size)
    assert plaintext_size(len(blob)) == size
    assert decrypt_bytes(KEY, blob, size) == data


@SLOW_PROPERTY
@given(
    size=st.integers(0, 4 * CHUNK_SIZE + 3),
    enc_cuts=st.lists(st.integers(0, 10**6), max_size=8),
    dec_cuts=st.lists(st.integers(0, 10**6), max_size=8),
)
def test_any_way_of_cutting_the_bytes_gives_the_same_blob_and_file(
    size: int, enc_cuts: list[int], dec_cuts: list[int]
) -> None:
    data = hashlib.shake_256(str(size).encode()).digest(size) if size else b""
    encryptor = StreamEncryptor(KEY, size)
    blob = feed_in_cuts(encryptor, data, enc_cuts)
    assert encryptor.done
    assert blob == encrypt_bytes(KEY, data)  # deterministic for a key: the nonces are positions
    assert encryptor.blob_hash.hexdigest() == hashlib.sha256(blob).hexdigest()
    assert encryptor.plain_hash.hexdigest() == hashlib.sha256(data).hexdigest()
    decryptor = StreamDecryptor(KEY, size)
    assert feed_in_cuts(decryptor, blob, dec_cuts) == data
    assert decryptor.finish() == hashlib.sha256(data).hexdigest()


def test_resuming_an_encryptor_gives_the_blob_of_one_pass() -> None:
    data = os.urandom(3 * CHUNK_SIZE + 100)
    first = StreamEncryptor(KEY, len(data))
    head = first.feed(data[: 2 * CHUNK_SIZE + 10])
    first.discard_pending()  # the part ended inside a chunk: those bytes are sent again
    assert first.consumed == 2 * CHUNK_SIZE
    resumed = StreamEncryptor(
        KEY, len(data), start_index=first.index, plain_hash=first.plain_hash, blob_hash=first.blob_hash
    )
    tail = resumed.feed(data[2 * CHUNK_SIZE :])
    assert head + tail == encrypt_bytes(KEY, data)
    assert resumed.blob_hash.hexdigest() == hashlib.sha256(head + tail).hexdigest()


def test_more_bytes_than_declared_are_refused() -> None:
    encryptor = StreamEncryptor(KEY, 10)
    with pytest.raises(MalformedError):
        encryptor.feed(b"x" * 11)


BLOB_SIZE = 3 * CHUNK_SIZE + 500
DATA = os.urandom(BLOB_SIZE)
BLOB = encrypt_bytes(KEY, DATA)


@PROPERTY
@given(position=st.integers(0, len(BLOB) - 1), flip=st.integers(1, 255))
def test_any_altered_byte_is_refused(position: int, flip: int) -> None:
    altered = bytearray(BLOB)
    altered[position] ^= flip
    with pytest.raises(UndecryptableError):
        decrypt_bytes(KEY, bytes(altered), BLOB_SIZE)


def test_reordered_truncated_or_extended_blobs_are_refused() -> None:
    chunks = [BLOB[i : i + SEALED_CHUNK_SIZE] for i in range(0, len(BLOB), SEALED_CHUNK_SIZE)]
    swapped = chunks[1] + chunks[0] + b"".join(chunks[2:])
    with pytest.raises(UndecryptableError):
        decrypt_bytes(KEY, swapped, BLOB_SIZE)
    # Cut at a chunk boundary and claim the shorter size: the last chunk kept is not flagged final.
    cut = b"".join(chunks[:2])
    with pytest.raises(UndecryptableError):
        decrypt_bytes(KEY, cut, 2 * CHUNK_SIZE)
    with pytest.raises(UndecryptableError):
        decrypt_bytes(KEY, BLOB[:-1], BLOB_SIZE)
    with pytest.raises(UndecryptableError):
        decrypt_bytes(KEY, BLOB + b"\0", BLOB_SIZE)


def test_another_key_opens_nothing() -> None:
    with pytest.raises(UndecryptableError):
        decrypt_bytes(new_file_key(), BLOB, BLOB_SIZE)


@PROPERTY
@given(index=st.integers(0, chunk_count(BLOB_SIZE) - 1))
def test_every_chunk_opens_on_its_own(index: int) -> None:
    """What range requests rely on: chunk i needs only its own bytes."""
    offset, length, last = chunk_span(index, BLOB_SIZE)
    plain = decrypt_chunk(KEY, index, BLOB[offset : offset + length], last=last)
    assert plain == DATA[index * CHUNK_SIZE : index * CHUNK_SIZE + len(plain)]
    if not last:
        with pytest.raises(UndecryptableError):  # a chunk moved elsewhere does not open
            decrypt_chunk(KEY, index + 1, BLOB[offset : offset + length], last=False)


def test_blob_sizes_that_cannot_be_are_refused() -> None:
    with pytest.raises(MalformedError):
        plaintext_size(TAG_SIZE - 1)
    with pytest.raises(MalformedError):
        plaintext_size(SEALED_CHUNK_SIZE + 5)  # ends inside a tag


def test_keys_are_checked_and_subkeys_differ_by_purpose() -> None:
    with pytest.raises(MalformedError):
        encrypt_bytes(b"short", b"data")
    assert derive_key(KEY, b"thumbnail") != derive_key(KEY, b"other")
    assert derive_key(KEY, b"thumbnail") != KEY
    sealed = seal_small(KEY, b"thumbnail", b"picture")
    assert open_small(KEY, b"thumbnail", sealed) == b"picture"
    with pytest.raises(CryptoError):
        open_small(KEY, b"other", sealed)


# Blobs made by the first implementation (libsodium through PyNaCl): whichever
# audited library seals the chunks, the bytes on the wire may never change, or
# nodes of different releases could not read each other's files.
KNOWN_BLOBS = {
    0: "32c42520145d0ae529c9d472ecb5796c2427876700f924b9379c599fbfdfc790",
    1: "97b6cdeb549aa0dbaf4cac96636f6af6769b743f806b983bdd7a7ee13026360b",
    CHUNK_SIZE: "188f1cdfa42c621ba1748a659844e095793b5ca021451ba23d0d4d130b243ed9",
    CHUNK_SIZE + 1: "fc3e7d0fd40dfbe378ee9c6086a5ed5645f646bbadd0dd616ebc52428427b0df",
    3 * CHUNK_SIZE - 7: "28dca87d6422f5c11a74f29993a79cf2d144ced64b678a701032015f65ccd148",
}


@pytest.mark.parametrize("size", sorted(KNOWN_BLOBS))
def test_blobs_match_the_known_answers(size: int) -> None:
    key = bytes(range(32))
    plain = bytes((i * 7 + 3) % 251 for i in range(size))
    sealer = StreamEncryptor(key, size)
    blob = sealer.feed(plain)
    assert hashlib.sha256(blob).hexdigest() == KNOWN_BLOBS[size] == sealer.blob_hash.hexdigest()
    opener = StreamDecryptor(key, size)
    assert opener.feed(blob) == plain

"""Private keys at rest: password wrap (Argon2id + secretbox) and session wrap.

A stolen node database must not yield a user's keys without the password,
and a damaged blob must be refused, never half-decoded.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl import pwhash

from flamechat.crypto import (
    KdfParams,
    UndecryptableError,
    session_key_from_token,
    session_lookup_id,
    unwrap_with_key,
    unwrap_with_password,
    wrap_with_key,
    wrap_with_password,
)
from flamechat.crypto.errors import CryptoError, MalformedError
from tests.unit.support import PROPERTY, SLOW_PROPERTY, user_keys

MINIMAL = KdfParams.minimal()
SECRET = user_keys("alice").to_bytes()
PASSWORD = "alice-password"
HEAD = 3 + 4 + 8  # magic, opslimit (u32), memlimit (u64)
SALT = 16


@pytest.fixture(scope="module")
def blob() -> bytes:
    return wrap_with_password(SECRET, PASSWORD, MINIMAL)


@SLOW_PROPERTY
@given(secret=st.binary(max_size=128), password=st.text(min_size=1, max_size=40))
def test_password_wrap_round_trip(secret: bytes, password: str) -> None:
    assert unwrap_with_password(wrap_with_password(secret, password, MINIMAL), password) == secret


def test_blob_records_its_cost_and_hides_the_secret(blob: bytes) -> None:
    assert blob.startswith(b"FV1")
    assert struct.unpack(">IQ", blob[3:HEAD]) == (MINIMAL.opslimit, MINIMAL.memlimit)
    assert SECRET not in blob
    assert SECRET[:16] not in blob


def test_each_wrap_uses_a_fresh_salt() -> None:
    first = wrap_with_password(SECRET, PASSWORD, MINIMAL)
    second = wrap_with_password(SECRET, PASSWORD, MINIMAL)
    assert first[HEAD : HEAD + SALT] != second[HEAD : HEAD + SALT]
    assert first != second


@pytest.mark.parametrize("wrong", ["alice-passwordx", "Alice-password", "", " alice-password"])
def test_wrong_password_is_refused(blob: bytes, wrong: str) -> None:
    with pytest.raises(UndecryptableError):
        unwrap_with_password(blob, wrong)


@pytest.mark.parametrize("where", ["salt", "nonce", "mac", "ciphertext", "last"])
def test_tampered_blob_is_refused(blob: bytes, where: str) -> None:
    index = {
        "salt": HEAD,
        "nonce": HEAD + SALT,
        "mac": HEAD + SALT + 24,
        "ciphertext": HEAD + SALT + 24 + 16 + 5,
        "last": len(blob) - 1,
    }[where]
    tampered = blob[:index] + bytes([blob[index] ^ 0x40]) + blob[index + 1 :]
    with pytest.raises(UndecryptableError):
        unwrap_with_password(tampered, PASSWORD)


@pytest.mark.parametrize(
    ("opslimit", "memlimit"),
    [
        (0, MINIMAL.memlimit),  # below the minimum
        (2**32 - 1, MINIMAL.memlimit),  # would run Argon2 for hours
        (MINIMAL.opslimit, 2**50),  # would ask for a petabyte
        (MINIMAL.opslimit, 0),
    ],
)
def test_blob_with_absurd_cost_is_malformed(blob: bytes, opslimit: int, memlimit: int) -> None:
    forged = b"FV1" + struct.pack(">IQ", opslimit, memlimit) + blob[HEAD:]
    with pytest.raises(MalformedError, match="cost"):
        unwrap_with_password(forged, PASSWORD)


def test_changed_cost_within_range_is_refused(blob: bytes) -> None:
    forged = b"FV1" + struct.pack(">IQ", MINIMAL.opslimit + 1, MINIMAL.memlimit) + blob[HEAD:]
    with pytest.raises(UndecryptableError):
        unwrap_with_password(forged, PASSWORD)


@pytest.mark.parametrize("cut", [0, 2, HEAD, HEAD + SALT - 1, HEAD + SALT, HEAD + SALT + 30])
def test_truncated_blob_is_refused(blob: bytes, cut: int) -> None:
    with pytest.raises(CryptoError):
        unwrap_with_password(blob[:cut], PASSWORD)


def test_blob_without_the_magic_is_malformed(blob: bytes) -> None:
    with pytest.raises(MalformedError):
        unwrap_with_password(b"XX1" + blob[3:], PASSWORD)


@SLOW_PROPERTY
@given(garbage=st.binary(max_size=120))
def test_arbitrary_bytes_fail_only_with_crypto_errors(garbage: bytes) -> None:
    # Prefix with a valid header half the time, so the later checks are reached too.
    for candidate in (garbage, b"FV1" + struct.pack(">IQ", MINIMAL.opslimit, MINIMAL.memlimit) + garbage):
        with pytest.raises(CryptoError):
            unwrap_with_password(candidate, PASSWORD)


def test_interactive_cost_is_the_libsodium_profile() -> None:
    params = KdfParams.interactive()
    assert (params.opslimit, params.memlimit) == (
        pwhash.argon2id.OPSLIMIT_INTERACTIVE,
        pwhash.argon2id.MEMLIMIT_INTERACTIVE,
    )


# --- session keys ------------------------------------------------------------------------------


@PROPERTY
@given(token=st.binary(min_size=1, max_size=64), secret=st.binary(max_size=128))
def test_session_wrap_round_trip(token: bytes, secret: bytes) -> None:
    key = session_key_from_token(token)
    assert len(key) == 32
    assert unwrap_with_key(wrap_with_key(secret, key), key) == secret


@PROPERTY
@given(token=st.binary(min_size=1, max_size=64), other=st.binary(min_size=1, max_size=64))
def test_another_token_cannot_unwrap(token: bytes, other: bytes) -> None:
    wrapped = wrap_with_key(SECRET, session_key_from_token(token))
    if other == token:
        return
    with pytest.raises(UndecryptableError):
        unwrap_with_key(wrapped, session_key_from_token(other))


def test_lookup_id_reveals_nothing_of_the_session_key() -> None:
    token = b"t" * 32
    lookup = session_lookup_id(token)
    key = session_key_from_token(token)
    assert len(lookup) == 64
    assert int(lookup, 16) >= 0  # hex
    assert bytes.fromhex(lookup) != key  # different personalisation, different value
    assert session_lookup_id(token) == lookup  # stable across calls


@pytest.mark.parametrize("bad_key", [b"", b"k" * 31, b"k" * 33])
def test_unwrap_with_a_malformed_key_is_undecryptable(bad_key: bytes) -> None:
    with pytest.raises(UndecryptableError):
        unwrap_with_key(wrap_with_key(SECRET, b"k" * 32), bad_key)

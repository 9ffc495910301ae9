"""Private keys at rest: wrapped under a password-derived key or a session key.

* Password wrap: ``key = Argon2id(password, salt, ops, mem)`` (libsodium
  ``crypto_pwhash``), then ``XSalsa20-Poly1305`` (``crypto_secretbox``). The blob
  is ``b"FV1" || ops (u32 BE) || mem (u64 BE) || salt (16) || secretbox``.
* Session wrap: ``key = BLAKE2b-256(token, person="flame-sess-key")``; the
  token lives only in the user's cookie, so stored session keys are unreadable
  at rest. The lookup id is a separate BLAKE2b with another personalisation.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from nacl import pwhash
from nacl.encoding import HexEncoder, RawEncoder
from nacl.exceptions import CryptoError as NaclCryptoError
from nacl.hash import blake2b
from nacl.secret import SecretBox
from nacl.utils import random

from flamechat.crypto.errors import MalformedError, UndecryptableError

_MAGIC = b"FV1"
_HEADER = struct.Struct(">IQ")
_SALT_SIZE = pwhash.argon2id.SALTBYTES


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost. ``interactive`` for logins; tests may pass ``minimal``."""

    opslimit: int
    memlimit: int

    @classmethod
    def interactive(cls) -> KdfParams:
        return cls(pwhash.argon2id.OPSLIMIT_INTERACTIVE, pwhash.argon2id.MEMLIMIT_INTERACTIVE)

    @classmethod
    def minimal(cls) -> KdfParams:
        return cls(pwhash.argon2id.OPSLIMIT_MIN, pwhash.argon2id.MEMLIMIT_MIN)


def _password_key(password: str, salt: bytes, params: KdfParams) -> bytes:
    key: bytes = pwhash.argon2id.kdf(
        SecretBox.KEY_SIZE, password.encode(), salt, params.opslimit, params.memlimit
    )
    return key


def wrap_with_password(secret: bytes, password: str, params: KdfParams) -> bytes:
    salt = random(_SALT_SIZE)
    box = SecretBox(_password_key(password, salt, params))
    return _MAGIC + _HEADER.pack(params.opslimit, params.memlimit) + salt + bytes(box.encrypt(secret))


def unwrap_with_password(blob: bytes, password: str) -> bytes:
    head = len(_MAGIC) + _HEADER.size
    if len(blob) < head + _SALT_SIZE or not blob.startswith(_MAGIC):
        raise MalformedError("not a password-wrapped key blob")
    opslimit, memlimit = _HEADER.unpack(blob[len(_MAGIC) : head])
    # The cost comes from the blob: a damaged or forged one must not make us
    # run Argon2 for hours or ask it for terabytes (nor raise something odd).
    if not (
        pwhash.argon2id.OPSLIMIT_MIN <= opslimit <= pwhash.argon2id.OPSLIMIT_SENSITIVE
        and pwhash.argon2id.MEMLIMIT_MIN <= memlimit <= pwhash.argon2id.MEMLIMIT_SENSITIVE
    ):
        raise MalformedError("key blob has an out-of-range Argon2 cost")
    salt = blob[head : head + _SALT_SIZE]
    key = _password_key(password, salt, KdfParams(opslimit, memlimit))
    return unwrap_with_key(blob[head + _SALT_SIZE :], key)


def wrap_with_key(secret: bytes, key: bytes) -> bytes:
    return bytes(SecretBox(key).encrypt(secret))


def unwrap_with_key(blob: bytes, key: bytes) -> bytes:
    try:
        return bytes(SecretBox(key).decrypt(blob))
    except (NaclCryptoError, ValueError, TypeError) as exc:
        raise UndecryptableError("wrong key or damaged key blob") from exc


def session_key_from_token(token: bytes) -> bytes:
    key: bytes = blake2b(token, digest_size=32, person=b"flame-sess-key", encoder=RawEncoder)
    return key


def session_lookup_id(token: bytes) -> str:
    digest: bytes = blake2b(token, digest_size=32, person=b"flame-sess-id", encoder=HexEncoder)
    return digest.decode("ascii")

"""Key pairs: a node's Ed25519 key and a user's Ed25519 + X25519 pair."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from nacl.encoding import RawEncoder
from nacl.hash import blake2b
from nacl.public import PrivateKey
from nacl.signing import SigningKey, VerifyKey

from flamechat.crypto.errors import MalformedError, SignatureError

KEY_SIZE = 32
SIGNATURE_SIZE = 64


def node_id_from_public_key(public_key: bytes) -> str:
    """A node's id: ``n`` + base32 of a 15-byte BLAKE2b digest of its Ed25519 key."""
    _check_size(public_key, "node public key")
    digest = blake2b(public_key, digest_size=15, person=b"flame-node-id", encoder=RawEncoder)
    return "n" + base64.b32encode(digest).decode("ascii").lower()


def _check_size(key: bytes, what: str) -> None:
    if not isinstance(key, bytes) or len(key) != KEY_SIZE:
        raise MalformedError(f"{what} must be {KEY_SIZE} bytes")


def sign(signing_key: SigningKey, message: bytes) -> bytes:
    """Detached Ed25519 signature."""
    return bytes(signing_key.sign(message).signature)


def verify(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Check a detached Ed25519 signature; raise :class:`SignatureError` if it fails."""
    _check_size(public_key, "signing public key")
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_SIZE:
        raise SignatureError("signature must be 64 bytes")
    try:
        VerifyKey(public_key).verify(message, signature)
    except Exception as exc:  # nacl raises BadSignatureError / ValueError
        raise SignatureError("signature does not verify") from exc


@dataclass(frozen=True)
class NodeKey:
    """A node's long-term Ed25519 identity."""

    signing_key: SigningKey

    @classmethod
    def generate(cls) -> NodeKey:
        return cls(SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> NodeKey:
        _check_size(seed, "node key seed")
        return cls(SigningKey(seed))

    @property
    def seed(self) -> bytes:
        return bytes(self.signing_key)

    @property
    def public_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    @property
    def node_id(self) -> str:
        return node_id_from_public_key(self.public_key)

    def sign(self, message: bytes) -> bytes:
        return sign(self.signing_key, message)


@dataclass(frozen=True)
class UserPublicKeys:
    """What a directory publishes about a user: Ed25519 (sign) and X25519 (box)."""

    sign: bytes
    box: bytes

    def __post_init__(self) -> None:
        _check_size(self.sign, "user signing key")
        _check_size(self.box, "user box key")


@dataclass(frozen=True)
class UserKeys:
    """A user's private keys. Serialised as 64 bytes: sign seed || box secret."""

    signing_key: SigningKey
    box_key: PrivateKey

    @classmethod
    def generate(cls) -> UserKeys:
        return cls(SigningKey.generate(), PrivateKey.generate())

    @classmethod
    def from_bytes(cls, data: bytes) -> UserKeys:
        if not isinstance(data, bytes) or len(data) != 2 * KEY_SIZE:
            raise MalformedError("user key material must be 64 bytes")
        return cls(SigningKey(data[:KEY_SIZE]), PrivateKey(data[KEY_SIZE:]))

    def to_bytes(self) -> bytes:
        return bytes(self.signing_key) + bytes(self.box_key)

    @property
    def public(self) -> UserPublicKeys:
        return UserPublicKeys(sign=bytes(self.signing_key.verify_key), box=bytes(self.box_key.public_key))

    def sign(self, message: bytes) -> bytes:
        return sign(self.signing_key, message)

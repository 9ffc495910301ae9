"""Pure cryptographic recipes for Flame Chat.

Everything here composes audited primitives — libsodium through PyNaCl, the
file chunks' ChaCha20-Poly1305 through ``cryptography``, SHA-2 through
``hashlib`` — and nothing here does I/O. The constructions are written down
in ``docs/protocol.md``.
"""

from flamechat.crypto.canonical import b64decode, b64encode, canonical_json, parse_json
from flamechat.crypto.documents import sign_document, verify_document
from flamechat.crypto.envelope import (
    OpenedEnvelope,
    SealedEnvelope,
    open_envelope,
    seal_envelope,
    verify_envelope_origin,
)
from flamechat.crypto.errors import CryptoError, SignatureError, UndecryptableError
from flamechat.crypto.keys import (
    NodeKey,
    UserKeys,
    UserPublicKeys,
    node_id_from_public_key,
)
from flamechat.crypto.requests import SignedRequestHeaders, sign_request, verify_request
from flamechat.crypto.vault import (
    KdfParams,
    session_key_from_token,
    session_lookup_id,
    unwrap_with_key,
    unwrap_with_password,
    wrap_with_key,
    wrap_with_password,
)

__all__ = [
    "CryptoError",
    "KdfParams",
    "NodeKey",
    "OpenedEnvelope",
    "SealedEnvelope",
    "SignatureError",
    "SignedRequestHeaders",
    "UndecryptableError",
    "UserKeys",
    "UserPublicKeys",
    "b64decode",
    "b64encode",
    "canonical_json",
    "node_id_from_public_key",
    "open_envelope",
    "parse_json",
    "seal_envelope",
    "session_key_from_token",
    "session_lookup_id",
    "sign_document",
    "sign_request",
    "unwrap_with_key",
    "unwrap_with_password",
    "verify_document",
    "verify_envelope_origin",
    "verify_request",
    "wrap_with_key",
    "wrap_with_password",
]

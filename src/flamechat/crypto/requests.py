"""Signed node-to-node HTTP requests.

A request is signed with the calling node's Ed25519 key over::

    "flamechat-request/v1" \\n METHOD \\n path?query \\n hex(SHA-256(body))
    \\n timestamp \\n nonce \\n node_id

and carries ``Flame-Node``, ``Flame-Timestamp``, ``Flame-Nonce`` and
``Flame-Signature`` headers. We considered RFC 9421 (HTTP Message Signatures)
libraries: they bind to a particular client's request objects and cover far
more than we need; this fixed string is small, explicit and documented in
``docs/protocol.md``. The receiver enforces the time window and remembers
nonces (see :mod:`flamechat.protocol.replay`).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from flamechat.crypto.canonical import b64decode, b64encode
from flamechat.crypto.errors import MalformedError
from flamechat.crypto.keys import SIGNATURE_SIZE, NodeKey, verify

HEADER_NODE = "Flame-Node"
HEADER_TIMESTAMP = "Flame-Timestamp"
HEADER_NONCE = "Flame-Nonce"
HEADER_SIGNATURE = "Flame-Signature"
_NODE_ID = re.compile(r"n[a-z2-7]{24}")  # what node_id_from_public_key makes


@dataclass(frozen=True)
class SignedRequestHeaders:
    node_id: str
    timestamp: int
    nonce: str
    signature: bytes

    def as_dict(self) -> dict[str, str]:
        return {
            HEADER_NODE: self.node_id,
            HEADER_TIMESTAMP: str(self.timestamp),
            HEADER_NONCE: self.nonce,
            HEADER_SIGNATURE: b64encode(self.signature),
        }

    @classmethod
    def parse(cls, headers: dict[str, str]) -> SignedRequestHeaders:
        """Parse from a case-insensitive header mapping; raise MalformedError if absent."""
        try:
            node_id = headers[HEADER_NODE]
            timestamp_text = headers[HEADER_TIMESTAMP]
            nonce = headers[HEADER_NONCE]
            signature_text = headers[HEADER_SIGNATURE]
        except KeyError as exc:
            raise MalformedError(f"missing header {exc.args[0]}") from exc
        # Not a node id: no node could have signed it, and nobody is asked who it is.
        if not _NODE_ID.fullmatch(node_id):
            raise MalformedError("Flame-Node must be a node id")
        # isascii(): "²" and other Unicode digits pass isdigit() but not int().
        if not (timestamp_text.isascii() and timestamp_text.isdigit()) or len(timestamp_text) > 15:
            raise MalformedError("Flame-Timestamp must be integer seconds")
        # Printable ASCII without spaces: a nonce can never smuggle a line into the signing string.
        if not 16 <= len(nonce) <= 64 or not all("!" <= c <= "~" for c in nonce):
            raise MalformedError("Flame-Nonce must be 16 to 64 printable ASCII characters")
        signature = b64decode(signature_text, size=SIGNATURE_SIZE, what="Flame-Signature")
        return cls(node_id, int(timestamp_text), nonce, signature)


def _signing_string(method: str, target: str, body: bytes, timestamp: int, nonce: str, node_id: str) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    parts = ["flamechat-request/v1", method.upper(), target, digest, str(timestamp), nonce, node_id]
    return "\n".join(parts).encode()


def sign_request(
    key: NodeKey, method: str, target: str, body: bytes, *, timestamp: int, nonce: str | None = None
) -> SignedRequestHeaders:
    """Sign a request; ``target`` is the path with its query string."""
    nonce = nonce or secrets.token_urlsafe(18)
    signature = key.sign(_signing_string(method, target, body, timestamp, nonce, key.node_id))
    return SignedRequestHeaders(key.node_id, timestamp, nonce, signature)


def verify_request(
    public_key: bytes, headers: SignedRequestHeaders, method: str, target: str, body: bytes
) -> None:
    """Raise SignatureError unless ``headers`` sign exactly this request."""
    message = _signing_string(method, target, body, headers.timestamp, headers.nonce, headers.node_id)
    verify(public_key, message, headers.signature)

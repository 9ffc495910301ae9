"""Sealed envelopes: sign with the sender's key, then encrypt to the recipient's.

Construction (see ``docs/protocol.md``, "Envelopes"):

1. ``inner = canonical_json({v, id, kind, sender, recipient, sent_at, body})``;
   ``inner_sig = Ed25519(sender, "flamechat/content/v1\\0" + inner)``.
2. ``plaintext = sodium_pad(canonical_json({"c": inner_b64, "s": inner_sig_b64}), 256)``
   so relays learn the size only to within 256 bytes.
3. ``ciphertext = crypto_box_seal(plaintext, recipient_x25519)`` (X25519 +
   XSalsa20-Poly1305, anonymous sender).
4. ``outer_sig = Ed25519(sender, "flamechat/envelope/v1\\0" + canonical_json(header)
   + "\\0" + ciphertext)`` where ``header = {v, id, sender, recipient, sent_at}``.

The outer signature lets a node (or relay) check origin and integrity without
reading the content; the inner one binds the content to sender, recipient and
id, so a ciphertext cannot be re-sealed to someone else under another name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nacl.bindings import sodium_pad, sodium_unpad
from nacl.exceptions import CryptoError as NaclCryptoError
from nacl.public import PublicKey, SealedBox

from flamechat.crypto.canonical import b64decode, b64encode, canonical_json, parse_json
from flamechat.crypto.errors import MalformedError, SignatureError, UndecryptableError
from flamechat.crypto.keys import SIGNATURE_SIZE, UserKeys, verify

ENVELOPE_VERSION = 1
PAD_BLOCK = 256
_OUTER_DOMAIN = b"flamechat/envelope/v1\x00"
_INNER_DOMAIN = b"flamechat/content/v1\x00"


@dataclass(frozen=True)
class SealedEnvelope:
    """What travels between nodes. Only routing metadata is readable."""

    id: str
    sender: str
    recipient: str
    sent_at: int
    ciphertext: bytes
    signature: bytes
    v: int = ENVELOPE_VERSION

    def header(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "id": self.id,
            "sender": self.sender,
            "recipient": self.recipient,
            "sent_at": self.sent_at,
        }

    def to_wire(self) -> dict[str, Any]:
        return {
            **self.header(),
            "ciphertext": b64encode(self.ciphertext),
            "signature": b64encode(self.signature),
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> SealedEnvelope:
        """Parse the wire form; anything else than a well-formed envelope is a
        :class:`MalformedError` (callers turn CryptoError into a 4xx)."""
        if not isinstance(data, Mapping):
            raise MalformedError("an envelope must be a JSON object")
        try:
            v, env_id = data["v"], data["id"]
            sender, recipient, sent_at = data["sender"], data["recipient"], data["sent_at"]
        except KeyError as exc:
            raise MalformedError(f"envelope field missing: {exc.args[0]}") from exc
        if type(v) is not int or v != ENVELOPE_VERSION:  # not True, not 1.0
            raise MalformedError(f"unsupported envelope version {v!r}")
        if not all(isinstance(x, str) and x for x in (env_id, sender, recipient)):
            raise MalformedError("envelope id, sender and recipient must be strings")
        if not isinstance(sent_at, int) or isinstance(sent_at, bool):
            raise MalformedError("envelope sent_at must be an integer")
        return cls(
            id=env_id,
            sender=sender,
            recipient=recipient,
            sent_at=sent_at,
            ciphertext=b64decode(data.get("ciphertext", ""), what="ciphertext"),
            signature=b64decode(data.get("signature", ""), size=SIGNATURE_SIZE, what="signature"),
            v=v,
        )


@dataclass(frozen=True)
class OpenedEnvelope:
    """The verified content of an envelope."""

    id: str
    kind: str
    sender: str
    recipient: str
    sent_at: int
    body: dict[str, Any]


def _outer_message(header: Mapping[str, Any], ciphertext: bytes) -> bytes:
    return _OUTER_DOMAIN + canonical_json(dict(header)) + b"\x00" + ciphertext


def seal_envelope(
    *,
    sender_keys: UserKeys,
    sender: str,
    recipient: str,
    recipient_box_key: bytes,
    envelope_id: str,
    sent_at: int,
    kind: str,
    body: Mapping[str, Any],
) -> SealedEnvelope:
    """Sign ``body`` as ``sender`` and seal it so that only ``recipient`` can read it."""
    inner = canonical_json(
        {
            "v": ENVELOPE_VERSION,
            "id": envelope_id,
            "kind": kind,
            "sender": sender,
            "recipient": recipient,
            "sent_at": sent_at,
            "body": dict(body),
        }
    )
    inner_sig = sender_keys.sign(_INNER_DOMAIN + inner)
    plaintext = canonical_json({"c": b64encode(inner), "s": b64encode(inner_sig)})
    try:
        box = SealedBox(PublicKey(recipient_box_key))
    except (TypeError, ValueError) as exc:
        raise MalformedError("recipient box key must be 32 bytes") from exc
    ciphertext = bytes(box.encrypt(sodium_pad(plaintext, PAD_BLOCK)))
    header = {
        "v": ENVELOPE_VERSION,
        "id": envelope_id,
        "sender": sender,
        "recipient": recipient,
        "sent_at": sent_at,
    }
    signature = sender_keys.sign(_outer_message(header, ciphertext))
    return SealedEnvelope(
        id=envelope_id,
        sender=sender,
        recipient=recipient,
        sent_at=sent_at,
        ciphertext=ciphertext,
        signature=signature,
    )


def verify_envelope_origin(envelope: SealedEnvelope, sender_sign_key: bytes) -> None:
    """Check the outer signature: the envelope is the sender's, unaltered."""
    verify(sender_sign_key, _outer_message(envelope.header(), envelope.ciphertext), envelope.signature)


def open_envelope(
    envelope: SealedEnvelope, *, recipient_keys: UserKeys, sender_sign_key: bytes
) -> OpenedEnvelope:
    """Verify, decrypt and check an envelope addressed to ``recipient_keys``.

    Raises :class:`SignatureError` for a forged or altered envelope and
    :class:`UndecryptableError` when it was not sealed to this recipient.
    """
    verify_envelope_origin(envelope, sender_sign_key)
    try:
        padded = SealedBox(recipient_keys.box_key).decrypt(envelope.ciphertext)
        plaintext = sodium_unpad(padded, PAD_BLOCK)
    except (NaclCryptoError, ValueError) as exc:
        raise UndecryptableError("envelope was not sealed to this recipient") from exc
    try:
        wrapper = parse_json(plaintext)
        inner = b64decode(wrapper["c"], what="content")
        inner_sig = b64decode(wrapper["s"], size=SIGNATURE_SIZE, what="content signature")
        content = parse_json(inner)
    except (ValueError, KeyError, TypeError) as exc:
        raise MalformedError("envelope content is malformed") from exc
    verify(sender_sign_key, _INNER_DOMAIN + inner, inner_sig)
    if not isinstance(content, dict) or not isinstance(content.get("body"), dict):
        raise MalformedError("envelope content is malformed")
    for field in ("v", "id", "sender", "recipient", "sent_at"):
        if content.get(field) != envelope.header()[field]:
            raise SignatureError(f"inner {field} does not match the envelope header")
    kind = content.get("kind")
    if not isinstance(kind, str):
        raise MalformedError("envelope kind must be a string")
    return OpenedEnvelope(
        id=envelope.id,
        kind=kind,
        sender=envelope.sender,
        recipient=envelope.recipient,
        sent_at=envelope.sent_at,
        body=content["body"],
    )

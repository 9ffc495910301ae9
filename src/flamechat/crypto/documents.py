"""Signed JSON documents: directory answers, key bindings, profiles.

A document signature is Ed25519 over ``"flamechat/doc/v1\\n" + purpose + "\\n" +
canonical_json(document)``. The purpose string keeps a signature made for one
kind of document from being accepted as another.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flamechat.crypto.canonical import canonical_json
from flamechat.crypto.keys import verify

_DOMAIN = b"flamechat/doc/v1\n"


def _message(purpose: str, document: Mapping[str, Any]) -> bytes:
    if not purpose or "\n" in purpose:
        raise ValueError("purpose must be a non-empty single line")
    return _DOMAIN + purpose.encode() + b"\n" + canonical_json(dict(document))


def sign_document(signer: Any, purpose: str, document: Mapping[str, Any]) -> bytes:
    """Sign with anything that has ``sign(bytes) -> bytes`` (NodeKey, UserKeys)."""
    signature: bytes = signer.sign(_message(purpose, document))
    return signature


def verify_document(public_key: bytes, purpose: str, document: Mapping[str, Any], signature: bytes) -> None:
    """Raise :class:`~flamechat.crypto.errors.SignatureError` unless the signature holds."""
    verify(public_key, _message(purpose, document), signature)

"""A node of the test's own making: a key the directory knows, speaking the
federation and directory APIs by hand, so that a test can send what a real
node never would (unsigned, forged, replayed or flooding requests)."""

from __future__ import annotations

import json
import time
from typing import Any

from nacl.bindings import sodium_pad
from nacl.public import PublicKey, SealedBox

from flamechat.crypto import (
    NodeKey,
    UserKeys,
    b64decode,
    b64encode,
    canonical_json,
    seal_envelope,
    sign_document,
    sign_request,
)
from flamechat.devnet import free_port
from flamechat.protocol.ids import new_id
from flamechat.services.directory import KEY_BINDING_PURPOSE, key_binding
from tests.support import Answer, raw_request


class FakePeer:
    def __init__(self, directory_url: str, *, url: str | None = None, key: NodeKey | None = None) -> None:
        self.key = key or NodeKey.generate()
        self.directory_url = directory_url.rstrip("/")
        # Where it claims to live; nothing listens there unless the test serves it.
        self.url = url or f"http://127.0.0.1:{free_port()}"
        self.users: dict[str, UserKeys] = {}

    @classmethod
    def home_of(cls, directory_url: str, username: str, password: str) -> FakePeer:
        """A registered node of the test's own, home of ``username`` (keys published)."""
        peer = cls(directory_url)
        peer.register()
        peer.adopt(username, password)
        return peer

    @property
    def node_id(self) -> str:
        return self.key.node_id

    def request(
        self,
        method: str,
        url: str,
        body: dict[str, Any] | None = None,
        *,
        sign: bool = True,
        key: NodeKey | None = None,
        nonce: str | None = None,
        timestamp: int | None = None,
        signed_body: bytes | None = None,
        timeout: float = 10.0,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """A request signed as this node (or as ``key``), with knobs to get it wrong:
        ``sign=False`` sends no signature headers, ``signed_body`` signs other bytes
        than those sent, ``nonce``/``timestamp`` replay or age the request."""
        data = b"" if body is None else json.dumps(body).encode()
        headers = {**({"Content-Type": "application/json"} if body is not None else {}), **(headers or {})}
        if sign:
            target = url.split("://", 1)[1]
            target = target[target.index("/") :]
            signed = sign_request(
                key or self.key,
                method,
                target,
                data if signed_body is None else signed_body,
                timestamp=int(time.time()) if timestamp is None else timestamp,
                nonce=nonce,
            )
            headers.update(signed.as_dict())
        return raw_request(method, url, data if body is not None else None, headers, timeout=timeout)

    # --- directory ---------------------------------------------------------------

    def register(self, *, relay: bool = False) -> None:
        answer = self.request(
            "PUT",
            f"{self.directory_url}/directory/v1/nodes/{self.node_id}",
            {"url": self.url, "public_key": b64encode(self.key.public_key), "relay": relay},
        )
        assert answer.status == 200, answer

    def adopt(self, username: str, password: str) -> UserKeys:
        """Log ``username`` in through the directory (this node becomes their home)
        and publish fresh keys for them, as a real node does at a first login."""
        answer = self.request(
            "POST",
            f"{self.directory_url}/directory/v1/logins",
            {"username": username, "password": password},
            timeout=30,
        )
        assert answer.status == 200, answer
        keys = UserKeys.generate()
        sign_key, box_key = b64encode(keys.public.sign), b64encode(keys.public.box)
        binding = sign_document(keys, KEY_BINDING_PURPOSE, key_binding(username, sign_key, box_key))
        answer = self.request(
            "PUT",
            f"{self.directory_url}/directory/v1/users/{username}/keys",
            {"sign_key": sign_key, "box_key": box_key, "binding_signature": b64encode(binding)},
        )
        assert answer.status == 200, answer
        self.users[username] = keys
        return keys

    def user(self, username: str) -> dict[str, Any]:
        answer = self.request("GET", f"{self.directory_url}/directory/v1/users/{username}")
        assert answer.status == 200, answer
        record: dict[str, Any] = answer.body["user"]
        return record

    # --- federation --------------------------------------------------------------

    def seal(
        self,
        sender: str,
        recipient: str,
        text: str,
        envelope_id: str | None = None,
        *,
        kind: str = "message",
        sent_at: int | None = None,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A genuine envelope from ``sender`` (one of this peer's users); a ``kind``
        other than a message has an empty body, unless ``body`` is given."""
        box_key = self.user(recipient)["box_key"]
        assert box_key, f"{recipient} has no published keys yet"
        envelope = seal_envelope(
            sender_keys=self.users[sender],
            sender=sender,
            recipient=recipient,
            recipient_box_key=b64decode(box_key, size=32),
            envelope_id=envelope_id or new_id(),
            sent_at=int(time.time() * 1000) if sent_at is None else sent_at,
            kind=kind,
            body=body if body is not None else {"text": text} if kind == "message" else {},
        )
        return envelope.to_wire()

    def seal_raw(self, sender: str, recipient: str, plaintext: bytes) -> dict[str, Any]:
        """An envelope from ``sender`` whose sealed content is ``plaintext`` exactly
        (what a hostile node could put there), under a valid outer signature."""
        box_key = b64decode(self.user(recipient)["box_key"], size=32)
        ciphertext = bytes(SealedBox(PublicKey(box_key)).encrypt(sodium_pad(plaintext, 256)))
        header = {
            "v": 1,
            "id": new_id(),
            "sender": sender,
            "recipient": recipient,
            "sent_at": int(time.time() * 1000),
        }
        outer = b"flamechat/envelope/v1\x00" + canonical_json(header) + b"\x00" + ciphertext
        signature = self.users[sender].sign(outer)
        return {**header, "ciphertext": b64encode(ciphertext), "signature": b64encode(signature)}

    def deliver(self, node_url: str, wire: dict[str, Any], **knobs: Any) -> Answer:
        return self.request("PUT", f"{node_url}/federation/v1/envelopes/{wire['id']}", wire, **knobs)

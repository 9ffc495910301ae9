"""Plain records the repositories return (no SQLAlchemy types leak upward)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LocalAccount:
    username: str
    verifier: str
    wrapped_keys: bytes
    sign_key: bytes
    box_key: bytes
    keys_published: bool


@dataclass(frozen=True)
class SessionRecord:
    lookup_id: str
    username: str
    csrf_token: str
    wrapped_keys: bytes
    expires_at: int


@dataclass(frozen=True)
class KnownUser:
    username: str
    display_name: str
    home_node: str | None
    node_url: str | None
    sign_key: bytes | None
    box_key: bytes | None
    online: bool
    fetched_at: int
    status: str = "offline"
    status_text: str = ""
    title: str = ""
    department: str = ""
    hidden_from: tuple[str, ...] = ()


@dataclass(frozen=True)
class KnownNode:
    node_id: str
    url: str
    public_key: bytes
    relay: bool = False


@dataclass(frozen=True)
class MessageRecord:
    seq: int
    owner: str
    peer: str
    id: str
    direction: str
    sender: str
    recipient: str
    body: str
    sent_at: int
    state: str
    error: str | None
    kind: str = "text"
    edited_at: int | None = None
    deleted_at: int | None = None
    reply_to: str | None = None


@dataclass(frozen=True)
class UploadRecord:
    owner: str
    id: str
    peer: str
    name: str
    size: int
    declared_type: str
    file_key: bytes
    received: int
    expires_at: int


@dataclass(frozen=True)
class AttachmentRecord:
    owner: str
    message_id: str
    blob_id: str
    name: str
    size: int
    declared_type: str
    sniffed_type: str | None
    sha256: str
    file_key: bytes
    source_node: str
    state: str
    received: int
    attempts: int
    error: str | None
    has_thumbnail: bool
    created_at: int = 0


@dataclass(frozen=True)
class OutboxItem:
    seq: int
    envelope_id: str
    sender: str
    recipient: str
    payload: str
    attempts: int
    next_attempt_at: int
    expires_at: int
    created_at: int


@dataclass(frozen=True)
class WaitingSend:
    """A message to someone without keys yet, not sealed: its envelope kind and body (JSON)."""

    owner: str
    peer: str
    message_id: str
    kind: str
    body: str
    sent_at: int
    expires_at: int


@dataclass(frozen=True)
class InboxItem:
    seq: int
    recipient: str
    envelope_id: str
    sender: str
    payload: str


@dataclass(frozen=True)
class DirectoryAccount:
    username: str
    display_name: str
    password_hash: str
    home_node: str | None
    sign_key: bytes | None
    box_key: bytes | None
    binding_signature: bytes | None
    disabled: bool
    title: str = ""
    department: str = ""


@dataclass(frozen=True)
class PresenceEntry:
    """One user's published presence: status and text, and who must not see it."""

    username: str
    status: str = "online"
    status_text: str = ""
    hidden_from: tuple[str, ...] = ()


@dataclass(frozen=True)
class DirectoryNode:
    node_id: str
    url: str
    public_key: bytes
    relay: bool = False


@dataclass(frozen=True)
class RelayedEnvelope:
    seq: int
    envelope_id: str
    recipient: str
    payload: str


@dataclass(frozen=True)
class KeyWarning:
    """``viewer`` has not confirmed that ``username``'s keys changed at ``changed_at`` (ms)."""

    viewer: str
    username: str
    old_sign_key: bytes
    new_sign_key: bytes
    changed_at: int


@dataclass(frozen=True)
class EarlyAmend:
    """Kept until its message arrives: an ``edit`` (to ``text``), a ``delete`` (for
    everyone, by the sender), or ``remove`` (its recipient deleted it for themselves)."""

    action: str
    text: str | None
    at: int

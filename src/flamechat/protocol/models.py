"""Wire models of the three APIs (pydantic, so the OpenAPI documents follow)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from flamechat.protocol.addresses import base_url_problem
from flamechat.protocol.ids import NODE_ID_PATTERN, USERNAME_PATTERN

Username = Annotated[str, Field(pattern=USERNAME_PATTERN, examples=["alice"])]
NodeId = Annotated[str, Field(pattern=NODE_ID_PATTERN)]
B64Key = Annotated[
    str, Field(min_length=44, max_length=44, pattern=r"^[A-Za-z0-9+/]{43}=$", description="32 bytes, base64")
]
B64Sig = Annotated[
    str, Field(min_length=88, max_length=88, pattern=r"^[A-Za-z0-9+/]{86}==$", description="64 bytes, base64")
]
EnvelopeId = Annotated[
    str,
    Field(
        pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
        description="UUID (v7 preferred), lower case",
    ),
]
Password = Annotated[str, Field(min_length=1, max_length=1024)]
BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"


def _integral(value: object) -> object:
    return int(value) if isinstance(value, float) and value.is_integer() else value


# An integer in an input model: JSON Schema's ``integer`` includes 3.0, but never ``true`` or "3".
WireInt = Annotated[int, BeforeValidator(_integral)]


class Strict(BaseModel):
    """Input from outside: no unknown fields, and no coercion (``false`` is not the integer 0)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None
    details: dict[str, Any] | None = Field(
        default=None, description="more about this error: always an object, its keys depend on the code"
    )


class ErrorBody(BaseModel):
    error: ErrorDetail


class VersionInfo(BaseModel):
    software: str
    versions: list[str]
    features: list[str]


# --- envelopes (federation) -------------------------------------------------


class EnvelopeWire(Strict):
    v: Literal[1]
    id: EnvelopeId
    sender: Username
    recipient: Username
    sent_at: WireInt = Field(ge=0, le=2**53)
    ciphertext: str = Field(max_length=200_000, pattern=BASE64_PATTERN, description="sealed box, base64")
    signature: B64Sig


class EnvelopeBatch(Strict):
    envelopes: list[EnvelopeWire] = Field(min_length=1, max_length=100)


class EnvelopeOutcome(BaseModel):
    id: str
    status: Literal["stored", "duplicate", "refused"]
    error: ErrorDetail | None = Field(default=None, description="why this envelope was refused")


class EnvelopeBatchResult(BaseModel):
    results: list[EnvelopeOutcome] = Field(description="one per envelope, in the order sent")


class EnvelopeAccepted(BaseModel):
    id: str
    status: Literal["stored", "duplicate"]


class RelayDeposit(Strict):
    recipient_node: NodeId
    envelope: EnvelopeWire


class RelayedItem(BaseModel):
    seq: int
    envelope: EnvelopeWire


class RelayedList(BaseModel):
    envelopes: list[RelayedItem]


class RelayAcks(Strict):
    seqs: list[Annotated[int, Field(ge=0, le=2**53), BeforeValidator(_integral)]] = Field(max_length=1000)


class RelayAcked(BaseModel):
    acknowledged: int


class PresenceAnswer(BaseModel):
    users: list[PresenceItem]


# --- directory ----------------------------------------------------------------


def _base_url(value: str) -> str:
    problem = base_url_problem(value)
    if problem is not None:
        raise ValueError(f"a node's URL {problem}")
    return value


class NodeRegistration(Strict):
    url: Annotated[str, AfterValidator(_base_url)] = Field(
        min_length=8,
        max_length=2048,
        pattern=r"^https?://",
        description="plain base URL: http(s)://host[:port][/path], no query, fragment or user name",
    )
    public_key: B64Key
    relay: bool = Field(default=False, description="the node holds envelopes for other nodes")


class NodeRecord(BaseModel):
    node_id: str
    url: str
    public_key: str
    relay: bool = False


class SignedNode(BaseModel):
    node: NodeRecord
    issued_at: int
    signature: str


class SignedNodeList(BaseModel):
    nodes: list[NodeRecord]
    issued_at: int
    signature: str


class LoginCheck(Strict):
    username: Username
    password: Password


class PublishKeys(Strict):
    sign_key: B64Key
    box_key: B64Key
    binding_signature: B64Sig = Field(
        description="the user's Ed25519 signature over {username, sign_key, box_key}"
    )


Status = Literal["online", "away", "busy"]
ShownStatus = Literal["online", "away", "busy", "offline"]
ChosenStatus = Literal["online", "away", "busy", "invisible"]
StatusText = Annotated[str, Field(max_length=140)]


class PresenceItem(Strict):
    username: Username
    status: Status = "online"
    status_text: StatusText = ""
    hidden_from: list[Username] = Field(default_factory=list, max_length=10_000)


class PresenceReport(Strict):
    users: list[PresenceItem] = Field(max_length=10_000)


class UserCard(Strict):
    display_name: Annotated[str, Field(min_length=1, max_length=80)]
    title: Annotated[str, Field(max_length=80)] = ""
    department: Annotated[str, Field(max_length=80)] = ""


class UserRecord(BaseModel):
    username: str
    display_name: str
    home_node: str | None
    node_url: str | None
    sign_key: str | None
    box_key: str | None
    binding_signature: str | None
    online: bool
    status: ShownStatus = "offline"
    status_text: str = ""
    title: str = ""
    department: str = ""
    hidden_from: list[str] = Field(
        default_factory=list, description="users of the asking node who must see this user offline"
    )


class SignedUser(BaseModel):
    user: UserRecord
    issued_at: int
    signature: str


class SignedLogin(BaseModel):
    """The directory's approval of one password check, for one node (purpose ``directory-login``)."""

    user: UserRecord
    node_id: str = Field(description="the node that asked; no other node may use this approval")
    issued_at: int
    signature: str


class SignedUserList(BaseModel):
    users: list[UserRecord]
    issued_at: int
    signature: str


class DirectoryKey(BaseModel):
    public_key: str


# --- local API ------------------------------------------------------------------


class LoginRequest(Strict):
    username: Username
    password: Password


class SessionInfo(BaseModel):
    username: str
    csrf_token: str
    directory: Literal["online", "offline"]


class MarkRead(Strict):
    up_to: EnvelopeId = Field(description="the newest message shown; it and all before it are read")


class ReadMarked(BaseModel):
    marked: int


class TypingSent(BaseModel):
    sent: bool


class SendMessage(Strict):
    id: EnvelopeId | None = None
    reply_to: EnvelopeId | None = Field(
        default=None, description="the id of the message in this conversation that this one answers"
    )
    body: str = Field(
        min_length=1,
        # something besides white space, as Python's str.isspace() counts it (messaging refuses the rest)
        pattern=r"[^\s\x1c-\x1f]",
        description="text, not only white space; at most 64 KiB of UTF-8",
    )


class EditMessage(Strict):
    body: str = Field(
        min_length=1,
        pattern=r"[^\s\x1c-\x1f]",
        description="the new text, not only white space; at most 64 KiB of UTF-8",
    )


class Quote(BaseModel):
    id: str
    sender: str | None = Field(description="who wrote the quoted message; null when it is not here")
    text: str = Field(description="its text as it is now (the first 200 characters)")
    deleted: bool = Field(
        description="deleted for everyone, or not in this history (never arrived, or deleted for oneself)"
    )


class MessageView(BaseModel):
    id: str
    seq: int
    conversation: str
    sender: str
    recipient: str
    body: str
    sent_at: int
    state: Literal["waiting", "pending", "sent", "delivered", "read", "failed"] = Field(
        description="waiting: the recipient has not signed in yet, so nothing is sealed or sent; "
        "it is, once they have keys"
    )
    direction: Literal["in", "out"]
    error: str | None = None
    html: str | None = Field(
        default=None, description="the body rendered from its Markdown subset, sanitised"
    )
    kind: Literal["text", "file"] = "text"
    file: FileView | None = Field(default=None, description="the attachment of a file message")
    edited_at: int | None = Field(
        default=None, description="when its sender last edited it (their clock, ms)"
    )
    deleted: bool = Field(default=False, description="deleted for everyone by its sender: the body is empty")
    reply_to: Quote | None = Field(
        default=None, description="the message this one answers, as this side has it"
    )


class MessagePage(BaseModel):
    messages: list[MessageView]
    next_cursor: str | None = Field(description="pass as `before` for older messages")
    newer_cursor: str | None = Field(
        default=None, description="pass as `after` for newer messages (when paging forward)"
    )


class UserView(BaseModel):
    username: str
    display_name: str
    online: bool
    status: ShownStatus = "offline"
    status_text: str = ""
    title: str = ""
    department: str = ""
    node_url: str | None
    local: bool
    blocked: bool = False
    unread: int = Field(default=0, description="received messages not read yet")
    verified: bool = Field(
        default=False,
        description="you compared safety numbers with this user, and their keys are unchanged since",
    )
    keys_changed_at: int | None = Field(
        default=None,
        description="when this user's keys changed since you last wrote with them, unconfirmed "
        "(ms); sending is refused with keys_changed until you confirm",
    )
    has_keys: bool = Field(
        default=True,
        description="false until the user first signs in: messages to them wait, and there is no "
        "safety number to compare",
    )


class SafetyNumber(BaseModel):
    username: str
    safety_number: str = Field(description="twelve groups of five digits, the same on both sides")


class MarkVerified(Strict):
    safety_number: str = Field(
        min_length=60, max_length=80, description="the digits you compared, as the page showed them"
    )


class Verified(BaseModel):
    username: str
    verified: bool


class KeysConfirmed(BaseModel):
    username: str
    confirmed: bool


class UserList(BaseModel):
    users: list[UserView]
    source: Literal["directory", "cache"]
    fetched_at: int | None


class SetStatus(Strict):
    status: ChosenStatus
    status_text: StatusText = ""


class StatusView(BaseModel):
    status: ChosenStatus
    status_text: str


class TabAlive(BaseModel):
    """A tab's heartbeat was heard: it counts as open for ``timeout`` more seconds."""

    tab: str
    timeout: float
    open: bool = Field(description="false: a beat for a stream that has ended, which opened nothing")


ShortText = Annotated[str, Field(max_length=80)]


class EditProfile(Strict):
    display_name: Annotated[str, Field(min_length=1, max_length=80)]
    title: ShortText = ""
    department: ShortText = ""
    location: ShortText = ""
    about: Annotated[str, Field(max_length=2000)] = ""


class ProfileDocument(BaseModel):
    """A profile as its owner's node signs and serves it, checked by every reader
    before it is cached or shown: the bounds of :class:`EditProfile`, no coercion.
    Unknown fields are ignored (a newer node may sign more), never shown."""

    model_config = ConfigDict(strict=True, extra="ignore")

    username: Username
    display_name: Annotated[str, Field(min_length=1, max_length=80)]
    title: ShortText = ""
    department: ShortText = ""
    location: ShortText = ""
    about: Annotated[str, Field(max_length=2000)] = ""
    avatar_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    updated_at: Annotated[int, Field(ge=0, le=2**53)] | None = None


class ProfileView(BaseModel):
    username: str
    display_name: str
    title: str = ""
    department: str = ""
    location: str = ""
    about: str = ""
    avatar_sha256: str | None = None
    updated_at: int | None = None
    stale: bool = False
    blocked: bool = False


class BlockList(BaseModel):
    blocked: list[str]


class PersonHit(BaseModel):
    username: str
    display_name: str
    title: str
    department: str


class MessageHit(BaseModel):
    message: MessageView
    snippet: str = Field(description="matched words between \\u0002 and \\u0003")


class SearchResults(BaseModel):
    people: list[PersonHit]
    messages: list[MessageHit]


class SignedProfile(BaseModel):
    profile: dict[str, str | int | None]
    signature: str


# --- files (local API) -------------------------------------------------------------


class StartUpload(Strict):
    id: EnvelopeId = Field(description="client-chosen UUID; becomes the file message's id")
    name: Annotated[str, Field(min_length=1, max_length=1024)]
    size: WireInt = Field(ge=0, le=2**53, description="plaintext bytes")
    type: Annotated[str, Field(max_length=255)] = "application/octet-stream"


class UploadView(BaseModel):
    id: str
    size: int
    received: int = Field(description="bytes the node holds; the next part starts here")
    complete: bool
    part_size: int = Field(description="send parts of at most this many bytes, multiples of chunk_size")
    chunk_size: int
    message: MessageView | None = None


class FileView(BaseModel):
    name: str
    size: int
    declared_type: str
    type: str | None = Field(description="sniffed from the content by this node")
    media: Literal["image", "audio", "video"] | None = Field(description="shown inline when set")
    state: Literal["fetching", "ready", "failed", "refused"]
    received: int
    error: str | None = None
    url: str
    thumbnail_url: str | None = None

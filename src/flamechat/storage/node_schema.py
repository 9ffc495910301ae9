"""Tables of a node's database."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# Key/value facts about this node (pinned directory key, ...).
node_facts = Table(
    "node_facts",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# Users who have logged in here: cached verifier and password-wrapped keys.
local_accounts = Table(
    "local_accounts",
    metadata,
    Column("username", String(32), primary_key=True),
    Column("verifier", Text, nullable=False),
    Column("wrapped_keys", LargeBinary, nullable=False),
    Column("sign_key", LargeBinary, nullable=False),
    Column("box_key", LargeBinary, nullable=False),
    Column("keys_published", Integer, nullable=False, default=0),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("lookup_id", String(64), primary_key=True),
    Column("username", String(32), nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),
    Column("wrapped_keys", LargeBinary, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)

# What this node knows of every user, from the directory (signed) or earlier.
known_users = Table(
    "known_users",
    metadata,
    Column("username", String(32), primary_key=True),
    Column("display_name", Text, nullable=False),
    Column("home_node", String(32)),
    Column("node_url", Text),
    Column("sign_key", LargeBinary),
    Column("box_key", LargeBinary),
    Column("online", Integer, nullable=False, default=0),
    Column("fetched_at", BigInteger, nullable=False),
    Column("status", String(16), nullable=False, default="offline"),
    Column("status_text", Text, nullable=False, default=""),
    Column("title", Text, nullable=False, default=""),
    Column("department", Text, nullable=False, default=""),
    Column("hidden_from", Text, nullable=False, default="[]"),
)

# Key continuity: the last keys the directory served for each user (never
# cleared by an answer without keys), to notice when they change.
key_pins = Table(
    "key_pins",
    metadata,
    Column("username", String(32), primary_key=True),
    Column("sign_key", LargeBinary, nullable=False),
    Column("box_key", LargeBinary, nullable=False),
    Column("pinned_at", BigInteger, nullable=False),
)

# Key continuity: ``viewer`` had written with ``username`` when the directory
# began to serve other keys for them; sending waits for the viewer to confirm.
key_warnings = Table(
    "key_warnings",
    metadata,
    Column("viewer", String(32), primary_key=True),
    Column("username", String(32), primary_key=True),
    Column("old_sign_key", LargeBinary, nullable=False),
    Column("new_sign_key", LargeBinary, nullable=False),
    Column("changed_at", BigInteger, nullable=False),
)

# Verified contacts: ``viewer`` compared safety numbers with ``username`` while
# these were ``username``'s keys (verified only while they still are).
verified_keys = Table(
    "verified_keys",
    metadata,
    Column("viewer", String(32), primary_key=True),
    Column("username", String(32), primary_key=True),
    Column("sign_key", LargeBinary, nullable=False),
    Column("box_key", LargeBinary, nullable=False),
    Column("verified_at", BigInteger, nullable=False),
)

# This node's users' chosen status (online / away / busy / invisible) and text.
user_status = Table(
    "user_status",
    metadata,
    Column("username", String(32), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("status_text", Text, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# A user's block list (the blacklist): owner never hears from blocked.
blocks = Table(
    "blocks",
    metadata,
    Column("owner", String(32), primary_key=True),
    Column("blocked", String(32), primary_key=True),
    Column("created_at", BigInteger, nullable=False),
)

# Operator blocks: kind "node" (a node id) or "user" (a username).
admin_blocks = Table(
    "admin_blocks",
    metadata,
    Column("kind", String(8), primary_key=True),
    Column("value", String(64), primary_key=True),
    Column("created_at", BigInteger, nullable=False),
)

# Signed profiles: this node's users' own, and cached copies of others'.
profiles = Table(
    "profiles",
    metadata,
    Column("username", String(32), primary_key=True),
    Column("document", Text, nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Column("avatar", LargeBinary),
    Column("fetched_at", BigInteger, nullable=False),
)

known_nodes = Table(
    "known_nodes",
    metadata,
    Column("node_id", String(32), primary_key=True),
    Column("url", Text, nullable=False),
    Column("public_key", LargeBinary, nullable=False),
    Column("fetched_at", BigInteger, nullable=False),
    Column("relay", Integer, nullable=False, default=0),
)

# Conversation history, one row per (owner, envelope). Plaintext at rest on
# the owner's home node (see docs/threat-model.md).
messages = Table(
    "messages",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("owner", String(32), nullable=False),
    Column("peer", String(32), nullable=False),
    Column("id", String(36), nullable=False),
    Column("direction", String(3), nullable=False),
    Column("sender", String(32), nullable=False),
    Column("recipient", String(32), nullable=False),
    Column("body", Text, nullable=False),
    Column("sent_at", BigInteger, nullable=False),
    Column("stored_at", BigInteger, nullable=False),
    Column("state", String(10), nullable=False),
    Column("error", Text),
    Column("kind", String(8), nullable=False, default="text"),  # "text" or "file"
    Column("edited_at", BigInteger),  # the sent_at of the sender's last edit
    Column("deleted_at", BigInteger),  # deleted for everyone by its sender (body emptied)
    Column("reply_to", String(36)),  # the id of the message it answers, as its sender sealed it
    UniqueConstraint("owner", "id", name="uq_messages_owner_id"),
)

# An edit or deletion that arrived before the message it names, applied when it comes;
# or a received message deleted by its recipient for themselves ("remove"), kept out.
early_amends = Table(
    "early_amends",
    metadata,
    Column("owner", String(32), primary_key=True),
    Column("message_id", String(36), primary_key=True),
    Column("peer", String(32), nullable=False),
    Column("action", String(8), nullable=False),  # edit, delete, remove
    Column("text", Text),  # the new text of an edit
    Column("amended_at", BigInteger, nullable=False),
    Column("stored_at", BigInteger, nullable=False),
)

# Sealed envelopes waiting to leave this node.
outbox = Table(
    "outbox",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("envelope_id", String(36), nullable=False),
    Column("sender", String(32), nullable=False),
    Column("recipient", String(32), nullable=False),
    Column("payload", Text, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("last_error", Text),
    UniqueConstraint("envelope_id", "recipient", name="uq_outbox_envelope_recipient"),
)

# Messages written to someone who has no keys yet (never signed in): nothing can
# be sealed to them, so the kind and body wait here, on the sender's own node
# (plaintext, like the history), until their keys are known; then they are
# sealed with their original id and sent_at and move to the outbox.
waiting_sends = Table(
    "waiting_sends",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("owner", String(32), nullable=False),
    Column("peer", String(32), nullable=False),
    Column("message_id", String(36), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("body", Text, nullable=False),  # the envelope body, JSON
    Column("sent_at", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    UniqueConstraint("owner", "message_id", name="uq_waiting_owner_message"),
)

# Sealed envelopes that arrived for a user whose keys are locked (logged out).
inbox = Table(
    "inbox",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("recipient", String(32), nullable=False),
    Column("envelope_id", String(36), nullable=False),
    Column("sender", String(32), nullable=False),
    Column("payload", Text, nullable=False),
    Column("received_at", BigInteger, nullable=False),
    UniqueConstraint("recipient", "envelope_id", name="uq_inbox_recipient_envelope"),
)

# Envelopes this node keeps for other nodes' users while they are unreachable.
relay_store = Table(
    "relay_store",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("envelope_id", String(36), nullable=False),
    Column("recipient", String(32), nullable=False),
    Column("recipient_node", String(32), nullable=False),
    Column("depositor", String(32), nullable=False),
    Column("payload", Text, nullable=False),
    Column("size", Integer, nullable=False),
    Column("deposited_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    UniqueConstraint("envelope_id", "recipient", name="uq_relay_envelope_recipient"),
)

# Files a user is uploading to this node, encrypted as the bytes arrive.
uploads = Table(
    "uploads",
    metadata,
    Column("owner", String(32), primary_key=True),
    Column("id", String(36), primary_key=True),  # becomes the file message's id
    Column("peer", String(32), nullable=False),
    Column("name", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("declared_type", Text, nullable=False),
    Column("file_key", LargeBinary, nullable=False),
    Column("received", BigInteger, nullable=False),  # plaintext bytes sealed and on disk
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)

# The file of a file message, sent or received: where its blob is and how to
# open it. A received one is "fetching" until its blob is here and verified.
attachments = Table(
    "attachments",
    metadata,
    Column("owner", String(32), primary_key=True),
    Column("message_id", String(36), primary_key=True),
    Column("blob_id", String(64), nullable=False),
    Column("name", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("declared_type", Text, nullable=False),
    Column("sniffed_type", Text),
    Column("sha256", String(64), nullable=False),
    Column("file_key", LargeBinary, nullable=False),
    Column("source_node", String(32), nullable=False),
    Column("state", String(10), nullable=False),  # fetching / ready / failed / refused
    Column("received", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("error", Text),
    Column("thumbnail", LargeBinary),  # sealed under a subkey of the file key
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# Which recipients' nodes may fetch a blob this node holds.
blob_grants = Table(
    "blob_grants",
    metadata,
    Column("blob_id", String(64), primary_key=True),
    Column("recipient", String(32), primary_key=True),
    Column("created_at", BigInteger, nullable=False),
)

Index("ix_attachments_due", attachments.c.state, attachments.c.next_attempt_at)
Index("ix_attachments_blob", attachments.c.blob_id)
Index("ix_early_amends_stored", early_amends.c.stored_at)
Index("ix_relay_recipient_node", relay_store.c.recipient_node, relay_store.c.seq)
Index("ix_messages_order", messages.c.owner, messages.c.peer, messages.c.sent_at, messages.c.seq)
Index("ix_messages_conversation", messages.c.owner, messages.c.peer, messages.c.seq)
Index("ix_outbox_due", outbox.c.next_attempt_at)
Index("ix_outbox_pair", outbox.c.sender, outbox.c.recipient, outbox.c.seq)
Index("ix_waiting_pair", waiting_sends.c.owner, waiting_sends.c.peer, waiting_sends.c.sent_at)
Index("ix_waiting_expiry", waiting_sends.c.expires_at)

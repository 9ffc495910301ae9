"""Uploads in progress, attachments of file messages, and blob grants."""

from __future__ import annotations

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from flamechat.storage.node_schema import attachments, blob_grants, uploads
from flamechat.storage.records import AttachmentRecord, UploadRecord


def _upload(row: object) -> UploadRecord:
    r = row._mapping  # type: ignore[attr-defined]
    return UploadRecord(
        owner=r["owner"],
        id=r["id"],
        peer=r["peer"],
        name=r["name"],
        size=r["size"],
        declared_type=r["declared_type"],
        file_key=r["file_key"],
        received=r["received"],
        expires_at=r["expires_at"],
    )


def _attachment(row: object) -> AttachmentRecord:
    r = row._mapping  # type: ignore[attr-defined]
    return AttachmentRecord(
        owner=r["owner"],
        message_id=r["message_id"],
        blob_id=r["blob_id"],
        name=r["name"],
        size=r["size"],
        declared_type=r["declared_type"],
        sniffed_type=r["sniffed_type"],
        sha256=r["sha256"],
        file_key=r["file_key"],
        source_node=r["source_node"],
        state=r["state"],
        received=r["received"],
        attempts=r["attempts"],
        error=r["error"],
        has_thumbnail=r["thumbnail"] is not None,
        created_at=r["created_at"],
    )


# --- uploads ----------------------------------------------------------------------


async def create_upload(conn: AsyncConnection, record: UploadRecord, *, now: int) -> None:
    await conn.execute(
        insert(uploads).values(
            owner=record.owner,
            id=record.id,
            peer=record.peer,
            name=record.name,
            size=record.size,
            declared_type=record.declared_type,
            file_key=record.file_key,
            received=record.received,
            created_at=now,
            expires_at=record.expires_at,
        )
    )


async def find_upload(conn: AsyncConnection, owner: str, upload_id: str) -> UploadRecord | None:
    row = (
        await conn.execute(select(uploads).where(uploads.c.owner == owner, uploads.c.id == upload_id))
    ).first()
    return None if row is None else _upload(row)


async def set_upload_received(conn: AsyncConnection, owner: str, upload_id: str, received: int) -> None:
    await conn.execute(
        update(uploads).where(uploads.c.owner == owner, uploads.c.id == upload_id).values(received=received)
    )


async def delete_upload(conn: AsyncConnection, owner: str, upload_id: str) -> None:
    await conn.execute(delete(uploads).where(uploads.c.owner == owner, uploads.c.id == upload_id))


async def expired_uploads(conn: AsyncConnection, now: int, limit: int = 100) -> list[UploadRecord]:
    rows = await conn.execute(select(uploads).where(uploads.c.expires_at <= now).limit(limit))
    return [_upload(r) for r in rows.all()]


async def bytes_used(conn: AsyncConnection, owner: str) -> int:
    """Plaintext bytes of ``owner``'s files here: stored, arriving and being uploaded."""
    stored = (
        await conn.execute(
            select(func.coalesce(func.sum(attachments.c.size), 0)).where(
                attachments.c.owner == owner, attachments.c.state.in_(("ready", "fetching"))
            )
        )
    ).scalar()
    pending = (
        await conn.execute(select(func.coalesce(func.sum(uploads.c.size), 0)).where(uploads.c.owner == owner))
    ).scalar()
    return int(stored or 0) + int(pending or 0)


# --- attachments ------------------------------------------------------------------


async def add_attachment(
    conn: AsyncConnection,
    *,
    owner: str,
    message_id: str,
    blob_id: str,
    name: str,
    size: int,
    declared_type: str,
    sha256: str,
    file_key: bytes,
    source_node: str,
    state: str,
    received: int,
    now: int,
    sniffed_type: str | None = None,
    error: str | None = None,
) -> None:
    await conn.execute(
        insert(attachments).values(
            owner=owner,
            message_id=message_id,
            blob_id=blob_id,
            name=name,
            size=size,
            declared_type=declared_type,
            sniffed_type=sniffed_type,
            sha256=sha256,
            file_key=file_key,
            source_node=source_node,
            state=state,
            received=received,
            attempts=0,
            next_attempt_at=now,
            error=error,
            created_at=now,
            updated_at=now,
        )
    )


async def find_attachment(conn: AsyncConnection, owner: str, message_id: str) -> AttachmentRecord | None:
    row = (
        await conn.execute(
            select(attachments).where(attachments.c.owner == owner, attachments.c.message_id == message_id)
        )
    ).first()
    return None if row is None else _attachment(row)


async def attachments_for(
    conn: AsyncConnection, owner: str, message_ids: list[str]
) -> dict[str, AttachmentRecord]:
    if not message_ids:
        return {}
    rows = await conn.execute(
        select(attachments).where(attachments.c.owner == owner, attachments.c.message_id.in_(message_ids))
    )
    return {r.message_id: _attachment(r) for r in rows.all()}


async def forget_attachment(conn: AsyncConnection, owner: str, message_id: str) -> str | None:
    """Delete a message's attachment row, and with it the file's key (its message was
    deleted): the blob's ciphertext cannot be read any more, and a fetch stops.
    Returns the blob's id, if there was an attachment."""
    row = (
        await conn.execute(
            delete(attachments)
            .where(attachments.c.owner == owner, attachments.c.message_id == message_id)
            .returning(attachments.c.blob_id)
        )
    ).first()
    return None if row is None else str(row.blob_id)


async def blob_in_use(conn: AsyncConnection, blob_id: str) -> bool:
    """Whether an attachment of anyone here, or a grant to another node's user, needs the blob."""
    for table in (attachments, blob_grants):
        if (await conn.execute(select(table.c.blob_id).where(table.c.blob_id == blob_id).limit(1))).first():
            return True
    return False


async def due_fetches(conn: AsyncConnection, now: int, limit: int) -> list[AttachmentRecord]:
    rows = await conn.execute(
        select(attachments)
        .where(attachments.c.state == "fetching", attachments.c.next_attempt_at <= now)
        .order_by(attachments.c.next_attempt_at)
        .limit(limit)
    )
    return [_attachment(r) for r in rows.all()]


async def update_attachment(conn: AsyncConnection, owner: str, message_id: str, **values: object) -> None:
    await conn.execute(
        update(attachments)
        .where(attachments.c.owner == owner, attachments.c.message_id == message_id)
        .values(**values)
    )


async def refetch_blob(conn: AsyncConnection, blob_id: str, *, now: int) -> None:
    """Every ready attachment of ``blob_id`` back to ``fetching``, from its first byte."""
    await conn.execute(
        update(attachments)
        .where(attachments.c.blob_id == blob_id, attachments.c.state == "ready")
        .values(state="fetching", received=0, attempts=0, next_attempt_at=now, error=None, updated_at=now)
    )


async def thumbnail(conn: AsyncConnection, owner: str, message_id: str) -> bytes | None:
    value = (
        await conn.execute(
            select(attachments.c.thumbnail).where(
                attachments.c.owner == owner, attachments.c.message_id == message_id
            )
        )
    ).scalar()
    return None if value is None else bytes(value)


# --- grants -----------------------------------------------------------------------


async def grant(conn: AsyncConnection, blob_id: str, recipient: str, *, now: int) -> None:
    exists = (
        await conn.execute(
            select(blob_grants.c.blob_id).where(
                blob_grants.c.blob_id == blob_id, blob_grants.c.recipient == recipient
            )
        )
    ).first()
    if exists is None:
        await conn.execute(insert(blob_grants).values(blob_id=blob_id, recipient=recipient, created_at=now))


async def revoke(conn: AsyncConnection, blob_id: str, recipient: str) -> None:
    """``recipient``'s node may fetch the blob no more (its message was deleted for everyone)."""
    await conn.execute(
        delete(blob_grants).where(blob_grants.c.blob_id == blob_id, blob_grants.c.recipient == recipient)
    )


async def grantees(conn: AsyncConnection, blob_id: str) -> list[str]:
    rows = await conn.execute(select(blob_grants.c.recipient).where(blob_grants.c.blob_id == blob_id))
    return [r[0] for r in rows.all()]

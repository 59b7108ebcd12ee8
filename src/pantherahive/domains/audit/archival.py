"""Archival: move a tenant's oldest audit events into object storage, and bring archived
ranges back for an investigation.

These run as the database *owner* (the command line), never as the app: only the owner
may delete from ``audit.audit_events``, and only inside a transaction that declared
``audit.archiving`` — and only after the segment and its manifest have been written,
read back and checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from hashlib import sha256
from typing import Any
from uuid import UUID, uuid4

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pantherahive.domains.audit.archive import ArchiveStore, Segment, decode_segment, encode_segment
from pantherahive.domains.audit.chain import GENESIS_HASH, ChainCheck, document
from pantherahive.domains.audit.repository import AuditRepository
from pantherahive.domains.audit.tables import ArchiveSegment
from pantherahive.infra.db.engine import set_tenant


class ArchiveError(RuntimeError):
    """The archive was not written, or not as intended; nothing was deleted."""


@dataclass(frozen=True)
class ArchivedSegment:
    tenant_id: UUID
    first_seq: int
    last_seq: int
    count: int
    path: str


async def archive_before(
    sessions: async_sessionmaker[AsyncSession],
    store: ArchiveStore,
    *,
    before: datetime,
    tenant_id: UUID | None = None,
) -> list[ArchivedSegment]:
    """Archive, tenant by tenant, every live event of the longest prefix of its chain that
    happened before ``before``, in segments of at most ``segment_events`` events."""
    if tenant_id is not None:
        tenants = [tenant_id]
    else:
        async with sessions() as session:
            tenants = await AuditRepository(session).tenants_with_events()
    done: list[ArchivedSegment] = []
    for tenant in tenants:
        while True:
            segment = await _archive_one(sessions, store, tenant, before)
            if segment is None:
                break
            done.append(segment)
    return done


async def _archive_one(
    sessions: async_sessionmaker[AsyncSession], store: ArchiveStore, tenant: UUID, before: datetime
) -> ArchivedSegment | None:
    async with sessions() as session, session.begin():
        # One archiver per tenant at a time; appends are not blocked.
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtext('audit.archive:' || :t))"),
            {"t": str(tenant)},
        )
        await set_tenant(session, tenant)
        repo = AuditRepository(session)
        up_to = await repo.archivable_until(tenant, before)
        if up_to is None:
            return None
        rows = await repo.oldest_live(tenant, up_to=up_to, limit=store.config.segment_events)
        if not rows:
            return None
        documents = [document(row) for row in rows]
        previous = await repo.segments(tenant)
        check = ChainCheck(
            expected_seq=documents[0]["seq"],
            prev_hash=previous[-1].last_hash if previous else GENESIS_HASH,
        )
        if not check.feed_all(documents):
            raise ArchiveError(
                f"tenant {tenant}: the chain is broken at seq {check.first_broken_seq}; "
                "refusing to archive it (run `pantherahive audit verify`)"
            )
        segment, blob = encode_segment(tenant, documents)
        await store.put(segment.path, blob)
        await store.put(segment.manifest_path, segment.manifest())
        await _read_back(store, segment)
        await repo.record_segment(_segment_values(segment))
        await repo.enter_archiving()
        deleted = await repo.delete_range(tenant, segment.first_seq, segment.last_seq)
        if deleted != segment.count:
            raise ArchiveError(
                f"tenant {tenant}: expected to delete {segment.count} events, not {deleted}"
            )
    return ArchivedSegment(tenant, segment.first_seq, segment.last_seq, segment.count, segment.path)


async def _read_back(store: ArchiveStore, segment: Segment) -> None:
    """The rows go only once the stored copy is proven identical to what was meant."""
    blob = await store.get(segment.path)
    if sha256(blob).hexdigest() != segment.sha256:
        raise ArchiveError(f"{segment.path}: the stored segment does not match its SHA-256")
    check = ChainCheck(expected_seq=segment.first_seq, prev_hash=segment.first_prev_hash)
    if not check.feed_all(decode_segment(blob)) or check.checked != segment.count:
        raise ArchiveError(f"{segment.path}: the stored segment does not re-verify")
    if check.prev_hash != segment.last_hash:
        raise ArchiveError(f"{segment.path}: the stored segment ends on another hash")
    stored_manifest = orjson.loads(await store.get(segment.manifest_path))
    if stored_manifest != orjson.loads(segment.manifest()):
        raise ArchiveError(f"{segment.manifest_path}: the stored manifest differs")


def _segment_values(segment: Segment) -> dict[str, Any]:
    return {
        "id": uuid4(),
        "tenant_id": segment.tenant_id,
        "first_seq": segment.first_seq,
        "last_seq": segment.last_seq,
        "first_prev_hash": segment.first_prev_hash,
        "first_hash": segment.first_hash,
        "last_hash": segment.last_hash,
        "count": segment.count,
        "first_occurred_at": _timestamp(segment.first_occurred_at),
        "last_occurred_at": _timestamp(segment.last_occurred_at),
        "sha256": segment.sha256,
        "bytes": segment.size,
        "path": segment.path,
        "manifest_path": segment.manifest_path,
    }


def _timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def restore_range(
    sessions: async_sessionmaker[AsyncSession],
    store: ArchiveStore,
    *,
    tenant_id: UUID,
    from_seq: int,
    to_seq: int,
) -> int:
    """Copy archived events ``from_seq..to_seq`` into ``audit.restored_events`` (each
    segment re-verified first); returns how many rows were added."""
    added = 0
    async with sessions() as session, session.begin():
        await set_tenant(session, tenant_id)
        repo = AuditRepository(session)
        for segment in await repo.segments(tenant_id):
            if segment.last_seq < from_seq or segment.first_seq > to_seq:
                continue
            documents = await _verified_documents(store, segment)
            rows = [
                _restored_values(doc, segment.id)
                for doc in documents
                if from_seq <= doc["seq"] <= to_seq
            ]
            added += await repo.add_restored(rows)
    return added


async def _verified_documents(store: ArchiveStore, segment: ArchiveSegment) -> list[dict[str, Any]]:
    blob = await store.get(segment.path)
    if sha256(blob).hexdigest() != segment.sha256:
        raise ArchiveError(f"{segment.path}: the segment does not match its manifest's SHA-256")
    documents = list(decode_segment(blob))
    check = ChainCheck(expected_seq=segment.first_seq, prev_hash=segment.first_prev_hash)
    if not check.feed_all(documents) or check.prev_hash != segment.last_hash:
        raise ArchiveError(f"{segment.path}: broken at seq {check.first_broken_seq}")
    return documents


def _restored_values(doc: dict[str, Any], segment_id: UUID) -> dict[str, Any]:
    return {
        "id": UUID(doc["id"]),
        "tenant_id": UUID(doc["tenantId"]),
        "seq": doc["seq"],
        "occurred_at": _timestamp(doc["occurredAt"]),
        "actor_id": UUID(doc["actorId"]) if doc["actorId"] else None,
        "actor_type": doc["actorType"],
        "action": doc["action"],
        "resource_type": doc["resourceType"],
        "resource_id": doc["resourceId"],
        "request_id": doc["requestId"],
        "ip": doc["ip"],
        "changes": doc["changes"],
        "data": doc["data"],
        "hash": doc["hash"],
        "prev_hash": doc["prevHash"],
        "segment_id": segment_id,
    }

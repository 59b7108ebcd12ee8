"""Audit's rules: how an event becomes a chained audit record, who may read the trail,
and how the chain is verified across archived segments and live rows."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from hashlib import sha256
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pantherahive.core.errors import FieldError, ValidationFailed
from pantherahive.core.pagination import cut_page, decode_cursor, parse_cursor_time
from pantherahive.domains.audit.archive import ArchiveStore, decode_segment
from pantherahive.domains.audit.chain import (
    GENESIS_HASH,
    ChainCheck,
    compute_hash,
    document,
    dumps,
    format_timestamp,
)
from pantherahive.domains.audit.errors import AuditEventNotFound
from pantherahive.domains.audit.permissions import AuditAction, audit_may
from pantherahive.domains.audit.repository import AuditRepository, EventFilters, NewEvents
from pantherahive.domains.audit.schemas import ActorType, ChainVerification
from pantherahive.infra.bus.consumer import Event
from pantherahive.infra.bus.outbox import VIA_TOKEN
from pantherahive.infra.db.engine import set_tenant
from pantherahive.infra.security.authz import deny
from pantherahive.infra.security.principal import AuthContext

VERIFY_BATCH = 5_000
_READ_ONLY = text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")


async def read_snapshot(session: AsyncSession) -> None:
    """Make the transaction one consistent, read-only snapshot (its first statement):
    segments, live rows and chain head are then read as of one moment."""
    await session.execute(_READ_ONLY)


def split_payload(event_type: str, data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(changes, rest)`` of an event's data.

    Updates carry ``data["changes"] = {field: [old, new]}``; a creation's payload is its
    initial state, recorded as ``{field: [null, value]}``; anything else (``viaToken``
    always) stays in ``data``.
    """
    rest = dict(data)
    raw = rest.pop("changes", None)
    if isinstance(raw, dict):
        changes = {
            str(name): list(pair) if isinstance(pair, list | tuple) and len(pair) == 2
            else [None, pair]
            for name, pair in raw.items()
        }
        return changes, rest
    if event_type.endswith(".created"):
        # Which token made the request is about the request, not the created thing.
        kept = {VIA_TOKEN: rest.pop(VIA_TOKEN)} if VIA_TOKEN in rest else {}
        return {str(name): [None, value] for name, value in rest.items()}, kept
    return {}, rest


class ChainConflict(RuntimeError):
    """An event of the batch was recorded by someone else between the head lock and the
    insert (seen only through the unique id): the batch would leave a gap in ``seq``, so
    it is refused and its transaction rolled back; one event at a time cannot conflict."""


async def record_event(session: AsyncSession, event: Event) -> bool:
    """Append ``event`` to its tenant's chain; False when it was already recorded."""
    return await record_events(session, [event]) == 1


async def record_events(session: AsyncSession, events: Sequence[Event]) -> int:
    """Append events of one tenant, in the given order, to its chain; returns how many were
    recorded (an event already in the trail is skipped, and the next takes its seq).

    Two statements whatever the number of events: the chain head is created or locked —
    held for the rest of the transaction, so concurrent appends for one tenant queue up and
    ``seq`` has no gaps — together with the ids already recorded and the payloads as
    ``jsonb`` stores them; the hashes are computed here; one INSERT … SELECT FROM unnest
    writes every row and moves the head. The runtime commits this together with the
    consumer's position.
    """
    if not events:
        return 0
    tenant_id = events[0].tenant_id
    if any(event.tenant_id != tenant_id for event in events):
        raise ValueError("record_events takes the events of one tenant")
    texts: list[tuple[str, str]] = []
    for event in events:
        changes, rest = split_payload(event.type, event.data)
        texts.append((dumps(changes).decode(), dumps(rest).decode()))
    repo = AuditRepository(session)
    head = await repo.lock_chain(
        tenant_id, [event.id for event in events], [f"[{c},{d}]" for c, d in texts]
    )
    rows = NewEvents()
    taken: set[UUID] = set(head.known)
    seq, prev_hash = head.last_seq, head.last_hash
    tenant = str(tenant_id)
    for event, (changes_text, data_text), stored in zip(
        events, texts, head.payloads, strict=True
    ):
        if event.id in taken:
            continue
        taken.add(event.id)
        changes, data = json.loads(stored)  # as the API reads it back (SQLAlchemy's codec)
        seq += 1
        actor = str(event.actor_id) if event.actor_id else None
        actor_type = (ActorType.USER if event.actor_id else ActorType.SYSTEM).value
        action = event.type[:100]
        resource_type = event.subject_type[:50]
        resource_id = event.subject_id[:100]
        request_id = event.request_id[:128] if event.request_id else None
        digest = compute_hash(prev_hash, {
            "id": str(event.id), "seq": seq, "occurredAt": format_timestamp(event.occurred_at),
            "actorId": actor, "actorType": actor_type, "action": action,
            "resourceType": resource_type, "resourceId": resource_id, "tenantId": tenant,
            "requestId": request_id, "ip": event.ip, "changes": changes, "data": data,
        })
        rows.id.append(event.id)
        rows.seq.append(seq)
        rows.occurred_at.append(event.occurred_at)
        rows.actor_id.append(event.actor_id)
        rows.actor_type.append(actor_type)
        rows.action.append(action)
        rows.resource_type.append(resource_type)
        rows.resource_id.append(resource_id)
        rows.request_id.append(request_id)
        rows.ip.append(event.ip)
        rows.changes.append(changes_text)
        rows.data.append(data_text)
        rows.hash.append(digest)
        rows.prev_hash.append(prev_hash)
        prev_hash = digest
    if not rows:
        return 0
    inserted = await repo.append(tenant_id, rows)
    if inserted == len(rows):
        return inserted
    if len(rows) == 1:
        return 0  # recorded meanwhile: nothing inserted, the head did not move
    raise ChainConflict(
        f"{len(rows) - inserted} of {len(rows)} audit events of tenant {tenant_id} were "
        "recorded concurrently; the batch is rolled back"
    )


class AuditService:
    def __init__(self, archive: ArchiveStore) -> None:
        self.archive = archive

    async def _require(self, session: AsyncSession, auth: AuthContext, action: AuditAction) -> None:
        if not audit_may(auth, action):
            raise await deny(
                session, auth, action.value, subject_type="audit", subject_id=auth.tenant_id
            )

    async def list_events(
        self,
        session: AsyncSession,
        auth: AuthContext,
        *,
        filters: EventFilters,
        cursor: str | None,
        limit: int,
    ) -> tuple[list[dict[str, Any]], str | None]:
        await self._require(session, auth, AuditAction.LIST)
        before = _decode(cursor) if cursor is not None else None
        rows = await AuditRepository(session).page(
            auth.tenant_id, filters, before=before, limit=limit + 1
        )
        page, next_cursor = cut_page(
            rows, limit, lambda row: [row.occurred_at.isoformat(), row.seq]
        )
        return [document(row) for row in page], next_cursor

    async def get_event(
        self, session: AsyncSession, auth: AuthContext, event_id: UUID
    ) -> dict[str, Any]:
        await self._require(session, auth, AuditAction.READ)
        row = await AuditRepository(session).get(auth.tenant_id, event_id)
        if row is None:
            raise AuditEventNotFound()
        return document(row)

    async def authorize_export(self, session: AsyncSession, auth: AuthContext) -> None:
        await self._require(session, auth, AuditAction.EXPORT)

    async def export(
        self,
        sessions: async_sessionmaker[AsyncSession],
        tenant_id: UUID,
        filters: EventFilters,
    ) -> AsyncIterator[bytes]:
        """NDJSON lines, oldest first, from a session of its own (the response outlives
        the request's unit of work); one snapshot, constant memory."""
        async with sessions() as session, session.begin():
            await read_snapshot(session)
            await set_tenant(session, tenant_id)
            chunk: list[bytes] = []
            async for row in AuditRepository(session).stream(tenant_id, filters):
                chunk.append(dumps(document(row)) + b"\n")
                if len(chunk) >= 200:
                    yield b"".join(chunk)
                    chunk.clear()
            if chunk:
                yield b"".join(chunk)

    async def authorize_verify(self, session: AsyncSession, auth: AuthContext) -> None:
        await self._require(session, auth, AuditAction.VERIFY)

    async def verify(
        self,
        sessions: async_sessionmaker[AsyncSession],
        tenant_id: UUID,
        *,
        from_seq: int = 1,
        to_seq: int | None = None,
    ) -> ChainVerification:
        """``verify_tenant`` in a session of its own, one snapshot from start to end."""
        if to_seq is not None and to_seq < from_seq:
            raise ValidationFailed(
                "toSeq must not be below fromSeq.",
                errors=[FieldError("toSeq", "must be at least fromSeq")],
            )
        async with sessions() as session, session.begin():
            await read_snapshot(session)
            await set_tenant(session, tenant_id)
            return await self.verify_tenant(session, tenant_id, from_seq=from_seq, to_seq=to_seq)

    async def verify_tenant(
        self,
        session: AsyncSession,
        tenant_id: UUID,
        *,
        from_seq: int = 1,
        to_seq: int | None = None,
    ) -> ChainVerification:
        """Re-compute the chain — archived segments first, then the live rows — from
        ``from_seq`` (whose link to the event before it is taken as stored) to ``to_seq``
        (default: the head, whose remembered hash is then checked too).

        Run it in a snapshot (``read_snapshot`` first): at READ COMMITTED an archive that
        commits between the read of the segments and the read of the live rows moves rows
        from the one to the other unseen, and a sound chain reads as broken."""
        repo = AuditRepository(session)
        check = ChainCheck(expected_seq=from_seq, prev_hash=GENESIS_HASH if from_seq == 1
                           else None)
        # The head first: events appended while we verify lie beyond it and are left out.
        head = await repo.chain_head(tenant_id)
        head_seq = head[0] if head is not None else 0
        last = head_seq if to_seq is None else min(to_seq, head_seq)
        for segment in await repo.segments(tenant_id):
            if segment.last_seq < from_seq:
                continue
            if segment.first_seq > last:
                break
            if segment.first_seq > check.expected_seq or (
                segment.first_seq < check.expected_seq and check.checked
            ):
                check.broken_at(check.expected_seq)  # a missing or overlapping segment
                break
            at = check.expected_seq  # a bad segment breaks the chain where we enter it
            try:
                blob = await self.archive.get(segment.path)
            except Exception:  # a missing or unreadable object breaks the chain there
                check.broken_at(at)
                break
            if sha256(blob).hexdigest() != segment.sha256:
                check.broken_at(at)
                break
            try:
                intact = check.feed_all(
                    doc for doc in decode_segment(blob) if from_seq <= doc.get("seq", 0) <= last
                )
            except (OSError, EOFError, ValueError):  # not gzip, or not NDJSON
                check.broken_at(at)
                break
            if not intact:
                break
            if check.expected_seq != min(segment.last_seq, last) + 1:
                check.broken_at(check.expected_seq)
                break
        while check.ok and check.expected_seq <= last:
            rows = await repo.live_batch(
                tenant_id, after_seq=check.expected_seq - 1, up_to=last, limit=VERIFY_BATCH
            )
            if not rows or not check.feed_all(document(row) for row in rows):
                break
        if check.ok and check.expected_seq <= last:
            check.broken_at(check.expected_seq)  # rows of the range are missing
        if check.ok and to_seq is None and head is not None and (
            head[0] != check.expected_seq - 1 or head[1] != check.prev_hash
        ):
            # The newest events were removed: the head still remembers them.
            check.broken_at(check.expected_seq)
        return ChainVerification(
            ok=check.ok, checked=check.checked, first_broken_seq=check.first_broken_seq
        )

def _decode(cursor: str) -> tuple[datetime, int]:
    at, seq = decode_cursor(cursor, arity=2)
    moment = parse_cursor_time(at)
    if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq < 2**63:
        raise ValidationFailed(
            "The cursor is not valid for this list.",
            errors=[FieldError("cursor", "malformed or foreign cursor")],
        )
    return moment, seq

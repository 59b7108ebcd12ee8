"""All of audit's SQL. Requests and the consumer run under the transaction's tenant (RLS);
the archive commands run as the database owner and name the tenant explicitly."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    Row,
    Select,
    delete,
    func,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.domains.audit.chain import GENESIS_HASH
from pantherahive.domains.audit.tables import ArchiveSegment, AuditEvent, Chain, RestoredEvent
from pantherahive.infra.db import direct

# Every column but the generated search vector and the bookkeeping recorded_at.
EVENT_COLUMNS = tuple(c for c in AuditEvent.__table__.c if c.name not in {"search", "recorded_at"})


@dataclass(frozen=True)
class EventFilters:
    actor_id: UUID | None = None
    action: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    occurred_from: datetime | None = None
    occurred_to: datetime | None = None
    q: str | None = None


@dataclass(frozen=True)
class ChainHead:
    """The locked head of a tenant's chain, with what appending needs to know."""

    last_seq: int
    last_hash: str
    # Of the event ids asked about, those the trail already holds (a redelivery).
    known: frozenset[UUID]
    # Each payload as ``jsonb`` stores it, as text (numbers normalised, duplicate keys
    # dropped): the hash is computed over what is stored and read back.
    payloads: list[str]


@dataclass
class NewEvents:
    """Rows to append to one tenant's chain, column by column (one array per column)."""

    id: list[UUID] = field(default_factory=list)
    seq: list[int] = field(default_factory=list)
    occurred_at: list[datetime] = field(default_factory=list)
    actor_id: list[UUID | None] = field(default_factory=list)
    actor_type: list[str] = field(default_factory=list)
    action: list[str] = field(default_factory=list)
    resource_type: list[str] = field(default_factory=list)
    resource_id: list[str] = field(default_factory=list)
    request_id: list[str | None] = field(default_factory=list)
    ip: list[str | None] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    data: list[str] = field(default_factory=list)
    hash: list[str] = field(default_factory=list)
    prev_hash: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.id)


# The consumer appends through fixed SQL on the session's connection (infra/db/direct.py):
# a whole chunk of a tenant's events costs these two statements, whatever its size.
# 1. Create-or-lock the head (held until commit: appends for one tenant queue up), the
#    ids already recorded, and the payloads normalised by jsonb, in one round trip.
_LOCK_HEAD = """
WITH head AS (
  INSERT INTO audit.chains AS c (tenant_id, last_seq, last_hash) VALUES ($1, 0, $2)
  ON CONFLICT (tenant_id) DO UPDATE SET last_seq = c.last_seq
  RETURNING c.last_seq, c.last_hash
)
SELECT head.last_seq, head.last_hash,
  ARRAY(SELECT e.id FROM audit.audit_events e WHERE e.id = ANY($3::uuid[])) AS known,
  ARRAY(SELECT p.doc::jsonb::text FROM unnest($4::text[]) WITH ORDINALITY AS p(doc, n)
        ORDER BY p.n) AS payloads
FROM head
"""
# 2. Insert every row and move the head to the newest one inserted; returns how many were
#    inserted (an id recorded meanwhile is skipped by ON CONFLICT, and the caller checks).
_APPEND = """
WITH inserted AS (
  INSERT INTO audit.audit_events (id, tenant_id, seq, occurred_at, actor_id, actor_type,
    action, resource_type, resource_id, request_id, ip, changes, data, hash, prev_hash)
  SELECT u.id, $1, u.seq, u.occurred_at, u.actor_id, u.actor_type, u.action,
    u.resource_type, u.resource_id, u.request_id, u.ip, u.changes::jsonb, u.data::jsonb,
    u.hash, u.prev_hash
  FROM unnest($2::uuid[], $3::bigint[], $4::timestamptz[], $5::uuid[], $6::text[],
    $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
    $14::text[], $15::text[])
    AS u(id, seq, occurred_at, actor_id, actor_type, action, resource_type, resource_id,
         request_id, ip, changes, data, hash, prev_hash)
  ON CONFLICT (id) DO NOTHING
  RETURNING seq, hash
), advanced AS (
  UPDATE audit.chains AS c SET last_seq = newest.seq, last_hash = newest.hash
  FROM (SELECT seq, hash FROM inserted ORDER BY seq DESC LIMIT 1) AS newest
  WHERE c.tenant_id = $1
  RETURNING c.last_seq
)
SELECT count(*) FROM inserted
"""


class AuditRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # ---- appending (the consumer) -------------------------------------------------------
    async def lock_chain(
        self, tenant_id: UUID, event_ids: Sequence[UUID], payloads: Sequence[str]
    ) -> ChainHead:
        """Create or lock the tenant's chain head (held until commit), say which of
        ``event_ids`` are already recorded, and return ``payloads`` (JSON texts) as
        ``jsonb`` writes them back."""
        row = await direct.fetchrow(
            self.session, _LOCK_HEAD, tenant_id, GENESIS_HASH, list(event_ids), list(payloads)
        )
        if row is None:  # pragma: no cover - the upsert always returns the head
            raise LookupError(f"no chain head for tenant {tenant_id}")
        return ChainHead(row["last_seq"], row["last_hash"], frozenset(row["known"]),
                         list(row["payloads"]))

    async def append(self, tenant_id: UUID, rows: NewEvents) -> int:
        """Insert the rows and advance the head to the newest; returns how many were
        inserted (fewer when an id was recorded meanwhile)."""
        inserted = await direct.fetchval(
            self.session, _APPEND, tenant_id, rows.id, rows.seq, rows.occurred_at,
            rows.actor_id, rows.actor_type, rows.action, rows.resource_type, rows.resource_id,
            rows.request_id, rows.ip, rows.changes, rows.data, rows.hash, rows.prev_hash,
        )
        return int(inserted)

    # ---- reading ------------------------------------------------------------------------
    def _filtered(self, tenant_id: UUID, filters: EventFilters) -> Select[Any]:
        stmt = select(*EVENT_COLUMNS).where(AuditEvent.tenant_id == tenant_id)
        if filters.actor_id is not None:
            stmt = stmt.where(AuditEvent.actor_id == filters.actor_id)
        if filters.action is not None:
            stmt = stmt.where(AuditEvent.action == filters.action)
        if filters.resource_type is not None:
            stmt = stmt.where(AuditEvent.resource_type == filters.resource_type)
        if filters.resource_id is not None:
            stmt = stmt.where(AuditEvent.resource_id == filters.resource_id)
        if filters.occurred_from is not None:
            stmt = stmt.where(AuditEvent.occurred_at >= filters.occurred_from)
        if filters.occurred_to is not None:
            stmt = stmt.where(AuditEvent.occurred_at <= filters.occurred_to)
        return stmt

    def _searched(
        self,
        stmt: Select[Any],
        filters: EventFilters,
        before: tuple[datetime, int] | None,
        limit: int | None,
    ) -> Select[Any]:
        """Full text goes through ``audit.search_seqs``, which RLS cannot slow down
        (migration 0005 says why); the rows are still read under RLS."""
        if filters.q is None:
            return stmt
        seqs = func.audit.search_seqs(
            filters.q,
            filters.actor_id,
            filters.action,
            filters.resource_type,
            filters.resource_id,
            filters.occurred_from,
            filters.occurred_to,
            before[0] if before else None,
            before[1] if before else None,
            limit,
        )
        return stmt.where(AuditEvent.seq.in_(select(seqs).scalar_subquery()))

    async def page(
        self,
        tenant_id: UUID,
        filters: EventFilters,
        *,
        before: tuple[datetime, int] | None,
        limit: int,
    ) -> Sequence[Row[Any]]:
        """Newest first by ``(occurred_at, seq)``; ``before`` is the keyset cursor."""
        stmt = self._searched(self._filtered(tenant_id, filters), filters, before, limit)
        if before is not None:
            stmt = stmt.where(tuple_(AuditEvent.occurred_at, AuditEvent.seq) < tuple_(*before))
        stmt = stmt.order_by(AuditEvent.occurred_at.desc(), AuditEvent.seq.desc()).limit(limit)
        rows: Sequence[Row[Any]] = (await self.session.execute(stmt)).all()
        return rows

    async def get(self, tenant_id: UUID, event_id: UUID) -> Row[Any] | None:
        stmt = select(*EVENT_COLUMNS).where(
            AuditEvent.tenant_id == tenant_id, AuditEvent.id == event_id
        )
        return (await self.session.execute(stmt)).first()

    async def stream(
        self, tenant_id: UUID, filters: EventFilters, *, batch: int = 1000
    ) -> AsyncIterator[Row[Any]]:
        """Oldest first, through a server-side cursor (constant memory)."""
        stmt = self._searched(self._filtered(tenant_id, filters), filters, None, None)
        stmt = stmt.order_by(AuditEvent.seq)
        result = await self.session.stream(stmt.execution_options(yield_per=batch))
        async for row in result:
            yield row

    async def live_batch(
        self, tenant_id: UUID, *, after_seq: int, up_to: int, limit: int
    ) -> Sequence[Row[Any]]:
        stmt = (
            select(*EVENT_COLUMNS)
            .where(
                AuditEvent.tenant_id == tenant_id,
                AuditEvent.seq > after_seq,
                AuditEvent.seq <= up_to,
            )
            .order_by(AuditEvent.seq)
            .limit(limit)
        )
        return (await self.session.execute(stmt)).all()

    async def segments(self, tenant_id: UUID) -> Sequence[ArchiveSegment]:
        stmt = (
            select(ArchiveSegment)
            .where(ArchiveSegment.tenant_id == tenant_id)
            .order_by(ArchiveSegment.first_seq)
        )
        return (await self.session.execute(stmt)).scalars().all()

    async def chain_head(self, tenant_id: UUID) -> tuple[int, str] | None:
        row = (
            await self.session.execute(
                select(Chain.last_seq, Chain.last_hash).where(Chain.tenant_id == tenant_id)
            )
        ).first()
        return (row.last_seq, row.last_hash) if row else None

    # ---- archival (owner only) ----------------------------------------------------------
    async def tenants_with_events(self) -> list[UUID]:
        return list((await self.session.execute(select(Chain.tenant_id))).scalars())

    async def archivable_until(self, tenant_id: UUID, before: datetime) -> int | None:
        """The last seq of the longest live prefix whose events all happened before
        ``before``; archiving a prefix keeps the live rows one contiguous range."""
        first_kept = (
            await self.session.execute(
                select(func.min(AuditEvent.seq)).where(
                    AuditEvent.tenant_id == tenant_id, AuditEvent.occurred_at >= before
                )
            )
        ).scalar()
        if first_kept is not None:
            last: int | None = (
                await self.session.execute(
                    select(func.max(AuditEvent.seq)).where(
                        AuditEvent.tenant_id == tenant_id, AuditEvent.seq < first_kept
                    )
                )
            ).scalar()
            return last
        last_any: int | None = (
            await self.session.execute(
                select(func.max(AuditEvent.seq)).where(AuditEvent.tenant_id == tenant_id)
            )
        ).scalar()
        return last_any

    async def oldest_live(self, tenant_id: UUID, *, up_to: int, limit: int) -> Sequence[Row[Any]]:
        stmt = (
            select(*EVENT_COLUMNS)
            .where(AuditEvent.tenant_id == tenant_id, AuditEvent.seq <= up_to)
            .order_by(AuditEvent.seq)
            .limit(limit)
        )
        return (await self.session.execute(stmt)).all()

    async def enter_archiving(self) -> None:
        """Let this transaction delete archived rows (the append-only trigger checks it)."""
        await self.session.execute(text("SELECT set_config('audit.archiving', 'on', true)"))

    async def record_segment(self, values: dict[str, Any]) -> None:
        await self.session.execute(pg_insert(ArchiveSegment).values(**values))

    async def delete_range(self, tenant_id: UUID, first_seq: int, last_seq: int) -> int:
        result = await self.session.execute(
            delete(AuditEvent).where(
                AuditEvent.tenant_id == tenant_id,
                AuditEvent.seq >= first_seq,
                AuditEvent.seq <= last_seq,
            )
        )
        deleted: int = result.rowcount  # type: ignore[attr-defined]
        return deleted

    async def add_restored(self, rows: list[dict[str, Any]]) -> int:
        if not rows:
            return 0
        stmt = (
            pg_insert(RestoredEvent)
            .values(rows)
            .on_conflict_do_nothing(index_elements=[RestoredEvent.tenant_id, RestoredEvent.seq])
            .returning(RestoredEvent.seq)
        )
        return len((await self.session.execute(stmt)).all())


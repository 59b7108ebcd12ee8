"""All of audit's SQL. Requests and the consumer run under the transaction's tenant (RLS);
the archive commands run as the database owner and name the tenant explicitly."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    Row,
    Select,
    String,
    Table,
    bindparam,
    cast,
    delete,
    func,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.domains.audit.chain import GENESIS_HASH, dumps
from pantherahive.domains.audit.tables import ArchiveSegment, AuditEvent, Chain, RestoredEvent

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
    last_seq: int
    last_hash: str
    changes: dict[str, Any]
    data: dict[str, Any]


class AuditRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # ---- appending (the consumer) -------------------------------------------------------
    async def lock_chain(
        self, tenant_id: UUID, changes: dict[str, Any], data: dict[str, Any]
    ) -> ChainHead:
        """Create or lock the tenant's chain head (held until commit), in one round trip.

        The payloads come back through ``jsonb`` so the hash is computed over exactly what
        will be stored and read back (``jsonb`` normalises numbers and duplicate keys).
        """
        stmt = (
            pg_insert(Chain)
            .values(tenant_id=tenant_id, last_seq=0, last_hash=GENESIS_HASH)
            .on_conflict_do_update(index_elements=[Chain.tenant_id],
                                   set_={"last_seq": Chain.last_seq})
            .returning(
                Chain.last_seq,
                Chain.last_hash,
                cast(bindparam("changes", _json(changes), type_=String), JSONB).label("changes"),
                cast(bindparam("data", _json(data), type_=String), JSONB).label("data"),
            )
        )
        row = (await self.session.execute(stmt)).one()
        return ChainHead(row.last_seq, row.last_hash, row.changes, row.data)

    async def append(self, values: dict[str, Any]) -> bool:
        """Insert the event and advance the chain head; False if the event id is known."""
        events, chains = _table(AuditEvent), _table(Chain)
        inserted = (
            pg_insert(events)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[events.c.id])
            .returning(events.c.tenant_id, events.c.seq, events.c.hash)
            .cte("inserted")
        )
        stmt = (
            update(chains)
            .where(chains.c.tenant_id == inserted.c.tenant_id)
            .values(last_seq=inserted.c.seq, last_hash=inserted.c.hash)
            .returning(inserted.c.seq)
        )
        return (await self.session.execute(stmt)).first() is not None

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


def _table(model: type[Any]) -> Table:
    table: Table = model.__table__
    return table


def _json(value: dict[str, Any]) -> str:
    return dumps(value).decode()

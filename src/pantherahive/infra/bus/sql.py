"""All SQL of the event backbone, and the mapping of its rows: outbox reads (through the
SECURITY DEFINER doors of migration 0004), consumer offsets, processed markers, dead
letters and retention (migration 0012). No decisions here: the callers make those.

What a consumer runs for every batch and every event — reading the outbox, locking and
moving its offset, its processed marker, the transaction's tenant — is fixed SQL on the
session's own connection (``infra.db.direct``): through the SQLAlchemy session each of
these statements cost 150-300 µs of CPU, paid several times per event.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.infra.bus.codec import Cursor, event_from_row, from_document, to_document
from pantherahive.infra.bus.consumer import Event
from pantherahive.infra.db import direct
from pantherahive.infra.db.engine import TENANT_SETTING, Database

_COLUMNS = (
    "position, id, tenant_id, type, version, occurred_at, actor_id, subject_type, subject_id, "
    "data, request_id, ip, audited, xid::text AS xid"
)
# Statements assembled from the constants above only (no input reaches the SQL text).
_READ_UNPUBLISHED = f"SELECT {_COLUMNS} FROM bus.read_unpublished(:limit)"  # noqa: S608
_LAG = (
    "SELECT bus.outbox_pending(last_xid, last_position) AS lag FROM bus.consumer_offsets "
    "WHERE consumer = $1"
)
_OUTBOX_COLUMNS = ", ".join(f"o.{name}" for name in _COLUMNS.split(", ")[:-1])
# One round trip per read: the consumer's position, the safe rows after it, and how many
# events it wants are committed after it (capped just above the batch: enough to tell
# whether some wait above the horizon). Migration 0013.
_READ_NEXT = (
    "SELECT c.last_xid::text AS after_xid, c.last_position AS after_position, "  # noqa: S608
    f"k.committed, {_OUTBOX_COLUMNS}, o.xid::text AS xid "
    "FROM bus.consumer_offsets c "
    "CROSS JOIN LATERAL bus.outbox_committed(c.last_xid, c.last_position, $3::text[], $2 + 1)"
    " AS k(committed) "
    "LEFT JOIN LATERAL bus.read_outbox(c.last_xid, c.last_position, $2) AS o ON true "
    "WHERE c.consumer = $1 ORDER BY o.xid, o.position"
)
_READ_OFFSET = (
    "SELECT last_xid::text AS xid, last_position FROM bus.consumer_offsets "
    "WHERE consumer = $1"
)
_READ_OFFSET_LOCKED = _READ_OFFSET + " FOR UPDATE"
# The first statement of a chunk: lock the position and scope the transaction to the
# first event's tenant in one round trip (set_config runs once: one row).
_LOCK_OFFSET_FOR_TENANT = (
    "SELECT last_xid::text AS xid, last_position, "  # noqa: S608 - constants only
    f"set_config('{TENANT_SETTING}', $2, true) "
    "FROM bus.consumer_offsets WHERE consumer = $1 FOR UPDATE"
)
_WRITE_OFFSET = (
    "UPDATE bus.consumer_offsets SET last_xid = $2::text::xid8, last_position = $3, "
    "updated_at = now() WHERE consumer = $1"
)
# Forward only: under READ COMMITTED the condition is re-checked on the newest row version
# after waiting for a concurrent runner's lock, so a position is never moved back.
_ADVANCE_OFFSET = (
    "UPDATE bus.consumer_offsets SET last_xid = $2::text::xid8, last_position = $3, "
    "updated_at = now() WHERE consumer = $1 AND (last_xid, last_position) < ($2::text::xid8, $3)"
)
_ENSURE_OFFSET = (
    "INSERT INTO bus.consumer_offsets (consumer) VALUES ($1) ON CONFLICT (consumer) DO NOTHING"
)
_CLAIM_MARKER = (
    "INSERT INTO bus.processed_events (consumer, event_id, tenant_id) VALUES ($1, $2, $3) "
    "ON CONFLICT (consumer, event_id) DO NOTHING RETURNING true"
)
_SET_TENANT = f"SELECT set_config('{TENANT_SETTING}', $1, true)"
_DL_COLUMNS = "id, consumer, event, payload, error, attempts, parked_at, replayed_at"
_GET_DEAD_LETTER = f"SELECT {_DL_COLUMNS} FROM bus.dead_letters WHERE id = :id"  # noqa: S608
_LOCK_DEAD_LETTER = (
    f"SELECT {_DL_COLUMNS} FROM bus.dead_letters "  # noqa: S608
    "WHERE id = :id AND replayed_at IS NULL FOR UPDATE"
)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    event: Event
    cursor: Cursor


@dataclass(frozen=True, slots=True)
class NextRows:
    """What a consumer reads: its position, the safe rows after it, and how many events of
    its types are committed after it (safe or not; capped at ``limit + 1``)."""

    after: Cursor
    rows: list[OutboxRow]
    committed: int


async def read_next(
    db: Database, consumer: str, limit: int, types: Collection[str] | None
) -> NextRows:
    """The consumer's next rows in one statement, outside any transaction."""
    records = await _fetch_autocommit(
        db, _READ_NEXT, consumer, limit, sorted(types) if types is not None else None
    )
    if not records:
        raise LookupError(f"consumer {consumer!r} has no offset row")
    first = records[0]
    rows = [OutboxRow(event_from_row(row), Cursor(int(row["xid"]), row["position"]))
            for row in records if row["position"] is not None]
    return NextRows(Cursor(int(first["after_xid"]), first["after_position"]), rows,
                    int(first["committed"]))


async def _fetch_autocommit(db: Database, sql: str, *args: Any) -> list[direct.Record]:
    """One statement on a pooled connection in no transaction: one round trip, where a
    session adds a BEGIN and a ROLLBACK (returning the connection sends nothing when no
    transaction was begun)."""
    async with db.engine.connect() as conn:
        driver: Any = (await conn.get_raw_connection()).driver_connection
        try:
            rows: list[direct.Record] = await driver.fetch(sql, *args)
        except Exception:
            if driver.is_closed():
                await conn.invalidate()
            raise
        return rows


async def lag(db: Database, consumer: str) -> int:
    """Committed events after the consumer's stored position (capped at 100000)."""
    records = await _fetch_autocommit(db, _LAG, consumer)
    return int(records[0]["lag"]) if records else 0


async def set_tenant(session: AsyncSession, tenant_id: object) -> None:
    """``infra.db.engine.set_tenant`` as fixed SQL: the runner sets it for every event."""
    await direct.fetchval(session, _SET_TENANT, str(tenant_id))


async def read_unpublished(session: AsyncSession, limit: int) -> list[Event]:
    result = await session.execute(
        text(_READ_UNPUBLISHED), {"limit": limit}
    )
    return [event_from_row(row) for row in result]


async def mark_published(session: AsyncSession, positions: Sequence[int]) -> int:
    value = await session.scalar(
        text("SELECT bus.mark_published(CAST(:positions AS bigint[]))"),
        {"positions": list(positions)},
    )
    return int(value or 0)


async def ensure_offset(session: AsyncSession, consumer: str) -> None:
    await direct.execute(session, _ENSURE_OFFSET, consumer)


async def read_offset(session: AsyncSession, consumer: str, *, lock: bool = False) -> Cursor:
    """The consumer's position; ``lock`` serialises every runner of this consumer."""
    row = await direct.fetchrow(session, _READ_OFFSET_LOCKED if lock else _READ_OFFSET, consumer)
    if row is None:
        raise LookupError(f"consumer {consumer!r} has no offset row")
    return Cursor(int(row["xid"]), row["last_position"])


async def lock_offset(session: AsyncSession, consumer: str, tenant_id: object) -> Cursor:
    """``read_offset(lock=True)`` and ``set_tenant(tenant_id)`` in one statement."""
    row = await direct.fetchrow(session, _LOCK_OFFSET_FOR_TENANT, consumer, str(tenant_id))
    if row is None:
        raise LookupError(f"consumer {consumer!r} has no offset row")
    return Cursor(int(row["xid"]), row["last_position"])


async def write_offset(session: AsyncSession, consumer: str, cursor: Cursor) -> None:
    await direct.execute(session, _WRITE_OFFSET, consumer, str(cursor.xid), cursor.position)


async def advance_offset(session: AsyncSession, consumer: str, cursor: Cursor) -> None:
    """Move the consumer's position to ``cursor`` unless it is already there or beyond."""
    await direct.execute(session, _ADVANCE_OFFSET, consumer, str(cursor.xid), cursor.position)


async def claim_marker(session: AsyncSession, consumer: str, event: Event) -> bool:
    """Record that ``consumer`` handles ``event``; False when it already did (a duplicate).

    A concurrent duplicate blocks on the primary key until this transaction ends.
    """
    claimed = await direct.fetchval(session, _CLAIM_MARKER, consumer, event.id, event.tenant_id)
    return bool(claimed)


async def park(
    session: AsyncSession, consumer: str, event: Event, error: str, attempts: int
) -> None:
    await session.execute(
        text(
            "INSERT INTO bus.dead_letters "
            "(consumer, event_id, tenant_id, event_type, position, event, error, attempts) "
            "VALUES (:consumer, :event_id, :tenant_id, :type, :position, "
            "CAST(:event AS jsonb), :error, :attempts) "
            "ON CONFLICT (consumer, event_id) DO UPDATE SET error = EXCLUDED.error, "
            "attempts = bus.dead_letters.attempts + EXCLUDED.attempts, parked_at = now(), "
            "replayed_at = NULL"
        ),
        {
            "consumer": consumer,
            "event_id": event.id,
            "tenant_id": event.tenant_id,
            "type": event.type,
            "position": event.position,
            "event": _json(to_document(event)),
            "error": error,
            "attempts": attempts,
        },
    )


async def park_malformed(
    session: AsyncSession, consumer: str, payload: bytes, error: str
) -> int:
    """Park a broker message that is not an event (no trustworthy id, type or tenant):
    through the SECURITY DEFINER door of migration 0011, since RLS lets the app role insert
    only rows of the transaction's tenant."""
    parked = await session.scalar(
        text("SELECT bus.park_malformed(:consumer, :payload, :error)"),
        {"consumer": consumer, "payload": payload, "error": error},
    )
    return int(parked)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A parked event, or (``event`` None) the raw ``payload`` of a message that did not
    decode as one."""

    id: int
    consumer: str
    event: Event | None
    error: str
    attempts: int
    parked_at: datetime
    replayed_at: datetime | None
    payload: bytes | None = None


def _dead_letter(row: Any) -> DeadLetter:
    return DeadLetter(
        id=row.id,
        consumer=row.consumer,
        event=from_document(row.event) if row.event is not None else None,
        error=row.error,
        attempts=row.attempts,
        parked_at=row.parked_at,
        replayed_at=row.replayed_at,
        payload=bytes(row.payload) if row.payload is not None else None,
    )


async def list_dead_letters(
    session: AsyncSession,
    *,
    consumer: str | None = None,
    include_replayed: bool = False,
    limit: int = 100,
) -> list[DeadLetter]:
    """Parked events, oldest first (as the owner for every tenant, else under RLS)."""
    clauses = []
    params: dict[str, Any] = {"limit": limit}
    if consumer is not None:
        clauses.append("consumer = :consumer")
        params["consumer"] = consumer
    if not include_replayed:
        clauses.append("replayed_at IS NULL")
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    result = await session.execute(
        text(
            f"SELECT {_DL_COLUMNS} FROM bus.dead_letters {where} "  # noqa: S608 - constant parts
            "ORDER BY id LIMIT :limit"
        ),
        params,
    )
    return [_dead_letter(row) for row in result]


async def lock_dead_letter(session: AsyncSession, dead_letter_id: int) -> DeadLetter | None:
    row = (
        await session.execute(
            text(_LOCK_DEAD_LETTER),
            {"id": dead_letter_id},
        )
    ).one_or_none()
    return None if row is None else _dead_letter(row)


async def mark_replayed(session: AsyncSession, dead_letter_id: int) -> None:
    await session.execute(
        text("UPDATE bus.dead_letters SET replayed_at = now() WHERE id = :id"),
        {"id": dead_letter_id},
    )


async def record_replay_failure(
    session: AsyncSession, dead_letter_id: int, error: str
) -> None:
    await session.execute(
        text(
            "UPDATE bus.dead_letters SET error = :error, attempts = attempts + 1, "
            "parked_at = now() WHERE id = :id"
        ),
        {"id": dead_letter_id, "error": error},
    )


async def get_dead_letter(session: AsyncSession, dead_letter_id: int) -> DeadLetter | None:
    row = (
        await session.execute(text(_GET_DEAD_LETTER), {"id": dead_letter_id})
    ).one_or_none()
    return None if row is None else _dead_letter(row)


async def prune_outbox(
    session: AsyncSession, before: datetime, consumers: Sequence[str] | None, limit: int
) -> int:
    """Delete up to ``limit`` outbox rows older than ``before`` that are no longer needed:
    passed by every one of ``consumers`` (embedded), or published (None: a broker)."""
    deleted = await session.scalar(
        text("SELECT bus.prune_outbox(:before, CAST(:consumers AS text[]), :limit)"),
        {"before": before, "consumers": consumers, "limit": limit},
    )
    return int(deleted or 0)


async def prune_processed(session: AsyncSession, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` processed markers older than ``before``."""
    deleted = await session.scalar(
        text("SELECT bus.prune_processed(:before, :limit)"), {"before": before, "limit": limit}
    )
    return int(deleted or 0)


def _json(doc: dict[str, Any]) -> str:
    return orjson.dumps(doc).decode()

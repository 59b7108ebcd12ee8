"""Parked events: list them, and replay one through its consumer's handler.

A replay runs the handler and marks the dead letter replayed in one transaction (under
the event's tenant, as the app role), so replaying twice never applies an effect twice.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from pantherahive.infra.bus import sql
from pantherahive.infra.bus.consumer import ConsumerSpec
from pantherahive.infra.bus.delivery import describe_error, run_handler
from pantherahive.infra.bus.sql import DeadLetter
from pantherahive.infra.db.engine import Database, set_tenant
from pantherahive.infra.logging import get_logger

log = get_logger(__name__)


class ReplayResult(enum.StrEnum):
    REPLAYED = "replayed"
    FAILED = "failed"
    NOT_FOUND = "not found"
    UNKNOWN_CONSUMER = "unknown consumer"
    MALFORMED = "malformed: not an event, cannot be replayed"


def error_summary(error: str) -> str:
    """The ``Type: message`` line of a stored traceback (its last unindented line)."""
    lines = [line for line in error.strip().splitlines() if line and not line[0].isspace()]
    candidates = [line for line in lines if not line.startswith(("(", "Traceback"))]
    return (candidates or lines or [""])[-1][:300]


async def list_parked(
    owner: Database,
    *,
    consumer: str | None = None,
    include_replayed: bool = False,
    limit: int = 100,
) -> list[DeadLetter]:
    """Every tenant's parked events; ``owner`` connects as the database owner."""
    async with owner.sessions() as session:
        return await sql.list_dead_letters(
            session, consumer=consumer, include_replayed=include_replayed, limit=limit
        )


async def replay(
    owner: Database, app: Database, consumers: Sequence[ConsumerSpec], dead_letter_id: int
) -> ReplayResult:
    """Run a parked event through its consumer again; on failure it stays parked with the
    new error."""
    async with owner.sessions() as session:
        letter = await sql.get_dead_letter(session, dead_letter_id)
    if letter is None or letter.replayed_at is not None:
        return ReplayResult.NOT_FOUND
    if letter.event is None:
        return ReplayResult.MALFORMED
    spec = next((spec for spec in consumers if spec.name == letter.consumer), None)
    if spec is None:
        return ReplayResult.UNKNOWN_CONSUMER
    event = letter.event
    try:
        async with app.sessions() as session, session.begin():
            await set_tenant(session, event.tenant_id)
            locked = await sql.lock_dead_letter(session, dead_letter_id)
            if locked is None or locked.event is None:
                return ReplayResult.NOT_FOUND
            await sql.claim_marker(session, spec.name, locked.event)
            await run_handler(spec, session, locked.event)
            await sql.mark_replayed(session, dead_letter_id)
    except Exception as exc:
        log.warning("replay failed", dead_letter=dead_letter_id, error=repr(exc))
        async with app.sessions() as session, session.begin():
            await set_tenant(session, event.tenant_id)
            await sql.record_replay_failure(session, dead_letter_id, describe_error(exc))
        return ReplayResult.FAILED
    return ReplayResult.REPLAYED

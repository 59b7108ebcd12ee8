"""Retention of ``bus.outbox`` and ``bus.processed_events`` (migration 0012).

One process at a time prunes (advisory lock ``prune`` on the leader's control connection),
every ``interval`` seconds — the embedded runtime and the broker worker both call
:meth:`Pruner.tick` from their leadership loop. Outbox rows go once they are older than
``keep`` *and* no longer needed: passed by every registered consumer (embedded) or
published (broker). Processed markers go once older than ``keep``: a broker message
redelivered after that would be handled again, so ``keep`` must exceed any redelivery
horizon (broker retention, consumer lag).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.infra.bus import sql
from pantherahive.infra.bus.control_connection import ControlConnection
from pantherahive.infra.db.engine import Database
from pantherahive.infra.logging import get_logger

log = get_logger(__name__)
BATCH = 5_000
MAX_BATCHES = 200  # per table and tick: a large backlog is pruned over several ticks


@dataclass(frozen=True, slots=True)
class Pruned:
    outbox: int
    markers: int


async def prune_once(
    db: Database, *, keep: timedelta, consumers: Sequence[str] | None, batch: int = BATCH
) -> Pruned:
    """Delete what retention allows, in batches of ``batch`` rows (one transaction each).

    ``consumers``: the registered consumers reading the outbox (embedded mode); None with
    a broker, where a row may go once published.
    """
    before = datetime.now(UTC) - keep
    names = None if consumers is None else sorted(set(consumers))
    outbox = await _batches(
        db, lambda session: sql.prune_outbox(session, before, names, batch), batch
    )
    markers = await _batches(
        db, lambda session: sql.prune_processed(session, before, batch), batch
    )
    return Pruned(outbox, markers)


async def _batches(
    db: Database, delete: Callable[[AsyncSession], Awaitable[int]], batch: int
) -> int:
    total = 0
    for _ in range(MAX_BATCHES):
        async with db.sessions() as session, session.begin():
            deleted = await delete(session)
        total += deleted
        if deleted < batch:
            break
    return total


class Pruner:
    """Runs ``prune_once`` at most every ``interval`` seconds (the first time one interval
    after start), when this process wins the ``prune`` lock."""

    def __init__(
        self, db: Database, *, keep: timedelta, interval: float,
        consumers: Sequence[str] | None,
    ) -> None:
        self.db = db
        self.keep = keep
        self.interval = interval
        self.consumers = None if consumers is None else list(consumers)
        self._next = time.monotonic() + interval

    async def tick(self, control: ControlConnection) -> Pruned | None:
        if time.monotonic() < self._next:
            return None
        self._next = time.monotonic() + self.interval
        if not await control.try_lock("prune"):
            return None
        try:
            pruned = await prune_once(self.db, keep=self.keep, consumers=self.consumers)
        except Exception as exc:  # retention is housekeeping: never stop the consumers
            log.warning("bus retention prune failed", error=repr(exc))
            return None
        if pruned.outbox or pruned.markers:
            log.info("bus retention pruned", outbox=pruned.outbox, markers=pruned.markers)
        return pruned

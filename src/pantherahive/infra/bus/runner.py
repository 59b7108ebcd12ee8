"""Delivering one event to one consumer: the handler's effects and the consumer's record
of having handled the event commit in one transaction; failures are retried with
exponential backoff, then parked in ``bus.dead_letters`` so the stream goes on."""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.infra.bus import store
from pantherahive.infra.bus.codec import Cursor
from pantherahive.infra.bus.consumer import ConsumerSpec, Event
from pantherahive.infra.bus.metrics import CONSUMER_LAG, EVENTS_CONSUMED, HANDLER_ERRORS
from pantherahive.infra.db.engine import Database, set_tenant
from pantherahive.infra.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``max_attempts`` tries in all; the n-th retry waits ``base * 2**(n-1)`` (capped)."""

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, failed_attempts: int) -> float:
        return float(min(self.max_delay, self.base_delay * 2 ** (failed_attempts - 1)))


class Outcome(enum.StrEnum):
    HANDLED = "handled"
    DUPLICATE = "duplicate"
    PARKED = "parked"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class BatchResult:
    read: int
    handled: int


class ConsumerRunner:
    """Runs one ``ConsumerSpec``. Two ways to know an event was handled:

    * with a ``Cursor`` (embedded): the consumer's offset row, locked ``FOR UPDATE`` in the
      handler's transaction, so concurrent runners of one consumer take turns;
    * without (NATS, Kafka, replays): a ``bus.processed_events`` marker keyed on event id.
    """

    def __init__(
        self,
        db: Database,
        spec: ConsumerSpec,
        retry: RetryPolicy,
        stopping: asyncio.Event | None = None,
    ) -> None:
        self.db = db
        self.spec = spec
        self.retry = retry
        self.stopping = stopping or asyncio.Event()

    @property
    def name(self) -> str:
        return self.spec.name

    async def deliver(self, event: Event, cursor: Cursor | None = None) -> Outcome:
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self.db.sessions() as session, session.begin():
                    await set_tenant(session, event.tenant_id)
                    if not await self._claim(session, event, cursor):
                        EVENTS_CONSUMED.labels(self.name, Outcome.DUPLICATE).inc()
                        return Outcome.DUPLICATE
                    await self.spec.handler(session, event)
            except Exception as exc:
                HANDLER_ERRORS.labels(self.name).inc()
                log.warning(
                    "event handler failed", consumer=self.name, event_id=str(event.id),
                    event_type=event.type, attempt=attempt, error=repr(exc),
                )
                if attempt >= self.retry.max_attempts:
                    return await self._park(event, cursor, store.describe_error(exc), attempt)
                if await self._pause(self.retry.delay(attempt)):
                    return Outcome.STOPPED
            else:
                EVENTS_CONSUMED.labels(self.name, Outcome.HANDLED).inc()
                return Outcome.HANDLED

    async def advance(self, cursor: Cursor) -> None:
        """Move past events this consumer does not want."""
        async with self.db.sessions() as session, session.begin():
            if await store.read_offset(session, self.name, lock=True) < cursor:
                await store.write_offset(session, self.name, cursor)

    async def ensure_offset(self) -> None:
        async with self.db.sessions() as session, session.begin():
            await store.ensure_offset(session, self.name)

    async def position(self) -> Cursor:
        async with self.db.sessions() as session:
            return await store.read_offset(session, self.name)

    async def pending(self) -> int:
        """Committed events not handled yet (a cheap count capped at 100000); sets the gauge."""
        async with self.db.sessions() as session:
            count = await store.pending_count(
                session, await store.read_offset(session, self.name)
            )
        CONSUMER_LAG.labels(self.name).set(count)
        return count

    async def process_batch(self, limit: int) -> BatchResult:
        """Read up to ``limit`` safe outbox rows after this consumer's offset and handle them
        in order; stops early (without skipping anything) when asked to stop."""
        async with self.db.sessions() as session:
            after = await store.read_offset(session, self.name)
            rows = await store.read_outbox(session, after, limit)
        handled = 0
        skipped_to: Cursor | None = None
        for row in rows:
            if self.stopping.is_set():
                break
            if not self.spec.wants(row.event.type):
                skipped_to = row.cursor
                continue
            outcome = await self.deliver(row.event, row.cursor)
            skipped_to = None
            if outcome is Outcome.STOPPED:
                break
            if outcome is not Outcome.DUPLICATE:
                handled += 1
        if skipped_to is not None:
            await self.advance(skipped_to)
        return BatchResult(read=len(rows), handled=handled)

    async def _claim(self, session: AsyncSession, event: Event, cursor: Cursor | None) -> bool:
        if cursor is None:
            return await store.claim_marker(session, self.name, event)
        if await store.read_offset(session, self.name, lock=True) >= cursor:
            return False
        await store.write_offset(session, self.name, cursor)
        return True

    async def _park(
        self, event: Event, cursor: Cursor | None, error: str, attempts: int
    ) -> Outcome:
        async with self.db.sessions() as session, session.begin():
            await set_tenant(session, event.tenant_id)
            if not await self._claim(session, event, cursor):
                return Outcome.DUPLICATE
            await store.park(session, self.name, event, error, attempts)
        EVENTS_CONSUMED.labels(self.name, Outcome.PARKED).inc()
        log.error(
            "event parked in dead letters", consumer=self.name, event_id=str(event.id),
            event_type=event.type, attempts=attempts,
        )
        return Outcome.PARKED

    async def _pause(self, seconds: float) -> bool:
        """Sleep, unless asked to stop first (True then: the event stays unhandled)."""
        if seconds <= 0:
            return self.stopping.is_set()
        try:
            await asyncio.wait_for(self.stopping.wait(), seconds)
        except TimeoutError:
            return False
        return True

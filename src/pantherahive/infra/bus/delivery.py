"""Delivering one event to one consumer: the handler's effects and the consumer's record
of having handled the event commit in one transaction; failures are retried with jittered
exponential backoff, then parked in ``bus.dead_letters`` so the stream goes on. A
``PermanentFailure`` is parked at once: no retry can cure it."""

from __future__ import annotations

import asyncio
import enum
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.core.retry import Backoff
from pantherahive.infra.bus import sql
from pantherahive.infra.bus.codec import Cursor, group_by_tenant
from pantherahive.infra.bus.consumer import ConsumerSpec, Event, PermanentFailure
from pantherahive.infra.bus.guard import (
    UnannouncedWrite,
    forget_emitted,
    has_emitted,
    take_write_marks,
)
from pantherahive.infra.bus.metrics import CONSUMER_LAG, EVENTS_CONSUMED, HANDLER_ERRORS
from pantherahive.infra.context import caused_by
from pantherahive.infra.db.engine import Database
from pantherahive.infra.logging import get_logger

log = get_logger(__name__)
MAX_ERROR_CHARS = 8000


async def run_handler(spec: ConsumerSpec, session: AsyncSession, event: Event) -> None:
    """The handler, in the context of the request that caused the event: its follow-up
    events carry the triggering request id, address and actor. A handler that changed rows
    of its announced schemas without emitting an event raises ``UnannouncedWrite`` (its
    transaction is rolled back, retried, then parked like any failure)."""
    forget_emitted(session)
    with caused_by(event.request_id, event.ip, event.tenant_id, event.actor_id):
        await spec.handler(session, event)
    await _check_announced(spec, session, [event])


async def run_batch_handler(
    spec: ConsumerSpec, session: AsyncSession, events: Sequence[Event]
) -> None:
    """The spec's batch handler for consecutive events of one tenant (the transaction is
    scoped to it). No request context is bound: the events have different causes. The
    write guard answers for the batch as a whole."""
    if spec.batch_handler is None:
        raise TypeError(f"consumer {spec.name} has no batch handler")
    forget_emitted(session)
    await spec.batch_handler(session, events)
    await _check_announced(spec, session, events)


async def _check_announced(
    spec: ConsumerSpec, session: AsyncSession, events: Sequence[Event]
) -> None:
    if not spec.announced_schemas:
        return
    # Taken after every handler, so in a chunk each handler answers for its own writes.
    written = await take_write_marks(session, spec.announced_schemas)
    if written and not has_emitted(session):
        types = ", ".join(sorted({event.type for event in events}))
        log.error("write without event", consumer=spec.name,
                  event_id=str(events[0].id) if len(events) == 1 else None,
                  event_type=types, schemas=written)
        raise UnannouncedWrite(
            f"consumer {spec.name} changed rows of {', '.join(written)} handling "
            f"{types} without emitting an event"
        )


def describe_error(exc: BaseException) -> str:
    """The traceback as a dead letter stores it (long ones keep their head and tail)."""
    text = "".join(traceback.format_exception(exc))
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS // 4] + "\n…\n" + text[-MAX_ERROR_CHARS * 3 // 4 :]
    return text


def permanent_failure(exc: BaseException) -> PermanentFailure | None:
    """The ``PermanentFailure`` that ``exc`` is, or that caused it (a handler may wrap it)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, PermanentFailure):
            return current
        seen.add(id(current))
        current = current.__cause__
    return None


def _nothing() -> None:
    return None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``max_attempts`` tries in all. The wait before the n-th retry is capped at
    ``base_delay * 2**(n-1)`` (and ``max_delay``) and drawn below the cap by ``jitter``
    (``core.retry.Backoff``): consumers on several workers that failed together do not
    retry together. ``base_delay=0`` means no wait at all."""

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    jitter: float = 1.0

    def delay(self, failed_attempts: int) -> float:
        return Backoff(self.base_delay, self.max_delay, self.jitter).delay(failed_attempts)


class Outcome(enum.StrEnum):
    HANDLED = "handled"
    DUPLICATE = "duplicate"
    PARKED = "parked"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class BatchResult:
    read: int
    handled: int
    # Committed events are waiting above the safe horizon (an older transaction is still
    # open): worth re-reading soon. Only known when ``read`` was below the limit.
    waiting: bool = False


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
        chunk_size: int = 50,
        committed: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.spec = spec
        self.retry = retry
        self.stopping = stopping or asyncio.Event()
        self.chunk_size = chunk_size
        # Called after each transaction that moved the position commits (it held an xid,
        # so it may have held other consumers' reads back).
        self._committed = committed or _nothing

    @property
    def name(self) -> str:
        return self.spec.name

    async def deliver(self, event: Event, cursor: Cursor | None = None) -> Outcome:
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self.db.sessions() as session, session.begin():
                    await sql.set_tenant(session, event.tenant_id)
                    if not await self._claim(session, event, cursor):
                        EVENTS_CONSUMED.labels(self.name, Outcome.DUPLICATE).inc()
                        return Outcome.DUPLICATE
                    await run_handler(self.spec, session, event)
            except Exception as exc:
                HANDLER_ERRORS.labels(self.name).inc()
                log.warning(
                    "event handler failed", consumer=self.name, event_id=str(event.id),
                    event_type=event.type, attempt=attempt, error=repr(exc),
                )
                permanent = permanent_failure(exc)
                if permanent is not None:
                    # The message first: it is the reason an operator reads.
                    reason = f"{permanent or type(permanent).__name__}\n{describe_error(exc)}"
                    return await self._park(event, cursor, reason, attempt)
                if attempt >= self.retry.max_attempts:
                    return await self._park(event, cursor, describe_error(exc), attempt)
                if await self._pause(self.retry.delay(attempt)):
                    return Outcome.STOPPED
            else:
                self._committed()
                EVENTS_CONSUMED.labels(self.name, Outcome.HANDLED).inc()
                return Outcome.HANDLED

    async def advance(self, cursor: Cursor) -> None:
        """Move past the end of a batch (events this consumer does not want included)."""
        async with self.db.sessions() as session, session.begin():
            await sql.advance_offset(session, self.name, cursor)
        self._committed()

    async def ensure_offset(self) -> None:
        async with self.db.sessions() as session, session.begin():
            await sql.ensure_offset(session, self.name)

    async def position(self) -> Cursor:
        async with self.db.sessions() as session:
            return await sql.read_offset(session, self.name)

    async def pending(self) -> int:
        """Committed events not handled (or stepped over) yet, capped at 100000; sets the
        lag gauge."""
        count = await sql.lag(self.db, self.name)
        CONSUMER_LAG.labels(self.name).set(count)
        return count

    async def process_batch(self, limit: int) -> BatchResult:
        """Read up to ``limit`` safe outbox rows after this consumer's offset and handle them
        in order; stops early (without skipping anything) when asked to stop."""
        batch = await sql.read_next(self.db, self.name, limit, self.spec.types)
        rows = batch.rows
        wanted = [row for row in rows if self.spec.wants(row.event.type)]
        # All safe rows were read, so whatever else of ours is committed waits above the
        # horizon (an older transaction is still open): worth a re-read soon.
        waiting = len(rows) < limit and batch.committed > len(wanted)
        if rows and not wanted:
            # Nothing to handle: step over them (forward only, so a concurrent runner that
            # got further is not moved back).
            await self.advance(rows[-1].cursor)
            return BatchResult(read=len(rows), handled=0, waiting=waiting)
        handled = 0
        passed: Cursor | None = None
        for start in range(0, len(wanted), self.chunk_size):
            if self.stopping.is_set():
                return BatchResult(read=len(rows), handled=handled)
            chunk = wanted[start : start + self.chunk_size]
            done = await self._deliver_chunk(chunk)
            if done is not None:
                handled += done
                passed = chunk[-1].cursor
                continue
            if self.stopping.is_set():
                return BatchResult(read=len(rows), handled=handled)
            # Something in the chunk failed: go event by event (retries, dead letters).
            for row in chunk:
                outcome = await self.deliver(row.event, row.cursor)
                if outcome is Outcome.STOPPED:
                    return BatchResult(read=len(rows), handled=handled)
                if outcome is not Outcome.DUPLICATE:
                    handled += 1
                passed = row.cursor
        if rows and passed != rows[-1].cursor and not self.stopping.is_set():
            # Unwanted events after the last one handled: move past them too.
            await self.advance(rows[-1].cursor)
        return BatchResult(read=len(rows), handled=handled, waiting=waiting)

    async def _deliver_chunk(self, chunk: list[sql.OutboxRow]) -> int | None:
        """Handle consecutive events in one transaction (one commit, one offset write);
        None when a handler raised, and nothing of the chunk was kept.

        With a batch handler the chunk goes in one piece, one call per tenant (each tenant's
        events in outbox order): the transaction stays as short as the handler's few
        statements, and every consumer's reads wait for it (the xid horizon).
        """
        try:
            async with self.db.sessions() as session, session.begin():
                # Locks the position, and scopes the transaction to the first tenant.
                scoped = chunk[0].event.tenant_id
                offset = await sql.lock_offset(session, self.name, scoped)
                todo = [row for row in chunk if row.cursor > offset]
                done: list[sql.OutboxRow] = []
                if self.spec.batch_handler is not None:
                    for events in group_by_tenant([row.event for row in todo]):
                        if events[0].tenant_id != scoped:
                            scoped = events[0].tenant_id
                            await sql.set_tenant(session, scoped)
                        await run_batch_handler(self.spec, session, events)
                    done = todo
                else:
                    for row in todo:
                        if done and self.stopping.is_set():
                            break  # graceful stop: commit what is done, leave the rest
                        if done or row.event.tenant_id != scoped:
                            # After a handler, set it again: a handler may have changed it.
                            await sql.set_tenant(session, row.event.tenant_id)
                        await run_handler(self.spec, session, row.event)
                        done.append(row)
                if done:
                    await sql.write_offset(session, self.name, done[-1].cursor)
        except Exception as exc:
            HANDLER_ERRORS.labels(self.name).inc()
            log.info("event chunk failed; retrying its events one by one",
                     consumer=self.name, error=repr(exc))
            return None
        self._committed()
        if done:
            EVENTS_CONSUMED.labels(self.name, Outcome.HANDLED).inc(len(done))
        return len(done)

    async def _claim(self, session: AsyncSession, event: Event, cursor: Cursor | None) -> bool:
        if cursor is None:
            return await sql.claim_marker(session, self.name, event)
        if await sql.read_offset(session, self.name, lock=True) >= cursor:
            return False
        await sql.write_offset(session, self.name, cursor)
        return True

    async def _park(
        self, event: Event, cursor: Cursor | None, error: str, attempts: int
    ) -> Outcome:
        async with self.db.sessions() as session, session.begin():
            await sql.set_tenant(session, event.tenant_id)
            if not await self._claim(session, event, cursor):
                return Outcome.DUPLICATE
            await sql.park(session, self.name, event, error, attempts)
        self._committed()
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

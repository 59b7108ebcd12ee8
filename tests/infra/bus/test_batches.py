"""The embedded runtime's cheaper paths: batch handlers (one call per tenant per chunk),
wake-ups routed by event type (NOTIFY payload, migration 0013), stepping over unwanted
events, and lingering consumers."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.infra.bus.codec import Cursor
from pantherahive.infra.bus.consumer import ConsumerSpec, Event
from pantherahive.infra.bus.delivery import ConsumerRunner, RetryPolicy
from pantherahive.infra.bus.embedded import EmbeddedRuntime, drain
from pantherahive.infra.bus.outbox import emit
from pantherahive.infra.db.engine import Database, set_tenant
from tests.infra.bus.conftest import (
    Effects,
    Emit,
    Recorder,
    first_read,
    forget_lag,
    record_effect,
    settled,
    wait_until,
)
from tests.support.events import adhoc


class BatchRecorder(Recorder):
    """A Recorder with a batch handler that remembers each call's events and the
    transaction's tenant setting; ``fail_batches`` makes every batch call raise."""

    def __init__(self, *, fail_batches: bool = False, linger: float = 0.0) -> None:
        super().__init__()
        self.batches: list[tuple[str | None, list[uuid.UUID]]] = []
        self.fail_batches = fail_batches
        self.linger = linger

    async def handle_batch(self, session: AsyncSession, events: Sequence[Event]) -> None:
        setting = await session.scalar(text("SELECT current_setting('app.tenant_id', true)"))
        self.batches.append((setting, [event.id for event in events]))
        for event in events:
            await record_effect(session, self.name, event)
        if self.fail_batches:
            raise RuntimeError("batch boom")

    @property
    def spec(self) -> ConsumerSpec:
        return ConsumerSpec(self.name, self.handle, self.types, batch_handler=self.handle_batch,
                            linger=self.linger)


async def caught_up(db: Database, spec: ConsumerSpec) -> ConsumerRunner:
    """A runner of ``spec`` whose position is at the end of the outbox."""
    await drain(db, [spec])
    return ConsumerRunner(db, spec, RetryPolicy())


async def offset(db: Database, consumer: str) -> Cursor:
    async with db.sessions() as session:
        row = (await session.execute(
            text("SELECT last_xid::text AS xid, last_position FROM bus.consumer_offsets "
                 "WHERE consumer = :c"), {"c": consumer})).one()
    return Cursor(int(row.xid), row.last_position)


async def last_cursor(db: Database, event_id: uuid.UUID) -> Cursor:
    async with db.sessions() as session:
        row = (await session.execute(
            text("SELECT xid::text AS xid, position FROM bus.outbox WHERE id = :id"),
            {"id": event_id})).one()
    return Cursor(int(row.xid), row.position)


async def test_a_batch_handler_gets_each_tenants_events_of_a_chunk_in_one_call(
    app_db: Database, effects: Effects, emit_events: Emit
) -> None:
    batch = BatchRecorder()
    a, b = uuid.uuid4(), uuid.uuid4()
    first_a = await emit_events(a, 3, batch.happened)
    only_b = await emit_events(b, 2, batch.other)
    more_a = await emit_events(a, 2, batch.happened)
    await emit_events(a, 1, f"{batch.prefix}.unwanted")
    await settled(app_db)  # all four commits in one read, so in one chunk

    assert await drain(app_db, [batch.spec]) == 7
    # One chunk: one call per tenant, each with its events in outbox order, scoped to it.
    assert batch.batches == [(str(a), first_a + more_a), (str(b), only_b)]
    assert batch.attempts == {}  # the per-event handler was not needed
    rows = await effects.rows(batch.name)
    assert [r.event_id for r in rows if r.tenant_id == a] == first_a + more_a
    assert all(r.setting == str(r.tenant_id) for r in rows)
    assert await drain(app_db, [batch.spec]) == 0


async def test_a_failing_batch_is_rolled_back_and_its_events_go_one_by_one(
    app_db: Database, effects: Effects, emit_events: Emit
) -> None:
    batch = BatchRecorder(fail_batches=True)
    ids = await emit_events(uuid.uuid4(), 4, batch.happened)
    await settled(app_db)  # one read, so one batch call
    assert await drain(app_db, [batch.spec], retry=RetryPolicy(max_attempts=1)) == 4
    assert len(batch.batches) == 1
    # The batch's effects were rolled back; each event then went through `handler` once.
    assert batch.attempts == dict.fromkeys(ids, 1)
    assert await effects.counts(batch.name) == dict.fromkeys(ids, 1)


async def test_a_batch_of_unwanted_events_is_stepped_over(
    app_db: Database, owner_db: Database, recorder: Recorder, effects: Effects, emit_events: Emit
) -> None:
    runner = await caught_up(app_db, recorder.spec)
    [wanted] = await emit_events(uuid.uuid4(), 1, recorder.happened)
    *_, last = await emit_events(uuid.uuid4(), 3, f"{recorder.prefix}.unwanted")
    await settled(app_db)
    # A batch that ends with unwanted events moves past them ...
    result = await runner.process_batch(500)
    assert result.handled == 1
    assert await offset(owner_db, recorder.name) == await last_cursor(owner_db, last)
    # ... and so does one made of nothing else.
    *_, later = await emit_events(uuid.uuid4(), 2, f"{recorder.prefix}.unwanted")
    await settled(app_db)
    result = await runner.process_batch(500)
    assert (result.read, result.handled, result.waiting) == (2, 0, False)
    assert await offset(owner_db, recorder.name) == await last_cursor(owner_db, later)
    assert list(await effects.counts(recorder.name)) == [wanted]


async def test_stepping_over_never_moves_a_position_back(
    app_db: Database, owner_db: Database, recorder: Recorder, emit_events: Emit
) -> None:
    runner = await caught_up(app_db, recorder.spec)
    [early] = await emit_events(uuid.uuid4(), 1, f"{recorder.prefix}.unwanted")
    [late] = await emit_events(uuid.uuid4(), 1, f"{recorder.prefix}.unwanted")
    await runner.advance(await last_cursor(owner_db, late))
    await runner.advance(await last_cursor(owner_db, early))  # e.g. a slower concurrent runner
    assert await offset(owner_db, recorder.name) == await last_cursor(owner_db, late)


async def test_committed_events_above_the_horizon_are_reported_waiting(
    app_db: Database, owner_db: Database, recorder: Recorder, emit_events: Emit
) -> None:
    tenant = uuid.uuid4()
    runner = await caught_up(app_db, recorder.spec)
    async with app_db.sessions() as slow:
        await slow.begin()
        await set_tenant(slow, tenant)
        await emit(slow, adhoc(f"{recorder.prefix}.unwanted"), subject_type="t", subject_id=1,
                   tenant_id=tenant)
        await emit_events(tenant, 1, f"{recorder.prefix}.unwanted")
        # Committed but above the horizon, and not of this consumer's types: no hurry.
        assert (await runner.process_batch(500)).waiting is False
        [mine] = await emit_events(tenant, 1, recorder.happened)
        assert (await runner.process_batch(500)).waiting is True
        await slow.commit()
    # The shared app's consumers handle these events too: wait until their transactions
    # no longer hold the horizon below ``mine``.
    await settled(app_db)
    result = await runner.process_batch(500)
    assert (result.handled, result.waiting) == (1, False)
    assert await offset(owner_db, recorder.name) == await last_cursor(owner_db, mine)


async def test_notify_names_the_committed_types(app_db: Database, owner_db: Database) -> None:
    received: list[str] = []
    kind = f"bt{uuid.uuid4().hex[:8]}"
    async with owner_db.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        await raw.add_listener("pantherahive_outbox", lambda *args: received.append(args[3]))
        tenant = uuid.uuid4()
        async with app_db.sessions() as session, session.begin():
            await set_tenant(session, tenant)
            for event_type in (f"{kind}.a", f"{kind}.b", f"{kind}.a"):
                await emit(session, adhoc(event_type), subject_type="t", subject_id=1,
                           tenant_id=tenant)

        async def both() -> bool:
            return {f"{kind}.a", f"{kind}.b"} <= set(received)

        await wait_until(both)
        await conn.invalidate()


async def test_a_wake_up_reaches_only_the_consumers_that_want_its_types(
    app_db: Database, owner_db: Database, effects: Effects, emit_events: Emit
) -> None:
    first, second = Recorder(), Recorder()
    await drain(app_db, [first.spec, second.spec])  # positions at the end of the outbox
    # Polls far beyond the test's patience: only NOTIFY moves a consumer.
    runtime = EmbeddedRuntime(app_db, [first.spec, second.spec], retry=RetryPolicy(),
                              poll_interval=600, lease_retry=600)
    forget_lag(first.name, second.name)
    await runtime.start()
    try:
        await first_read(first.name, second.name)  # both idle: only wake-ups move them
        before = await offset(owner_db, second.name)
        [mine] = await emit_events(uuid.uuid4(), 1, first.happened)

        async def handled() -> bool:
            return mine in await effects.counts(first.name)

        await wait_until(handled)
        # `second` does not want first's type: not woken, it did not even step over it.
        assert await offset(owner_db, second.name) == before
        [theirs] = await emit_events(uuid.uuid4(), 1, second.happened)

        async def second_handled() -> bool:
            return theirs in await effects.counts(second.name)

        await wait_until(second_handled)
        assert await offset(owner_db, second.name) == await last_cursor(owner_db, theirs)
    finally:
        await runtime.stop()


async def test_a_lingering_consumer_takes_a_burst_in_one_transaction(
    app_db: Database, effects: Effects, emit_events: Emit
) -> None:
    batch = BatchRecorder(linger=2.0)
    await drain(app_db, [batch.spec])
    runtime = EmbeddedRuntime(app_db, [batch.spec], retry=RetryPolicy(), poll_interval=600,
                              lease_retry=600)
    forget_lag(batch.name)
    await runtime.start()
    try:
        await first_read(batch.name)  # idle: the first commit below is what wakes it
        tenant = uuid.uuid4()
        # Five commits, each its own wake-up: the first starts the linger, which outlasts
        # the other four (the linger is a time window by design: 2 s against five commits
        # of a few milliseconds each).
        ids = [(await emit_events(tenant, 1, batch.happened))[0] for _ in range(5)]

        async def all_handled() -> bool:
            return set(ids) <= set(await effects.counts(batch.name))

        await wait_until(all_handled)
        assert batch.batches == [(str(tenant), ids)]
    finally:
        await runtime.stop()

"""The embedded runtime against the real outbox: order, once-only effects, retries,
dead letters and replay, the outbox gap, leadership, NOTIFY wake-ups, graceful stop."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.consumers import all_consumers
from pantherahive.infra.bus import dead_letters, sql
from pantherahive.infra.bus.consumer import ConsumerSpec, Event, PermanentFailure
from pantherahive.infra.bus.delivery import RetryPolicy
from pantherahive.infra.bus.embedded import EmbeddedRuntime, drain
from pantherahive.infra.bus.metrics import CONSUMER_LAG, HANDLER_ERRORS
from pantherahive.infra.bus.outbox import emit
from pantherahive.infra.context import begin_context, bind_principal, current_context
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


async def test_drain_handles_each_event_once_in_tenant_order_under_rls(
    app_db: Database, recorder: Recorder, effects: Effects, emit_events: Emit
) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    ids_a = await emit_events(a, 3, recorder.happened)
    ids_b = await emit_events(b, 2, recorder.other)
    more_a = await emit_events(a, 2, recorder.happened)
    await emit_events(a, 1, f"{recorder.prefix}.unwanted")

    lag = CONSUMER_LAG.labels(recorder.name)
    lag.set(-1)
    assert await drain(app_db, [recorder.spec]) == 8 - 1
    assert lag._value.get() == 0
    rows = await effects.rows(recorder.name)
    assert [r.event_id for r in rows if r.tenant_id == a] == ids_a + more_a
    assert [r.event_id for r in rows if r.tenant_id == b] == ids_b
    # The handler ran scoped to the event's tenant.
    assert all(r.setting == str(r.tenant_id) for r in rows)
    # Nothing is handled twice, and the position survived: a second drain has nothing to do.
    assert await drain(app_db, [recorder.spec]) == 0
    assert set((await effects.counts(recorder.name)).values()) == {1}


async def test_concurrent_drains_of_one_consumer_handle_each_event_once(
    app_db: Database, recorder: Recorder, effects: Effects, emit_events: Emit
) -> None:
    tenant = uuid.uuid4()
    ids = await emit_events(tenant, 30, recorder.happened)
    counts = await asyncio.gather(*(drain(app_db, [recorder.spec]) for _ in range(3)))
    assert sum(counts) == 30
    handled = await effects.counts(recorder.name)
    assert handled == dict.fromkeys(ids, 1)


async def test_retry_with_backoff_then_success_leaves_no_dead_letter(
    app_db: Database, owner_db: Database, effects: Effects, emit_events: Emit
) -> None:
    flaky = Recorder(fail=lambda _e, attempt: attempt < 3)
    before = HANDLER_ERRORS.labels(flaky.name)._value.get()
    [event_id] = await emit_events(uuid.uuid4(), 1, flaky.happened)
    retry = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02)

    assert await drain(app_db, [flaky.spec], retry=retry) == 1
    assert flaky.attempts[event_id] == 3
    # Failed attempts were rolled back: one effect only.
    assert await effects.counts(flaky.name) == {event_id: 1}
    assert HANDLER_ERRORS.labels(flaky.name)._value.get() - before == 2
    assert await dead_letters.list_parked(owner_db, consumer=flaky.name) == []


async def test_poison_event_is_parked_the_stream_goes_on_and_replay_applies_it_once(
    app_db: Database, owner_db: Database, effects: Effects, emit_events: Emit
) -> None:
    tenant = uuid.uuid4()
    broken = {"on": True}
    poison = Recorder(fail=lambda e, _a: broken["on"] and e.type.endswith(".other"))
    [first] = await emit_events(tenant, 1, poison.happened)
    [bad] = await emit_events(tenant, 1, poison.other)
    [after] = await emit_events(tenant, 1, poison.happened)

    handled = await drain(app_db, [poison.spec], retry=RetryPolicy(max_attempts=2, base_delay=0))
    assert handled == 3
    # Once in a chunk transaction with its neighbours, then twice on its own.
    assert poison.attempts[bad] == 3
    assert list(await effects.counts(poison.name)) == [first, after]

    [parked] = await dead_letters.list_parked(owner_db, consumer=poison.name)
    assert parked.event.id == bad
    assert parked.event.tenant_id == tenant
    assert parked.attempts == 2
    assert f"RuntimeError: boom on {poison.other} attempt 3" in parked.error

    # Still broken: the replay fails, the event stays parked with the new error.
    result = await dead_letters.replay(owner_db, app_db, [poison.spec], parked.id)
    assert result is dead_letters.ReplayResult.FAILED
    [still] = await dead_letters.list_parked(owner_db, consumer=poison.name)
    assert still.attempts == 3
    assert "attempt 4" in still.error

    broken["on"] = False
    result = await dead_letters.replay(owner_db, app_db, [poison.spec], parked.id)
    assert result is dead_letters.ReplayResult.REPLAYED
    again = await dead_letters.replay(owner_db, app_db, [poison.spec], parked.id)
    assert again is dead_letters.ReplayResult.NOT_FOUND
    assert await effects.counts(poison.name) == {first: 1, after: 1, bad: 1}
    assert await dead_letters.list_parked(owner_db, consumer=poison.name) == []
    [done] = await dead_letters.list_parked(
        owner_db, consumer=poison.name, include_replayed=True
    )
    assert done.replayed_at is not None


async def test_a_permanent_failure_is_parked_at_once_with_its_message_first(
    app_db: Database, owner_db: Database, effects: Effects, emit_events: Emit
) -> None:
    """Raised directly or as the cause of another exception: no retry can cure it, so the
    event is parked after one attempt of its own, and the stream goes on."""
    recorder = Recorder()
    wrapped = f"{recorder.prefix}.wrapped"
    calls: dict[uuid.UUID, int] = {}

    async def handle(session: AsyncSession, event: Event) -> None:
        calls[event.id] = calls.get(event.id, 0) + 1
        await record_effect(session, recorder.name, event)
        if event.type == recorder.other:
            raise PermanentFailure(f"version {event.version} of {event.type} is unknown")
        if event.type == wrapped:
            try:
                raise PermanentFailure("subject is not a thing")
            except PermanentFailure as exc:
                raise RuntimeError("the handler wrapped it") from exc

    spec = ConsumerSpec(recorder.name, handle,
                        frozenset({recorder.happened, recorder.other, wrapped}))
    tenant = uuid.uuid4()
    [direct] = await emit_events(tenant, 1, recorder.other)
    [caused] = await emit_events(tenant, 1, wrapped)
    [after] = await emit_events(tenant, 1, recorder.happened)
    await settled(app_db)  # the three in one read, so in one chunk

    assert await drain(app_db, [spec], retry=RetryPolicy(max_attempts=5, base_delay=0)) == 3
    # Never retried: the first once in the chunk (which failed there) and once on its
    # own, the second only on its own.
    assert (calls[direct], calls[caused]) == (2, 1)
    assert await effects.counts(recorder.name) == {after: 1}
    parked = {letter.event.id: letter
              for letter in await dead_letters.list_parked(owner_db, consumer=recorder.name)
              if letter.event is not None}
    assert set(parked) == {direct, caused}
    assert parked[direct].attempts == parked[caused].attempts == 1
    assert parked[direct].error.splitlines()[0] == f"version 1 of {recorder.other} is unknown"
    assert parked[caused].error.splitlines()[0] == "subject is not a thing"
    assert "RuntimeError: the handler wrapped it" in parked[caused].error


async def test_app_role_sees_only_its_tenants_dead_letters(
    app_db: Database, owner_db: Database, emit_events: Emit
) -> None:
    always = Recorder(fail=lambda _e, _a: True)
    mine, other = uuid.uuid4(), uuid.uuid4()
    await emit_events(mine, 1, always.happened)
    await emit_events(other, 1, always.happened)
    await drain(app_db, [always.spec], retry=RetryPolicy(max_attempts=1))
    assert len(await dead_letters.list_parked(owner_db, consumer=always.name)) == 2
    async with app_db.sessions() as session, session.begin():
        await set_tenant(session, mine)
        visible = await sql.list_dead_letters(session, consumer=always.name)
    assert [letter.event.tenant_id for letter in visible] == [mine]


async def test_a_row_committing_late_is_not_skipped(
    app_db: Database, recorder: Recorder, effects: Effects, emit_events: Emit
) -> None:
    """The outbox gap: A takes its position first but commits after B."""
    tenant = uuid.uuid4()
    async with app_db.sessions() as slow:
        await slow.begin()
        await set_tenant(slow, tenant)
        late = await emit(slow, adhoc(recorder.happened), subject_type="thing", subject_id="late",
                          tenant_id=tenant)
        [early] = await emit_events(tenant, 1, recorder.happened)
        # B is committed but A is still open: B is not yet below the safe horizon.
        assert await drain(app_db, [recorder.spec], max_wait=0.2) == 0
        await slow.commit()
    assert await drain(app_db, [recorder.spec]) == 2
    assert [r.event_id for r in await effects.rows(recorder.name)] == [late, early]


async def test_runtime_is_woken_by_notify_and_one_process_runs_each_consumer(
    app_db: Database, recorder: Recorder, effects: Effects, emit_events: Emit
) -> None:
    # A poll interval far beyond the test's patience: only NOTIFY can wake the consumer.
    runtimes = [
        EmbeddedRuntime(app_db, [recorder.spec], retry=RetryPolicy(), poll_interval=600,
                        lease_retry=600)
        for _ in range(2)
    ]
    forget_lag(recorder.name)
    for runtime in runtimes:
        await runtime.start()
    try:
        await first_read(recorder.name)  # caught up and idle: the events below come later
        ids = await emit_events(uuid.uuid4(), 5, recorder.happened)

        async def all_handled() -> bool:
            return set(ids) <= set(await effects.counts(recorder.name))

        await wait_until(all_handled)
        assert sorted(len(r.running) for r in runtimes) == [0, 1]
    finally:
        for runtime in runtimes:
            await runtime.stop()
    assert set((await effects.counts(recorder.name)).values()) == {1}


async def test_stop_lets_the_event_in_hand_finish(
    app_db: Database, effects: Effects, emit_events: Emit
) -> None:
    started = asyncio.Event()
    name = f"test.slow.{uuid.uuid4().hex[:8]}"

    async def slow(session, event: Event) -> None:  # type: ignore[no-untyped-def]
        started.set()
        await asyncio.sleep(0.3)
        await record_effect(session, name, event)

    kind = f"bt{uuid.uuid4().hex[:8]}.slow"
    spec = ConsumerSpec(name, slow, frozenset({kind}))
    runtime = EmbeddedRuntime(app_db, [spec], retry=RetryPolicy(), poll_interval=0.05)
    ids = await emit_events(uuid.uuid4(), 3, kind)
    await runtime.start()
    await asyncio.wait_for(started.wait(), 10)
    await runtime.stop()
    handled = await effects.counts(name)
    # The first event completed; shutdown did not wait for the rest of the backlog.
    assert ids[0] in handled
    assert len(handled) < 3
    assert await drain(app_db, [spec]) == 3 - len(handled)
    assert await effects.counts(name) == dict.fromkeys(ids, 1)


async def test_outbox_notifies_at_commit_only(app_db: Database, owner_db: Database) -> None:
    """Other transactions of the cluster notify on the channel too (the shared app's
    consumers), so only this test's types count. Notifications arrive in commit order and a
    rolled-back one never comes: once the committed event's has arrived, a notification of
    the rolled-back one would already be there."""
    kind = f"bt{uuid.uuid4().hex[:8]}"
    received: list[str] = []
    async with owner_db.engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        await raw.add_listener(
            "pantherahive_outbox",
            lambda *args: received.extend(t for t in args[3].split(",") if t.startswith(kind)),
        )
        tenant = uuid.uuid4()
        async with app_db.sessions() as session:
            await session.begin()
            await set_tenant(session, tenant)
            await emit(session, adhoc(f"{kind}.rolled_back"), subject_type="t", subject_id=1,
                       tenant_id=tenant)
            await session.rollback()
        async with app_db.sessions() as session, session.begin():
            await set_tenant(session, tenant)
            await emit(session, adhoc(f"{kind}.committed"), subject_type="t", subject_id=1,
                       tenant_id=tenant)
        await wait_until(lambda: _truthy(received))
        assert received == [f"{kind}.committed"]
        await conn.invalidate()
    async with owner_db.sessions() as session:
        rolled_back = await session.scalar(
            text("SELECT count(*) FROM bus.outbox WHERE type = :t"),
            {"t": f"{kind}.rolled_back"},
        )
    assert rolled_back == 0


async def _truthy(items: list[str]) -> bool:
    return bool(items)


async def test_the_api_process_runs_the_consumers_in_embedded_mode(
    client: httpx.AsyncClient,
) -> None:
    runtime = client.app.state.bus  # type: ignore[attr-defined]
    assert isinstance(runtime, EmbeddedRuntime)
    names = {spec.name for spec in all_consumers()}

    async def all_running() -> bool:
        return runtime.running == names

    await wait_until(all_running)


async def test_follow_up_events_carry_the_triggering_request(
    app_db: Database, owner_db: Database
) -> None:
    """A handler's own events inherit the request id, address and actor of the event that
    caused them (emit reads the request context, which the runner binds per event), and
    the caller's context is left as it was."""
    tenant, actor = uuid.uuid4(), uuid.uuid4()
    kind = f"bt{uuid.uuid4().hex[:8]}"
    name = f"test.follow.{uuid.uuid4().hex[:8]}"

    async def follow_up(session, event: Event) -> None:  # type: ignore[no-untyped-def]
        await emit(session, adhoc(f"{kind}.followed"), subject_type="thing",
                   subject_id=event.id, audited=False)

    begin_context("req-trigger", "10.1.2.3")
    bind_principal(tenant, actor)
    async with app_db.sessions() as session, session.begin():
        await set_tenant(session, tenant)
        await emit(session, adhoc(f"{kind}.happened"), subject_type="thing", subject_id=1)
    begin_context("req-of-the-caller", None)
    await drain(app_db, [ConsumerSpec(name, follow_up, frozenset({f"{kind}.happened"}))])
    assert current_context().request_id == "req-of-the-caller"
    assert current_context().user_id is None

    async with owner_db.sessions() as session:
        row = (await session.execute(
            text("SELECT request_id, ip, actor_id, tenant_id, audited FROM bus.outbox "
                 "WHERE type = :t"), {"t": f"{kind}.followed"})).one()
    assert (row.request_id, row.ip, row.actor_id, row.tenant_id, row.audited) == (
        "req-trigger", "10.1.2.3", actor, tenant, False)


async def test_delivery_is_by_transaction_id_not_causal_order(
    app_db: Database, recorder: Recorder, effects: Effects
) -> None:
    """docs/events.md, "Delivery order": B takes its xid first (it writes before reading),
    A commits a cause, B reads it and emits the effect — the effect is delivered first."""
    tenant = uuid.uuid4()
    async with app_db.sessions() as b:
        await b.begin()
        await set_tenant(b, tenant)
        await b.execute(text("SELECT pg_current_xact_id()"))  # B's first write takes its xid
        async with app_db.sessions() as a, a.begin():
            await set_tenant(a, tenant)
            cause = await emit(a, adhoc(recorder.happened), subject_type="thing",
                               subject_id="cause", tenant_id=tenant)
        seen = await b.scalar(text("SELECT count(*) FROM bus.outbox WHERE id = :id"),
                              {"id": cause})
        assert seen == 1  # B read A's committed cause (READ COMMITTED) ...
        effect = await emit(b, adhoc(recorder.other), subject_type="thing", subject_id="effect",
                            tenant_id=tenant)
        await b.commit()
    await drain(app_db, [recorder.spec])
    # ... and its effect is delivered before it: xid order, not causal order.
    assert [r.event_id for r in await effects.rows(recorder.name)] == [effect, cause]

"""Retention: old outbox rows go once nobody needs them (every registered consumer passed
them, embedded; published, broker) and old processed markers go; the embedded runtime's
leader prunes periodically."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from pantherahive.infra.bus import sql
from pantherahive.infra.bus.consumer import Event
from pantherahive.infra.bus.delivery import RetryPolicy
from pantherahive.infra.bus.embedded import EmbeddedRuntime, drain
from pantherahive.infra.bus.retention import Pruner, prune_once
from pantherahive.infra.db.engine import Database, set_tenant
from tests.infra.bus.conftest import Emit, Recorder

WEEK = timedelta(days=7)


async def backdate(owner_db: Database, ids: list[uuid.UUID], days: int = 30) -> None:
    async with owner_db.sessions() as session, session.begin():
        await session.execute(
            text("UPDATE bus.outbox SET occurred_at = now() - make_interval(days => :d) "
                 "WHERE id = ANY(:ids)"),
            {"d": days, "ids": ids},
        )


async def remaining(owner_db: Database, ids: list[uuid.UUID]) -> set[uuid.UUID]:
    async with owner_db.sessions() as session:
        return set(await session.scalars(
            text("SELECT id FROM bus.outbox WHERE id = ANY(:ids)"), {"ids": ids}))


async def test_embedded_rows_go_once_every_consumer_passed_them_and_are_old(
    app_db: Database, owner_db: Database, emit_events: Emit
) -> None:
    first, second = Recorder(), Recorder()
    tenant = uuid.uuid4()
    old_passed = await emit_events(tenant, 3, first.happened)
    recent_passed = await emit_events(tenant, 2, first.happened)
    await backdate(owner_db, old_passed)
    await drain(app_db, [first.spec, second.spec])
    old_unpassed = await emit_events(tenant, 2, first.happened)
    await backdate(owner_db, old_unpassed)
    ours = old_passed + recent_passed + old_unpassed

    # A registered consumer that never ran has passed nothing: nothing goes.
    never = await prune_once(app_db, keep=WEEK,
                             consumers=[first.name, second.name, f"never.{uuid.uuid4()}"])
    assert never.outbox == 0
    assert await remaining(owner_db, ours) == set(ours)

    await prune_once(app_db, keep=WEEK, consumers=[first.name, second.name])
    assert await remaining(owner_db, ours) == set(recent_passed + old_unpassed)


async def test_broker_rows_go_once_published_and_old_markers_go(
    app_db: Database, owner_db: Database, emit_events: Emit
) -> None:
    tenant = uuid.uuid4()
    published = await emit_events(tenant, 2, "retention.published")
    unpublished = await emit_events(tenant, 2, "retention.unpublished")
    await backdate(owner_db, published + unpublished)
    async with owner_db.sessions() as session, session.begin():
        await session.execute(
            text("UPDATE bus.outbox SET published_at = now() WHERE id = ANY(:ids)"),
            {"ids": published})
    consumer = f"test.markers.{uuid.uuid4().hex[:8]}"
    events = [Event(id=event_id, type="retention.published", version=1, tenant_id=tenant,
                    occurred_at=datetime.now(UTC), actor_id=None, subject_type="thing",
                    subject_id="1", data={}) for event_id in published]
    async with app_db.sessions() as session, session.begin():
        await set_tenant(session, tenant)
        for event in events:
            assert await sql.claim_marker(session, consumer, event)
    async with owner_db.sessions() as session, session.begin():
        await session.execute(
            text("UPDATE bus.processed_events SET processed_at = now() - interval '30 days' "
                 "WHERE consumer = :c AND event_id = :e"),
            {"c": consumer, "e": events[0].id})

    pruned = await prune_once(app_db, keep=WEEK, consumers=None)
    assert pruned.outbox >= 2
    assert pruned.markers >= 1
    assert await remaining(owner_db, published + unpublished) == set(unpublished)
    async with owner_db.sessions() as session:
        kept = set(await session.scalars(
            text("SELECT event_id FROM bus.processed_events WHERE consumer = :c"),
            {"c": consumer}))
    assert kept == {events[1].id}


async def test_the_embedded_leader_prunes_periodically(
    app_db: Database, owner_db: Database, emit_events: Emit
) -> None:
    recorder = Recorder()
    ids = await emit_events(uuid.uuid4(), 3, recorder.happened)
    await backdate(owner_db, ids)
    runtime = EmbeddedRuntime(
        app_db, [recorder.spec], retry=RetryPolicy(), poll_interval=0.05, lease_retry=0.05,
        pruner=Pruner(app_db, keep=WEEK, interval=0.1, consumers=[recorder.name]),
    )
    await runtime.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while await remaining(owner_db, ids):
            assert loop.time() < deadline, "the leader did not prune"
            await asyncio.sleep(0.05)
    finally:
        await runtime.stop()

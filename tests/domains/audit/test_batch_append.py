"""Appending a whole batch of a tenant's events at once (the embedded runtime's chunks):
the same chain as one by one — gap-free seq, hashes that verify, one row per audited
event, duplicates and derived events skipped — under concurrency too, and a batch that
would leave a gap is refused whole."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import uuid
from uuid import UUID

import httpx
import pytest

from pantherahive.domains.audit.handlers import on_any_event, on_events
from pantherahive.domains.audit.service import ChainConflict, record_events
from pantherahive.infra.bus.consumer import ConsumerSpec
from pantherahive.infra.bus.delivery import RetryPolicy
from pantherahive.infra.bus.embedded import drain
from pantherahive.infra.bus.outbox import emit
from pantherahive.infra.db.engine import set_tenant
from tests.domains.audit.helpers import app_db, make_event, record, record_batch
from tests.domains.audit.test_chain import rows, verify
from tests.support.events import adhoc


async def test_a_batch_chains_exactly_like_one_by_one(
    client: httpx.AsyncClient, database_url: str
) -> None:
    batched, single = uuid.uuid4(), uuid.uuid4()
    moment = make_event(batched).occurred_at
    actor = uuid.uuid4()
    # The same events (ids aside) for two tenants: one batch, and one by one.
    shapes = [
        {"event_type": "task.updated", "data": {"changes": {"estimate": [1e20, 0.5]}}},
        {"event_type": "project.created", "data": {"name": "Zürich 🐆", "n": 10**30}},
        {"event_type": "auth.login_failed", "data": {"reason": "bad\u0001password"},
         "request_id": None},
    ]
    await record(app_db(client), make_event(batched, actor_id=actor, occurred_at=moment))
    await record_batch(app_db(client), *[
        make_event(batched, actor_id=actor, occurred_at=moment, **shape)  # type: ignore[arg-type]
        for shape in shapes])
    await record(app_db(client), make_event(single, actor_id=actor, occurred_at=moment))
    await record(app_db(client), *[
        make_event(single, actor_id=actor, occurred_at=moment, **shape)  # type: ignore[arg-type]
        for shape in shapes])

    stored = await rows(database_url, batched)
    assert [row["seq"] for row in stored] == [1, 2, 3, 4]
    for before, after in itertools.pairwise(stored):
        assert after["prev_hash"] == before["hash"]
    assert await verify(client, batched) == (True, 4, None)
    # Column for column what the one-by-one path stores (ids, and so hashes, differ).
    same = ("seq", "action", "actor_id", "actor_type", "resource_type", "request_id", "ip",
            "changes", "data", "occurred_at")
    other = await rows(database_url, single)
    assert [[row[c] for c in same] for row in stored] == [[row[c] for c in same]
                                                          for row in other]


async def test_a_batch_skips_recorded_duplicate_and_derived_events(
    client: httpx.AsyncClient, database_url: str
) -> None:
    tenant = uuid.uuid4()
    recorded = make_event(tenant)
    await record(app_db(client), recorded)
    first, last = make_event(tenant), make_event(tenant)
    derived = dataclasses.replace(make_event(tenant, "task.assigned"), audited=False)
    await record_batch(app_db(client), first, recorded, derived, first, last)
    stored = await rows(database_url, tenant)
    assert [(row["seq"], row["id"]) for row in stored] == [
        (1, recorded.id), (2, first.id), (3, last.id)]
    assert await verify(client, tenant) == (True, 3, None)


async def test_concurrent_batches_of_one_tenant_queue_on_the_chain_head(
    client: httpx.AsyncClient, database_url: str
) -> None:
    tenant = uuid.uuid4()
    batches = [[make_event(tenant) for _ in range(5)] for _ in range(8)]
    await asyncio.gather(*(record_batch(app_db(client), *batch) for batch in batches))
    stored = await rows(database_url, tenant)
    assert [row["seq"] for row in stored] == list(range(1, 41))
    # Each batch is contiguous: the head lock is held from the first statement to commit.
    position = {row["id"]: row["seq"] for row in stored}
    for batch in batches:
        seqs = [position[event.id] for event in batch]
        assert seqs == list(range(seqs[0], seqs[0] + 5))
    assert await verify(client, tenant) == (True, 40, None)


async def test_a_batch_that_would_leave_a_gap_is_refused_whole(
    client: httpx.AsyncClient, database_url: str
) -> None:
    """An id the batch cannot see (here: recorded in another tenant's trail, invisible
    under RLS; in production: recorded concurrently) is skipped by the insert, which would
    leave its seq empty: the batch raises and its transaction keeps nothing. One event at a
    time there is no gap to leave, and the event counts as recorded already."""
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    taken = make_event(theirs)
    await record(app_db(client), taken)
    clash = dataclasses.replace(make_event(mine), id=taken.id)
    before, after = make_event(mine), make_event(mine)
    db = app_db(client)

    async def in_one_transaction() -> None:
        async with db.sessions() as session, session.begin():
            await set_tenant(session, mine)
            await record_events(session, [before, clash, after])

    with pytest.raises(ChainConflict):
        await in_one_transaction()
    assert await rows(database_url, mine) == []
    await record(db, before, clash, after)
    assert [(row["seq"], row["id"]) for row in await rows(database_url, mine)] == [
        (1, before.id), (2, after.id)]
    assert await verify(client, mine) == (True, 2, None)


async def test_the_runtime_records_a_chunk_per_tenant_in_one_batch(
    client: httpx.AsyncClient, database_url: str
) -> None:
    """Through the outbox and the runner: interleaved tenants, derived events among them.
    (The app's own audit consumer may record some of them first: the trail is the same.)"""
    kind = f"bt{uuid.uuid4().hex[:8]}"
    spec = ConsumerSpec(f"audit.test.{uuid.uuid4().hex[:8]}", on_any_event,
                        frozenset({f"{kind}.updated", f"{kind}.assigned"}),
                        batch_handler=on_events)
    tenants = [uuid.uuid4() for _ in range(3)]
    db = app_db(client)
    expected: dict[UUID, list[UUID]] = {tenant: [] for tenant in tenants}
    for round_ in range(4):
        for tenant in tenants:
            async with db.sessions() as session, session.begin():
                await set_tenant(session, tenant)
                updated = adhoc(f"{kind}.updated", {"changes": {"n": [round_, round_ + 1]}})
                expected[tenant].append(await emit(
                    session, updated, subject_type="task", subject_id=round_, tenant_id=tenant))
                await emit(session, adhoc(f"{kind}.assigned"), subject_type="task",
                           subject_id=round_, tenant_id=tenant, audited=False)
    await drain(db, [spec], retry=RetryPolicy(max_attempts=1))
    for tenant in tenants:
        stored = await rows(database_url, tenant)
        assert [row["id"] for row in stored] == expected[tenant]
        assert [row["seq"] for row in stored] == [1, 2, 3, 4]
        assert await verify(client, tenant) == (True, 4, None)

"""An event of a subscribed type at a version the consumer has no schema for (a producer
upgraded before its consumers) is dead-lettered with the reason, and the consumer goes on
with the next event; once a consumer that knows the version is deployed, replaying the
dead letter applies it."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.core.events import EventData
from pantherahive.infra.bus import dead_letters
from pantherahive.infra.bus.consumer import Event, on, subscribe
from pantherahive.infra.bus.delivery import RetryPolicy
from pantherahive.infra.bus.embedded import drain
from pantherahive.infra.bus.outbox import emit
from pantherahive.infra.db.engine import Database, set_tenant
from tests.infra.bus.conftest import Effects, record_effect

PROBED = "test_versions.probed"


class _Probed(EventData, type=PROBED, subject="thing"):
    name: str


class _ProbedV99(EventData, type=PROBED, version=99, subject="thing"):
    names: list[str]


async def _emit(db: Database, tenant: uuid.UUID, event: EventData) -> uuid.UUID:
    async with db.sessions() as session, session.begin():
        await set_tenant(session, tenant)
        return await emit(session, event, subject_id="t1", tenant_id=tenant)


async def test_an_unknown_version_is_dead_lettered_with_its_reason_and_skipped(
    app_db: Database, owner_db: Database, effects: Effects
) -> None:
    name = f"test.versions.{uuid.uuid4().hex[:10]}"

    async def probed(session: AsyncSession, event: Event, _data: _Probed) -> None:
        await record_effect(session, name, event)

    consumer = subscribe(name, on(_Probed, probed))
    tenant = uuid.uuid4()
    before = await _emit(app_db, tenant, _Probed(name="a"))
    unknown = await _emit(app_db, tenant, _ProbedV99(names=["a", "b"]))
    after = await _emit(app_db, tenant, _Probed(name="b"))

    retry = RetryPolicy(max_attempts=3, base_delay=0)
    assert await drain(app_db, [consumer], retry=retry) == 3

    [parked] = await dead_letters.list_parked(owner_db, consumer=name)
    assert parked.event is not None
    assert (parked.event.id, parked.event.type, parked.event.version) == (unknown, PROBED, 99)
    reason = f"consumer {name} has no schema for {PROBED} version 99 (it knows version 1)"
    # Parked at once, the reason first: no retry can teach the consumer a new version.
    assert parked.error.startswith(reason)
    assert parked.attempts == 1
    # The consumer went on: the events on both sides were handled once, and it is past all.
    assert await effects.counts(name) == {before: 1, after: 1}
    assert await drain(app_db, [consumer], retry=retry) == 0

    # The consumer, upgraded to know version 99, applies the parked event on replay.
    async def probed_v99(session: AsyncSession, event: Event, data: _ProbedV99) -> None:
        assert data.names == ["a", "b"]
        await record_effect(session, name, event)

    upgraded = subscribe(name, on(_Probed, probed), on(_ProbedV99, probed_v99))
    replayed = await dead_letters.replay(owner_db, app_db, [upgraded], parked.id)
    assert replayed is dead_letters.ReplayResult.REPLAYED
    assert await effects.counts(name) == {before: 1, unknown: 1, after: 1}

"""Fixtures of the event backbone tests: app-role and owner databases, a scratch table
for handler effects (no unique key, so a double effect shows), an event writer, and the
conditions the tests wait on (never a sleep): ``wait_until``, ``settled``, ``first_read``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.infra.bus.consumer import ConsumerSpec, Event
from pantherahive.infra.bus.metrics import CONSUMER_LAG
from pantherahive.infra.bus.outbox import emit
from pantherahive.infra.db.engine import Database, set_tenant
from tests.support.events import adhoc
from tests.support.servers import app_url


async def wait_until(predicate: Callable[[], Awaitable[bool]], seconds: float = 30.0) -> None:
    """Poll ``predicate`` until it holds; fail loudly after a generous ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not await predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def settled(db: Database) -> None:
    """Wait until every transaction begun so far has ended, so the events committed so far
    are all below the safe horizon (``pg_snapshot_xmin``) and the next read takes them in
    one go.

    The horizon is cluster-wide: any transaction holding an xid holds it back — above all
    the shared app's consumers (``client``), which want every event type and so handle the
    events these tests write, in their own short transactions. A test that asserts how a
    read is cut (one batch call, one chunk) waits for them first; ``drain`` alone only
    promises that every event is handled, in however many reads.
    """
    async with db.sessions() as session:
        started = await session.scalar(
            text("SELECT pg_snapshot_xmax(pg_current_snapshot())::text"))

    async def ended() -> bool:
        async with db.sessions() as session:
            return bool(await session.scalar(
                text("SELECT pg_snapshot_xmin(pg_current_snapshot()) "
                     ">= CAST(CAST(:x AS text) AS xid8)"),
                {"x": started}))

    await wait_until(ended)


def forget_lag(*consumers: str) -> None:
    """Reset the consumers' lag gauges, so ``first_read`` can see a runtime set them."""
    for name in consumers:
        CONSUMER_LAG.labels(name).set(-1)


async def first_read(*consumers: str) -> None:
    """Wait until a runtime started after ``forget_lag`` has made each consumer's first
    read: the runtime sets a consumer's lag gauge right after its first batch, and cleared
    the consumer's wake-up before reading, so from then on only a wake-up (NOTIFY) or the
    poll interval moves it."""

    async def all_read() -> bool:
        return all(CONSUMER_LAG.labels(name)._value.get() >= 0 for name in consumers)

    await wait_until(all_read)


@pytest.fixture(scope="session")
async def app_db(database_url: str) -> AsyncIterator[Database]:
    db = Database.connect(app_url(database_url), pool_size=5)
    yield db
    await db.dispose()


@pytest.fixture(scope="session")
async def owner_db(database_url: str) -> AsyncIterator[Database]:
    db = Database.connect(database_url, pool_size=2)
    async with db.sessions() as session, session.begin():
        await session.execute(text("CREATE SCHEMA IF NOT EXISTS bus_test"))
        await session.execute(
            text(
                "CREATE TABLE IF NOT EXISTS bus_test.effects (seq bigserial PRIMARY KEY, "
                "consumer text NOT NULL, event_id uuid NOT NULL, tenant_id uuid NOT NULL, "
                "type text NOT NULL, setting text)"
            )
        )
        await session.execute(text("GRANT USAGE ON SCHEMA bus_test TO pantherahive_app"))
        await session.execute(text("GRANT SELECT, INSERT ON bus_test.effects TO pantherahive_app"))
        await session.execute(
            text("GRANT USAGE ON SEQUENCE bus_test.effects_seq_seq TO pantherahive_app")
        )
    yield db
    await db.dispose()


async def record_effect(session: AsyncSession, consumer: str, event: Event) -> None:
    await session.execute(
        text(
            "INSERT INTO bus_test.effects (consumer, event_id, tenant_id, type, setting) "
            "VALUES (:c, :e, :t, :type, current_setting('app.tenant_id', true))"
        ),
        {"c": consumer, "e": event.id, "t": event.tenant_id, "type": event.type},
    )


@dataclass
class Effects:
    owner: Database

    async def rows(self, consumer: str) -> list[Any]:
        async with self.owner.sessions() as session:
            result = await session.execute(
                text(
                    "SELECT event_id, tenant_id, type, setting FROM bus_test.effects "
                    "WHERE consumer = :c ORDER BY seq"
                ),
                {"c": consumer},
            )
            return list(result)

    async def counts(self, consumer: str) -> dict[uuid.UUID, int]:
        counts: dict[uuid.UUID, int] = {}
        for row in await self.rows(consumer):
            counts[row.event_id] = counts.get(row.event_id, 0) + 1
        return counts


@pytest.fixture
def effects(owner_db: Database) -> Effects:
    return Effects(owner_db)


@dataclass
class Recorder:
    """A consumer whose handler records its effect; ``fail`` decides per event and attempt."""

    name: str = field(default_factory=lambda: f"test.{uuid.uuid4().hex[:10]}")
    types: frozenset[str] | None = None
    # Event types unique to this test, so events of earlier tests are skipped, not handled.
    prefix: str = field(default_factory=lambda: f"bt{uuid.uuid4().hex[:10]}")
    fail: Callable[[Event, int], bool] = lambda _event, _attempt: False
    attempts: dict[uuid.UUID, int] = field(default_factory=dict)

    async def handle(self, session: AsyncSession, event: Event) -> None:
        attempt = self.attempts[event.id] = self.attempts.get(event.id, 0) + 1
        await record_effect(session, self.name, event)
        if self.fail(event, attempt):
            raise RuntimeError(f"boom on {event.type} attempt {attempt}")

    def __post_init__(self) -> None:
        if self.types is None:
            self.types = frozenset({self.happened, self.other})

    @property
    def happened(self) -> str:
        return f"{self.prefix}.happened"

    @property
    def other(self) -> str:
        return f"{self.prefix}.other"

    @property
    def spec(self) -> ConsumerSpec:
        return ConsumerSpec(self.name, self.handle, self.types)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


Emit = Callable[..., Awaitable[list[uuid.UUID]]]


@pytest.fixture
def emit_events(app_db: Database) -> Emit:
    """Commit ``count`` events for ``tenant`` in one transaction; returns their ids."""

    async def write(tenant: uuid.UUID, count: int, event_type: str) -> list[uuid.UUID]:
        ids = []
        async with app_db.sessions() as session, session.begin():
            await set_tenant(session, tenant)
            for n in range(count):
                ids.append(
                    await emit(
                        session,
                        adhoc(event_type, {"n": n}),
                        subject_type="thing",
                        subject_id=n,
                        tenant_id=tenant,
                    )
                )
        return ids

    return write

"""Fixtures of the event backbone tests: app-role and owner databases, a scratch table
for handler effects (no unique key, so a double effect shows), and an event writer."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.infra.bus.consumer import ConsumerSpec, Event
from pantherahive.infra.bus.outbox import emit
from pantherahive.infra.db.engine import Database, set_tenant
from tests.support.servers import app_url


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
                        event_type,
                        subject_type="thing",
                        subject_id=n,
                        data={"n": n},
                        tenant_id=tenant,
                    )
                )
        return ids

    return write

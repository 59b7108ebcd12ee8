"""Audit test helpers: record events straight through the consumer handler (as the bus
runtime would: app role, tenant-scoped transaction), and owner-side SQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx

from pantherahive.domains.audit.handlers import on_any_event, on_events
from pantherahive.infra.bus.consumer import Event
from pantherahive.infra.db.engine import Database, set_tenant
from tests.support.servers import owner_connection

# Only a deliberate DDL switch gets the owner past the append-only trigger.
DISABLE_TRIGGER = "ALTER TABLE audit.audit_events DISABLE TRIGGER audit_events_append_only"
ENABLE_TRIGGER = "ALTER TABLE audit.audit_events ENABLE TRIGGER audit_events_append_only"


def app_db(client: httpx.AsyncClient) -> Database:
    db: Database = client.app.state.platform.db  # type: ignore[attr-defined]
    return db


def make_event(
    tenant_id: UUID,
    event_type: str = "task.updated",
    *,
    data: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
    actor_id: UUID | None = None,
    subject_type: str = "task",
    subject_id: str | None = None,
    request_id: str | None = "req-test",
) -> Event:
    return Event(
        id=uuid4(),
        type=event_type,
        version=1,
        tenant_id=tenant_id,
        occurred_at=occurred_at or datetime.now(UTC),
        actor_id=actor_id,
        subject_type=subject_type,
        subject_id=subject_id or str(uuid4()),
        data=data if data is not None else {"changes": {"title": ["old", "new"]}},
        request_id=request_id,
        ip="127.0.0.1",
    )


async def record(db: Database, *events: Event) -> None:
    for event in events:
        async with db.sessions() as session, session.begin():
            await set_tenant(session, event.tenant_id)
            await on_any_event(session, event)


async def record_batch(db: Database, *events: Event) -> None:
    """As the embedded runtime's chunks do: one transaction, one batch call per tenant."""
    tenants: dict[UUID, list[Event]] = {}
    for event in events:
        tenants.setdefault(event.tenant_id, []).append(event)
    async with db.sessions() as session, session.begin():
        for tenant_id, batch in tenants.items():
            await set_tenant(session, tenant_id)
            await on_events(session, batch)


@asynccontextmanager
async def owner(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await owner_connection(database_url)
    try:
        yield conn
    finally:
        await conn.close()

"""No write without its event: a request, or a consumer handler, that changes rows of a
service's schema without emitting is refused (infra.bus.guard, migration 0010)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

import httpx
import pytest
from fastapi import Depends
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.consumers import ANNOUNCED_SCHEMAS
from pantherahive.infra.bus import dead_letters
from pantherahive.infra.bus.consumer import ConsumerSpec, Event
from pantherahive.infra.bus.delivery import RetryPolicy
from pantherahive.infra.bus.embedded import drain
from pantherahive.infra.bus.outbox import emit
from pantherahive.infra.db.engine import Database, set_tenant
from pantherahive.infra.http.unit_of_work import request_session
from pantherahive.main import create_app
from tests.conftest import TenantHandle, create_tenant, make_settings
from tests.infra.bus.conftest import Effects, record_effect
from tests.support.events import adhoc
from tests.support.servers import app_url

Session = Annotated[AsyncSession, Depends(request_session)]
RENAME = text("UPDATE identity.users SET first_name = :name WHERE id = :id")


@pytest.fixture(scope="module")
async def guarded(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[httpx.AsyncClient, TenantHandle]]:
    """The app with test-only routes and a pool of two connections, one of which the
    notifications listener holds: every request reuses the connection of the previous one
    (whose statistics PostgreSQL may not have flushed yet)."""
    settings = make_settings(tmp_path_factory.mktemp("guard"), db_pool_size=2,
                             db_max_overflow=0, bus_run_consumers=False,
                             notifications_worker_enabled=False)
    app = create_app(settings, database_url=app_url(database_url))
    target: dict[str, str] = {}

    async def scoped(session: AsyncSession) -> None:
        await set_tenant(session, target["tenant"])

    @app.post("/test/silent-write")
    async def silent_write(session: Session) -> dict[str, str]:
        await scoped(session)
        await session.execute(RENAME, {"name": "silent", "id": target["user"]})
        return {"ok": "yes"}

    @app.post("/test/announced-write")
    async def announced_write(session: Session) -> dict[str, str]:
        await scoped(session)
        await session.execute(RENAME, {"name": "announced", "id": target["user"]})
        await emit(session, adhoc("test.renamed"), subject_type="user", subject_id=target["user"],
                   tenant_id=uuid.UUID(target["tenant"]))
        return {"ok": "yes"}

    @app.post("/test/lock-only")
    async def lock_only(session: Session) -> dict[str, str]:
        await scoped(session)
        await session.execute(text("SELECT id FROM identity.users FOR UPDATE"))
        return {"ok": "yes"}

    @app.post("/test/rolled-back-savepoint")
    async def rolled_back_savepoint(session: Session) -> dict[str, str]:
        await scoped(session)
        async with session.begin_nested() as nested:
            await session.execute(RENAME, {"name": "undone", "id": target["user"]})
            await nested.rollback()
        return {"ok": "yes"}

    @app.post("/test/nothing")
    async def nothing(session: Session) -> dict[str, str]:
        await scoped(session)
        await session.execute(text("SELECT 1"))
        return {"ok": "yes"}

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            client.app = app  # type: ignore[attr-defined]
            tenant = await create_tenant(client)
            target.update(tenant=tenant.id, user=tenant.admin.id)
            yield client, tenant


async def first_name(database_url: str, user_id: str) -> str | None:
    db = Database.connect(database_url, pool_size=1)
    try:
        async with db.sessions() as session:
            value = await session.scalar(
                text("SELECT first_name FROM identity.users WHERE id = :id"), {"id": user_id})
    finally:
        await db.dispose()
    return None if value is None else str(value)


async def test_a_request_that_writes_without_an_event_is_rolled_back_with_a_500(
    guarded: tuple[httpx.AsyncClient, TenantHandle], database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, tenant = guarded
    with caplog.at_level(logging.ERROR):
        refused = await client.post("/test/silent-write", headers={"X-Request-ID": "req-silent"})
    assert refused.status_code == 500
    assert refused.headers["content-type"] == "application/problem+json"
    assert await first_name(database_url, tenant.admin.id) != "silent"
    lines = [r.getMessage() for r in caplog.records if "write without event" in r.getMessage()]
    assert len(lines) == 1
    assert "/test/silent-write" in lines[0]
    assert "req-silent" in lines[0]


async def test_announced_writes_locks_undone_savepoints_and_reads_pass(
    guarded: tuple[httpx.AsyncClient, TenantHandle], database_url: str,
) -> None:
    client, tenant = guarded
    assert (await client.post("/test/announced-write")).status_code == 200
    assert await first_name(database_url, tenant.admin.id) == "announced"
    # Same connection as the write just before (pool of one): exact, not "recent activity".
    assert (await client.post("/test/nothing")).status_code == 200
    assert (await client.post("/test/lock-only")).status_code == 200
    assert (await client.post("/test/rolled-back-savepoint")).status_code == 200
    assert await first_name(database_url, tenant.admin.id) == "announced"


async def test_every_table_of_the_announced_schemas_marks_its_writes(database_url: str) -> None:
    """A table created without the trigger would slip past the guard."""
    db = Database.connect(database_url, pool_size=1)
    try:
        async with db.sessions() as session:
            unmarked = list(await session.scalars(
                text(
                    "SELECT n.nspname || '.' || c.relname FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = ANY(:schemas) AND c.relkind IN ('r', 'p') "
                    "AND NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid "
                    "AND t.tgname = 'zz_write_mark')"
                ),
                {"schemas": list(ANNOUNCED_SCHEMAS)},
            ))
    finally:
        await db.dispose()
    assert unmarked == []


async def test_a_handler_that_writes_without_an_event_is_parked(
    client: httpx.AsyncClient, app_db: Database, owner_db: Database, effects: Effects,
    database_url: str,
) -> None:
    tenant = await create_tenant(client)
    kind = f"bt{uuid.uuid4().hex[:8]}"

    async def rename(session: AsyncSession, event: Event) -> None:
        await session.execute(RENAME, {"name": event.data["name"], "id": tenant.admin.id})
        if event.data["announce"]:
            await emit(session, adhoc(f"{kind}.renamed"), subject_type="user",
                       subject_id=tenant.admin.id, audited=False)

    async def only_reads(session: AsyncSession, event: Event) -> None:
        await session.execute(text("SELECT id FROM identity.users FOR UPDATE"))
        await record_effect(session, name, event)  # bus_test: not an announced schema

    async def handler(session: AsyncSession, event: Event) -> None:
        await (rename if event.type.endswith(".rename") else only_reads)(session, event)

    name = f"test.guard.{uuid.uuid4().hex[:8]}"
    spec = ConsumerSpec(name, handler, frozenset({f"{kind}.rename", f"{kind}.read"}),
                        announced_schemas=frozenset(ANNOUNCED_SCHEMAS))
    ids: dict[str, uuid.UUID] = {}
    async with app_db.sessions() as session, session.begin():
        await set_tenant(session, tenant.id)
        for label, event_type, data in (
            ("announced", f"{kind}.rename", {"name": "by-event", "announce": True}),
            ("reader", f"{kind}.read", {}),  # same chunk, after a writer that emitted
            ("silent", f"{kind}.rename", {"name": "silently", "announce": False}),
        ):
            ids[label] = await emit(session, adhoc(event_type, data), subject_type="user",
                                    subject_id=tenant.admin.id,
                                    tenant_id=uuid.UUID(tenant.id))

    await drain(app_db, [spec], retry=RetryPolicy(max_attempts=2, base_delay=0))
    [parked] = await dead_letters.list_parked(owner_db, consumer=name)
    assert parked.event.id == ids["silent"]
    assert "UnannouncedWrite" in parked.error
    assert "identity" in parked.error
    assert await first_name(database_url, tenant.admin.id) == "by-event"
    assert list(await effects.counts(name)) == [ids["reader"]]


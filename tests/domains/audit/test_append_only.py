"""Audit rows are append-only: the app role may only SELECT and INSERT, and a trigger
refuses UPDATE, DELETE and TRUNCATE for everyone outside the archive command."""

from __future__ import annotations

from uuid import uuid4

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from pantherahive.infra.db.engine import set_tenant
from tests.domains.audit.helpers import app_db, make_event, owner, record


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit.audit_events SET action = 'forged' WHERE tenant_id = :t",
        "DELETE FROM audit.audit_events WHERE tenant_id = :t",
        "TRUNCATE audit.audit_events",
        "DELETE FROM audit.archive_segments WHERE tenant_id = :t",
    ],
)
async def test_app_role_cannot_change_or_delete_audit_rows(
    client: httpx.AsyncClient, database_url: str, statement: str
) -> None:
    tenant_id = uuid4()
    await record(app_db(client), make_event(tenant_id))
    async with app_db(client).sessions() as session, session.begin():
        await set_tenant(session, tenant_id)
        assert (await session.execute(text("SELECT current_user"))).scalar() == "pantherahive_app"
        with pytest.raises(DBAPIError, match="permission denied"):
            await session.execute(text(statement), {"t": tenant_id})
    async with owner(database_url) as conn:
        count = await conn.fetchval(
            "SELECT count(*) FROM audit.audit_events "
            "WHERE tenant_id = $1 AND action = 'task.updated'",
            tenant_id,
        )
    assert count == 1


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit.audit_events SET action = 'forged' WHERE tenant_id = $1",
        "DELETE FROM audit.audit_events WHERE tenant_id = $1",
    ],
)
async def test_trigger_refuses_the_owner_too(
    client: httpx.AsyncClient, database_url: str, statement: str
) -> None:
    tenant_id = uuid4()
    await record(app_db(client), make_event(tenant_id))
    async with owner(database_url) as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute(statement, tenant_id)
        async with conn.transaction():
            # The archiving switch lets deletes through, and nothing else.
            await conn.execute("SELECT set_config('audit.archiving', 'on', true)")
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="UPDATE refused"):
                await conn.execute(
                    "UPDATE audit.audit_events SET action = 'x' WHERE tenant_id = $1", tenant_id
                )
        assert await conn.fetchval(
            "SELECT count(*) FROM audit.audit_events WHERE tenant_id = $1", tenant_id
        ) == 1


async def test_app_role_sees_only_its_tenants_rows(client: httpx.AsyncClient) -> None:
    mine, other = uuid4(), uuid4()
    await record(app_db(client), make_event(mine), make_event(other), make_event(other))
    async with app_db(client).sessions() as session, session.begin():
        await set_tenant(session, mine)
        visible = (
            await session.execute(text("SELECT DISTINCT tenant_id FROM audit.audit_events"))
        ).scalars().all()
        with pytest.raises(DBAPIError):
            async with session.begin_nested():
                await session.execute(
                    text(
                        "INSERT INTO audit.chains (tenant_id, last_seq, last_hash) "
                        "VALUES (:t, 0, repeat('0', 64))"
                    ),
                    {"t": other},
                )
    assert visible == [mine]

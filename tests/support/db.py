"""Direct database access for assertions (as the owner, bypassing the API)."""

from __future__ import annotations

import os
from typing import Any

import httpx
from sqlalchemy import text

from pantherahive.infra.db.engine import set_tenant
from tests.support.servers import app_url, owner_connection

_URL: dict[str, str] = {}


def remember_database(url: str) -> None:
    _URL["url"] = url
    os.environ.setdefault("PANTHERAHIVE_TEST_DATABASE_URL", url)


def database_url() -> str:
    """The session's test database (owner URL)."""
    return _URL["url"]


def app_database_url() -> str:
    """The session's test database as the app logs in to it (``pantherahive_app``)."""
    return app_url(_URL["url"])


async def outbox_types(tenant_id: str) -> list[str]:
    conn = await owner_connection(_URL["url"])
    try:
        rows = await conn.fetch(
            "SELECT type FROM bus.outbox WHERE tenant_id = $1 ORDER BY position", tenant_id
        )
    finally:
        await conn.close()
    return [row["type"] for row in rows]


async def outbox(
    client: httpx.AsyncClient, tenant_id: str, *, subject_id: str | None = None
) -> list[dict[str, Any]]:
    """The tenant's events, oldest first (optionally only those about one subject)."""
    db = client.app.state.platform.db  # type: ignore[attr-defined]
    sql = "SELECT type, subject_type, subject_id, actor_id, data FROM bus.outbox"
    params: dict[str, Any] = {}
    if subject_id is not None:
        sql += " WHERE subject_id = :subject"
        params["subject"] = subject_id
    async with db.sessions() as session:
        await set_tenant(session, tenant_id)
        rows = (await session.execute(text(sql + " ORDER BY position"), params)).mappings()
        result = [dict(row) for row in rows]
        await session.rollback()
    return result

"""Direct database access for assertions (as the owner, bypassing the API)."""

from __future__ import annotations

import os

from tests.support.servers import owner_connection

_URL: dict[str, str] = {}


def remember_database(url: str) -> None:
    _URL["url"] = url
    os.environ.setdefault("PANTHERAHIVE_TEST_DATABASE_URL", url)


def database_url() -> str:
    """The session's test database (owner URL)."""
    return _URL["url"]


async def outbox_types(tenant_id: str) -> list[str]:
    conn = await owner_connection(_URL["url"])
    try:
        rows = await conn.fetch(
            "SELECT type FROM bus.outbox WHERE tenant_id = $1 ORDER BY position", tenant_id
        )
    finally:
        await conn.close()
    return [row["type"] for row in rows]

"""One linear migration history, and the real database is at its head."""

from __future__ import annotations

from alembic.script import ScriptDirectory

from pantherahive.infra.db.migrate import alembic_config
from tests.support.db import database_url
from tests.support.servers import owner_connection


def test_history_is_linear_with_one_head() -> None:
    script = ScriptDirectory.from_config(alembic_config("postgresql://unused/x"))
    heads = script.get_heads()
    assert len(heads) == 1, heads
    revisions = list(script.walk_revisions())
    assert [r.revision for r in revisions][-1] == "0001"
    assert all(not isinstance(r.down_revision, tuple) for r in revisions)


async def test_database_is_at_the_head() -> None:
    script = ScriptDirectory.from_config(alembic_config("postgresql://unused/x"))
    conn = await owner_connection(database_url())
    try:
        version = await conn.fetchval("SELECT version_num FROM platform.alembic_version")
    finally:
        await conn.close()
    assert version == script.get_current_head()

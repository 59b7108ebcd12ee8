"""One linear migration history, and the real database is at its head."""

from __future__ import annotations

import asyncio

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


async def _actor_action_index() -> bool | None:
    conn = await owner_connection(database_url())
    try:
        return await conn.fetchval(  # type: ignore[no-any-return]
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.oid = to_regclass('audit.ix_audit_events_actor_action')"
        )
    finally:
        await conn.close()


async def test_a_migration_outside_a_transaction_goes_down_and_up() -> None:
    """0014 builds its index CONCURRENTLY, outside the transaction Alembic gives every other
    migration: the environment must allow that, both ways, and leave a valid index."""
    from alembic import command

    config = alembic_config(database_url())
    assert await _actor_action_index() is True
    try:
        await asyncio.to_thread(command.downgrade, config, "0013")
        assert await _actor_action_index() is None
    finally:
        await asyncio.to_thread(command.upgrade, config, "head")
    assert await _actor_action_index() is True


async def test_an_interrupted_concurrent_build_is_built_again() -> None:
    """CREATE INDEX CONCURRENTLY that fails half-way leaves an invalid index behind, which
    IF NOT EXISTS alone would keep for good."""
    from alembic import command

    config = alembic_config(database_url())
    try:
        await asyncio.to_thread(command.downgrade, config, "0013")
        conn = await owner_connection(database_url())
        try:
            await conn.execute(
                "CREATE INDEX ix_audit_events_actor_action ON audit.audit_events (tenant_id)"
            )
            await conn.execute(
                "UPDATE pg_index SET indisvalid = false "
                "WHERE indexrelid = 'audit.ix_audit_events_actor_action'::regclass"
            )
        finally:
            await conn.close()
        assert await _actor_action_index() is False
    finally:
        await asyncio.to_thread(command.upgrade, config, "head")
    assert await _actor_action_index() is True

"""infra.db.direct: statements on the session's asyncpg connection belong to the session's
transaction — they commit and roll back with it, and see what it wrote."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from pantherahive.infra.db import direct
from pantherahive.infra.db.engine import Database
from tests.support.db import database_url
from tests.support.servers import owner_connection

_SCRATCH = "CREATE TEMP TABLE IF NOT EXISTS direct_probe (id uuid PRIMARY KEY)"


async def _owner_db() -> Database:
    return Database.connect(database_url(), pool_size=1, max_overflow=0)


async def test_a_direct_statement_first_begins_the_session_transaction() -> None:
    db = await _owner_db()
    try:
        async with db.sessions() as session:
            await direct.execute(session, "SELECT set_config('app.probe', 'inside', true)")
            # set_config(..., true) lives until the transaction ends: the session's next
            # statement sees it only if both ran in one transaction.
            seen = await session.execute(text("SELECT current_setting('app.probe', true)"))
            assert seen.scalar() == "inside"
            assert await direct.fetchval(session, "SELECT current_setting('app.probe', true)") == (
                "inside"
            )
            await session.rollback()
            after = await direct.fetchval(session, "SELECT current_setting('app.probe', true)")
            assert after in (None, "")
    finally:
        await db.dispose()


async def test_direct_writes_roll_back_and_commit_with_the_session() -> None:
    db = await _owner_db()
    kept, dropped = uuid.uuid4(), uuid.uuid4()
    try:
        async with db.sessions() as session:
            await session.execute(text(_SCRATCH))
            await session.commit()
            await direct.execute(session, "INSERT INTO direct_probe VALUES ($1)", dropped)
            await session.execute(text("SELECT 1"))
            await session.rollback()
            await session.execute(text("SELECT 1"))
            await direct.execute(session, "INSERT INTO direct_probe VALUES ($1)", kept)
            await session.commit()
            rows = await direct.fetch(session, "SELECT id FROM direct_probe ORDER BY id")
            assert {row["id"] for row in rows} == {kept}
            await session.rollback()
    finally:
        await db.dispose()


async def test_orm_writes_are_visible_to_direct_reads_in_the_same_transaction() -> None:
    db = await _owner_db()
    probe = uuid.uuid4()
    try:
        async with db.sessions() as session:
            await session.execute(text(_SCRATCH))
            await session.commit()
            await session.execute(text("INSERT INTO direct_probe VALUES (:id)"), {"id": probe})
            row = await direct.fetchrow(session, "SELECT id FROM direct_probe WHERE id = $1", probe)
            assert row is not None
            assert row["id"] == probe
            await session.rollback()
            assert await direct.fetchrow(
                session, "SELECT id FROM direct_probe WHERE id = $1", probe
            ) is None
            await session.rollback()
    finally:
        await db.dispose()


async def test_after_a_lost_connection_the_pool_starts_afresh() -> None:
    """Killed backends (a restart, a failover) fail one direct statement, not every later
    request: the dead connections are thrown away, as SQLAlchemy does for its own."""
    db = Database.connect(database_url(), pool_size=3, max_overflow=0)
    try:
        sessions = [db.sessions() for _ in range(3)]
        # three pooled connections, and only theirs are killed
        pids = [await direct.fetchval(session, "SELECT pg_backend_pid()") for session in sessions]
        for session in sessions:
            await session.close()
        owner = await owner_connection(database_url())
        try:
            killed = await owner.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM unnest($1::int[]) AS pid", pids
            )
        finally:
            await owner.close()
        assert killed == 3
        async with db.sessions() as session:
            # what asyncpg raises depends on when it read the termination notice ("closed
            # in the middle of operation", or "cannot switch to state …"): all are a dead
            # connection, which is what makes the pool start afresh
            with pytest.raises(Exception) as failed:  # noqa: PT011 - classified below
                await direct.fetchval(session, "SELECT 1")
            assert direct.connection_lost(failed.value), repr(failed.value)
        for _ in range(3):
            async with db.sessions() as session:
                assert await direct.fetchval(session, "SELECT 1") == 1
    finally:
        await db.dispose()


async def test_the_remembered_connection_is_dropped_when_the_transaction_ends() -> None:
    """The connection a session's direct statements use is remembered for speed, but only
    until the transaction ends: after a commit it belongs to the pool (and to whoever takes
    it next), so the session's next statement must check out its own."""
    db = Database.connect(database_url(), pool_size=2, max_overflow=0)
    try:
        first = db.sessions()
        mine = await direct.fetchval(first, "SELECT pg_backend_pid()")
        await first.commit()
        async with db.sessions() as other:
            taken = await direct.fetchval(other, "SELECT pg_backend_pid()")
            assert taken == mine  # the only idle connection went to the other session
            again = await direct.fetchval(first, "SELECT pg_backend_pid()")
            assert again != taken
            await other.rollback()
        await first.close()
    finally:
        await db.dispose()

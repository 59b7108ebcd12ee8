"""Alembic environment: runs as the database owner, over asyncpg."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from pantherahive.infra.db.engine import create_app_engine

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        version_table_schema="platform",
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _require_owner_bypassing_rls(connection: AsyncConnection) -> None:
    """Every tenant table has FORCE ROW LEVEL SECURITY (0015), which binds its owner too;
    the SECURITY DEFINER functions the migrations create run as that owner and read across
    tenants, so the owner must be a superuser or have BYPASSRLS. Say so before migrating
    rather than let the outbox relay and the delivery workers find nothing."""
    user, bypasses = (
        await connection.execute(
            text(
                "SELECT rolname, rolsuper OR rolbypassrls FROM pg_roles "
                "WHERE rolname = current_user"
            )
        )
    ).one()
    await connection.rollback()
    if not bypasses:
        raise RuntimeError(
            f"the migrations run as the database owner, and {user} cannot bypass row-level "
            f"security: run them as the owner (DATABASE_ADMIN_URL), and give that role "
            f"BYPASSRLS (ALTER ROLE {user} BYPASSRLS, as a superuser) — "
            "docs/configuration.md, Database roles"
        )


async def _main() -> None:
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL given to the migrations")
    # No statement timeout: the app's 15 s would abort a long migration on a large
    # database (0014's index build reads the whole audit trail: 14 s at 10M events here).
    engine = create_app_engine(url, pool_size=1, max_overflow=0, statement_timeout_ms=0)
    async with engine.connect() as connection:
        await _require_owner_bypassing_rls(connection)
        await connection.execute(text("CREATE SCHEMA IF NOT EXISTS platform"))
        await connection.commit()
        # Several processes may start at once (workers, tests): one migrates, the rest wait.
        await connection.execute(text("SELECT pg_advisory_lock(727274)"))
        # The lock is the session's; end the transaction that took it, so Alembic runs each
        # migration in a transaction of its own (and a migration may step outside one for
        # CREATE INDEX CONCURRENTLY).
        await connection.commit()
        try:
            await connection.run_sync(_run)
            await connection.commit()
        finally:
            await connection.rollback()
            await connection.execute(text("SELECT pg_advisory_unlock(727274)"))
            await connection.commit()
    await engine.dispose()


asyncio.run(_main()) if not context.is_offline_mode() else None

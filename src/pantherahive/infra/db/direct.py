"""Hot-path SQL straight on the request transaction's asyncpg connection.

Measured on the benchmark's machine (docs/benchmark.md): one statement through the
SQLAlchemy session costs 150-300 µs of CPU (building the statement object, its cache key,
parameter and result processing, two greenlet hops), the same statement on the asyncpg
connection underneath ~50 µs, and building a select with correlated subqueries on every
call another millisecond. The statements every request runs — the principal check, the
project access check, the outbox insert, the task reads and writes — are therefore
fixed SQL strings executed here, on the connection and inside the transaction of the
session, so they commit or roll back with everything else the unit of work does.

Only this module knows how SQLAlchemy's asyncpg adapter begins its transaction lazily;
``tests/infra/test_direct_sql.py`` proves that a statement run here belongs to the
session's transaction.
"""

from __future__ import annotations

from typing import Any, cast

import asyncpg
from asyncpg import Record
from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["Record", "connection", "execute", "fetch", "fetchrow", "fetchval"]


async def connection(session: AsyncSession) -> asyncpg.Connection[Record]:
    """The asyncpg connection of the session's transaction, with that transaction begun.

    SQLAlchemy's adapter sends ``BEGIN`` only before its own first statement; a direct
    statement may come first, so begin here exactly as the adapter would.
    """
    sa_connection = await session.connection()
    pooled = await sa_connection.get_raw_connection()
    adapted: Any = pooled.dbapi_connection
    if adapted._transaction is None:
        await adapted._start_transaction()
    return cast("asyncpg.Connection[Record]", pooled.driver_connection)


async def fetchrow(session: AsyncSession, sql: str, *args: Any) -> Record | None:
    conn = await connection(session)
    return await conn.fetchrow(sql, *args)


async def fetch(session: AsyncSession, sql: str, *args: Any) -> list[Record]:
    conn = await connection(session)
    return await conn.fetch(sql, *args)


async def fetchval(session: AsyncSession, sql: str, *args: Any) -> Any:
    conn = await connection(session)
    return await conn.fetchval(sql, *args)


async def execute(session: AsyncSession, sql: str, *args: Any) -> str:
    conn = await connection(session)
    return await conn.execute(sql, *args)

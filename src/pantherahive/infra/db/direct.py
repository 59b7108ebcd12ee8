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
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

__all__ = ["Record", "connection", "execute", "fetch", "fetchrow", "fetchval"]


# A connection that fails like this is dead: SQLAlchemy would invalidate it (and the pool)
# had the statement gone through it; a direct statement must say so itself, or the pool
# hands dead connections to the next requests.
_DEAD_CONNECTION = (
    asyncpg.InterfaceError,
    # the protocol lost track of its state, e.g. a server-side termination notice that
    # arrived while the connection sat idle in the pool: the connection is unusable
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    OSError,
)


_BOUND = "pantherahive.direct.connection"
_Bound = tuple[AsyncConnection, "asyncpg.Connection[Record]"]


@event.listens_for(Session, "after_transaction_end")
def _forget(session: Session, transaction: SessionTransaction) -> None:
    """The session's connection goes back to the pool when its transaction ends: forget it
    (a savepoint ending keeps it)."""
    if transaction.parent is None:
        session.info.pop(_BOUND, None)


async def _bind(session: AsyncSession, sa_connection: AsyncConnection) -> _Bound:
    """Begin the transaction if need be and remember the connection until the transaction
    ends (resolving it through SQLAlchemy costs two greenlet hops per statement)."""
    pooled = await sa_connection.get_raw_connection()
    adapted: Any = pooled.dbapi_connection
    if adapted._transaction is None:
        await adapted._start_transaction()
    bound = (sa_connection, cast("asyncpg.Connection[Record]", pooled.driver_connection))
    session.info[_BOUND] = bound
    return bound


async def connection(session: AsyncSession) -> asyncpg.Connection[Record]:
    """The asyncpg connection of the session's transaction, with that transaction begun.

    SQLAlchemy's adapter sends ``BEGIN`` only before its own first statement; a direct
    statement may come first, so begin here exactly as the adapter would.
    """
    bound: _Bound | None = session.info.get(_BOUND)
    if bound is None:
        bound = await _bind(session, await session.connection())
    return bound[1]


def connection_lost(exc: BaseException) -> bool:
    """Whether the error, or one it was raised from, says the connection is dead."""
    link: BaseException | None = exc
    while link is not None:
        if isinstance(link, _DEAD_CONNECTION):
            return True
        link = link.__cause__ or link.__context__
    return False


async def _run(session: AsyncSession, method: str, sql: str, args: tuple[Any, ...]) -> Any:
    bound: _Bound | None = session.info.get(_BOUND)
    sa_connection = bound[0] if bound is not None else await session.connection()
    try:
        if bound is None:
            bound = await _bind(session, sa_connection)
        return await getattr(bound[1], method)(sql, *args)
    except Exception as exc:
        if connection_lost(exc):
            session.info.pop(_BOUND, None)
            # As SQLAlchemy does on a disconnect: a server restart or failover has closed
            # every pooled connection, so the whole pool is replaced, not just this one.
            await sa_connection.invalidate(exc)
            await sa_connection.engine.dispose()
        raise


async def fetchrow(session: AsyncSession, sql: str, *args: Any) -> Record | None:
    row: Record | None = await _run(session, "fetchrow", sql, args)
    return row


async def fetch(session: AsyncSession, sql: str, *args: Any) -> list[Record]:
    rows: list[Record] = await _run(session, "fetch", sql, args)
    return rows


async def fetchval(session: AsyncSession, sql: str, *args: Any) -> Any:
    return await _run(session, "fetchval", sql, args)


async def execute(session: AsyncSession, sql: str, *args: Any) -> str:
    status: str = await _run(session, "execute", sql, args)
    return status

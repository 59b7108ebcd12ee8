"""Which failures mean "a dependency is down" — a 503 with ``Retry-After`` that the client
may retry — rather than a bug (a 500).

The database or Redis refusing connections, a pooled connection the server has closed
(restart, failover, ``pg_terminate_backend``), the server starting up or shutting down,
no connection free in the pool: the same request will work once the dependency is back.
"""

from __future__ import annotations

import errno
import traceback
from collections.abc import Iterator

import asyncpg
import redis.exceptions
from limits.errors import StorageError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

RETRY_AFTER_SECONDS = 5

_SERVER_GONE = (
    asyncpg.PostgresConnectionError,  # class 08, incl. ConnectionDoesNotExistError
    asyncpg.CannotConnectNowError,  # starting up / in recovery
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InternalClientError,  # a pooled connection's protocol broken by a termination
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    StorageError,
    PoolTimeoutError,  # every pooled connection busy for pool_timeout seconds
)
_NETWORK_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EPIPE,
        errno.ETIMEDOUT,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.EHOSTDOWN,
        errno.ENOENT,  # a Unix socket whose server is gone
    }
)
# An OSError counts only when a client library raised it while talking to its server: a
# FileNotFoundError from application code is a bug, not an outage.
_CLIENT_MODULES = ("asyncpg", "redis", "sqlalchemy.pool", "sqlalchemy.dialects")


def dependency_unavailable(exc: BaseException) -> bool:
    """True if ``exc`` (or anything it was raised from) says a dependency is unreachable."""
    for link in _chain(exc):
        if isinstance(link, _SERVER_GONE):
            return True
        if isinstance(link, DBAPIError) and link.connection_invalidated:
            return True
        if isinstance(link, asyncpg.InterfaceError) and "connection is closed" in str(link):
            return True
        if isinstance(link, OSError) and _network_error(link) and _raised_by_a_client(link):
            return True
    return False


def _network_error(error: OSError) -> bool:
    if isinstance(error, ConnectionError | TimeoutError):
        return True
    if error.errno in _NETWORK_ERRNOS:
        return True
    # asyncio's create_connection folds one failure per resolved address into one OSError.
    return error.errno is None and "Connect call failed" in str(error)


def _raised_by_a_client(error: BaseException) -> bool:
    for frame, _line in traceback.walk_tb(error.__traceback__):
        if str(frame.f_globals.get("__name__", "")).startswith(_CLIENT_MODULES):
            return True
    return False


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        for linked in (orig, current.__cause__, current.__context__):
            if isinstance(linked, BaseException):
                todo.append(linked)

"""A dedicated database connection for leadership and wake-ups.

It holds session-level advisory locks — one per consumer (or per relay) — so that with
several processes only one runs each consumer, and a dead process's locks vanish with its
connection. It also LISTENs on the outbox channel the trigger of migration 0004 notifies;
the payload is the comma-separated event types a statement inserted (migration 0013;
empty when unknown).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from pantherahive.infra.db.engine import Database

CHANNEL = "pantherahive_outbox"


class ControlConnection:
    def __init__(self, db: Database, on_notify: Callable[[str], None] | None = None) -> None:
        self._db = db
        self._on_notify = on_notify
        self._conn: AsyncConnection | None = None
        self._driver: Any = None
        # Set the moment the driver sees the connection end: the locks are gone with it, so
        # a leader must not wait for its next ping to find out.
        self.lost = asyncio.Event()

    async def __aenter__(self) -> ControlConnection:
        self._conn = await self._db.engine.connect()
        raw = await self._conn.get_raw_connection()
        self._driver = raw.driver_connection
        self._driver.add_termination_listener(self._terminated)
        if self._on_notify is not None:
            await self._driver.add_listener(CHANNEL, self._notified)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._conn is None:
            return
        # Closing (not returning to the pool) is what releases the locks and the LISTEN.
        try:
            await self._conn.invalidate()
        finally:
            await self._conn.close()
            self._conn = None

    def _terminated(self, _conn: object) -> None:
        self.lost.set()

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        if self._on_notify is not None:
            self._on_notify(payload)

    def alive(self) -> bool:
        return self._driver is not None and not self._driver.is_closed()

    async def try_lock(self, key: str) -> bool:
        return bool(
            await self._driver.fetchval(
                "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", f"pantherahive:{key}"
            )
        )

    async def ping(self) -> None:
        await self._driver.fetchval("SELECT 1")

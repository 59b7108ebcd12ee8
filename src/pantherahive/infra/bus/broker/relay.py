"""Outbox → broker. Several relays may run; the ``relay`` lock lets one work at a time.

The relay marks ``published_at`` only after the broker acknowledged, so delivery is
at-least-once: a relay that dies between publishing and marking publishes again, and the
broker's duplicate window (NATS) or the consumers' processed markers drop the repeat.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from pantherahive.core.retry import Backoff, BackoffState
from pantherahive.infra.bus import sql
from pantherahive.infra.bus.consumer import Event
from pantherahive.infra.bus.leadership import Leadership, Role
from pantherahive.infra.bus.metrics import EVENTS_PUBLISHED
from pantherahive.infra.bus.waiting import wait_any
from pantherahive.infra.db.engine import Database
from pantherahive.infra.logging import get_logger

log = get_logger(__name__)
# A broker (or the database) that refused a batch, and the relay's control connection,
# are retried on this jittered schedule: relays of several deployments do not retry as one.
RETRY = Backoff(base=0.2, maximum=5.0)


class Publisher(Protocol):
    name: str

    async def publish(self, events: Sequence[Event]) -> None:
        """Return only once the broker acknowledged every event; raise otherwise."""

    async def close(self) -> None: ...


class Relay:
    def __init__(
        self, db: Database, publisher: Publisher, *, batch_size: int = 500,
        poll_interval: float = 1.0, lease_retry: float = 5.0,
    ) -> None:
        self.db = db
        self.publisher = publisher
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.lease_retry = lease_retry

    async def unpublished(self) -> list[Event]:
        async with self.db.sessions() as session:
            return await sql.read_unpublished(session, self.batch_size)

    async def mark(self, events: Sequence[Event]) -> int:
        positions = [event.position for event in events if event.position is not None]
        async with self.db.sessions() as session, session.begin():
            return await sql.mark_published(session, positions)

    async def relay_once(self) -> int:
        events = await self.unpublished()
        if not events:
            return 0
        await self.publisher.publish(events)
        await self.mark(events)
        EVENTS_PUBLISHED.labels(self.publisher.name).inc(len(events))
        return len(events)

    async def run(self, stopping: asyncio.Event) -> None:
        """Publish while this process holds the ``relay`` lock, woken by the outbox's
        NOTIFY (or every ``poll_interval``), until ``stopping`` is set."""
        wake = asyncio.Event()
        role = Role("relay", "relay", lambda halt: self._publish_until(halt, wake))
        leadership = Leadership(
            self.db, [role], name="relay", lease_retry=self.lease_retry,
            on_notify=lambda _types: wake.set(), reconnect=RETRY,
        )
        await leadership.run(stopping)

    async def _publish_until(self, halt: asyncio.Event, wake: asyncio.Event) -> None:
        backoff = BackoffState(RETRY)
        while not halt.is_set():
            wake.clear()
            try:
                if await self.relay_once() >= self.batch_size:
                    continue
                backoff.succeeded()
            except Exception as exc:
                log.warning("relay could not publish", error=repr(exc))
                await wait_any(backoff.failed(), halt)
                continue
            await wait_any(self.poll_interval, wake, halt)

"""Real-time fan-out: a notification committed in any process reaches the SSE/WebSocket
connections of its user in every API process.

The inbox announces each new notification (``inbox.announce``); every process's
:class:`Listener` hears it on PostgreSQL LISTEN, or Redis SUBSCRIBE with ``REDIS_URL``, and
hands it to the :class:`Hub` of its own connections, keyed by (tenant, user).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from pantherahive.core.retry import Backoff, BackoffState
from pantherahive.domains.notifications.background import BackgroundLoop
from pantherahive.domains.notifications.inbox.announce import CHANNEL
from pantherahive.domains.notifications.metrics import OPEN_STREAMS
from pantherahive.infra.logging import get_logger

QUEUE_SIZE = 1000
# Every API process loses the database or Redis at the same moment: jitter spreads their
# reconnects.
RECONNECT = Backoff(base=0.5, maximum=10.0)
log = get_logger("pantherahive.notifications.realtime")


@dataclass(frozen=True, slots=True)
class StreamPrincipal:
    """Who holds a stream, and what their access token was checked against when it opened:
    the stream ends once the token would no longer work (``NotificationsRuntime``'s guard
    re-checks every heartbeat interval)."""

    tenant_id: UUID
    user_id: UUID
    token_version: int
    expires_at: datetime


# Queue sentinels: the client is too far behind (it resumes with Last-Event-ID), or its
# credentials no longer hold (deactivated, token expired or revoked).
BEHIND: dict[str, Any] = {"end": "behind"}
REVOKED: dict[str, Any] = {"end": "revoked"}
Stream = asyncio.Queue[dict[str, Any]]


class Hub:
    """This process's live connections. A full queue (a stalled client) is closed rather than
    allowed to grow; the client resumes with Last-Event-ID."""

    def __init__(self) -> None:
        self._queues: dict[tuple[str, str], set[Stream]] = {}
        self._principals: dict[Stream, StreamPrincipal] = {}

    @contextlib.contextmanager
    def subscribe(self, principal: StreamPrincipal, kind: str) -> Iterator[Stream]:
        key = (str(principal.tenant_id), str(principal.user_id))
        queue: Stream = asyncio.Queue(QUEUE_SIZE)
        self._queues.setdefault(key, set()).add(queue)
        self._principals[queue] = principal
        OPEN_STREAMS.labels(kind).inc()
        try:
            yield queue
        finally:
            OPEN_STREAMS.labels(kind).dec()
            self._principals.pop(queue, None)
            queues = self._queues.get(key)
            if queues is not None:
                queues.discard(queue)
                if not queues:
                    del self._queues[key]

    @property
    def connections(self) -> int:
        return len(self._principals)

    def streams(self) -> list[tuple[Stream, StreamPrincipal]]:
        return list(self._principals.items())

    def end(self, queue: Stream, sentinel: dict[str, Any]) -> None:
        """Make the stream's next read the sentinel's end (dropping one message if full)."""
        try:
            queue.put_nowait(sentinel)
        except asyncio.QueueFull:
            with contextlib.suppress(asyncio.QueueEmpty):
                queue.get_nowait()
            queue.put_nowait(sentinel)

    def dispatch(self, message: dict[str, Any]) -> None:
        for queue in list(self._queues.get((message["tenantId"], message["userId"]), ())):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:
                self.end(queue, BEHIND)

    def dispatch_raw(self, raw: bytes | str) -> None:
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            log.warning("realtime_bad_message")
            return
        if isinstance(message, dict) and "tenantId" in message and "userId" in message:
            self.dispatch(message)


class Listener:
    """Feeds the hub from PostgreSQL LISTEN (embedded) or Redis SUBSCRIBE; reconnects."""

    def __init__(self, hub: Hub, *, engine: AsyncEngine, redis_url: str | None) -> None:
        self.hub = hub
        self.engine = engine
        self.redis_url = redis_url
        self.ready = asyncio.Event()
        self._background = BackgroundLoop(self._run, "notifications-listener")

    def start(self) -> None:
        self._background.start()

    async def stop(self) -> None:
        await self._background.stop()

    async def _run(self) -> None:
        reconnect = BackoffState(RECONNECT)
        while True:
            try:
                if self.redis_url is None:
                    await self._listen_postgres()
                else:
                    await self._listen_redis()
                reconnect.succeeded()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.ready.clear()
                log.warning("realtime_listener_lost", error=str(exc))
                await asyncio.sleep(reconnect.failed())

    async def _listen_postgres(self) -> None:
        async with self.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection

            def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
                self.hub.dispatch_raw(payload)

            await driver.add_listener(CHANNEL, on_notify)
            self.ready.set()
            try:
                while True:
                    await asyncio.sleep(15)
                    await driver.execute("SELECT 1")
            finally:
                with contextlib.suppress(Exception):
                    await driver.remove_listener(CHANNEL, on_notify)

    async def _listen_redis(self) -> None:
        import redis.asyncio as redis

        client: Any = redis.from_url(str(self.redis_url))
        pubsub: Any = client.pubsub()
        try:
            await pubsub.subscribe(CHANNEL)
            self.ready.set()
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    self.hub.dispatch_raw(message["data"])
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
                await client.aclose()

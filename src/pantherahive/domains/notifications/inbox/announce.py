"""How the inbox announces a committed notification to every API process's streams.

Embedded: inside the creating transaction — the insert statement itself calls
``pg_notify``, which is transactional, so a rolled-back notification is never announced.
With ``REDIS_URL`` the message is published on Redis right after the commit.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from pantherahive.infra.logging import get_logger

CHANNEL = "pantherahive_notifications"
# PostgreSQL refuses NOTIFY payloads of 8,000 bytes or more; bigger ones go as a reference.
MAX_NOTIFY_BYTES = 7500
log = get_logger("pantherahive.notifications.realtime")


def encode(message: dict[str, Any]) -> str:
    raw = orjson.dumps(message)
    if len(raw) > MAX_NOTIFY_BYTES:
        slim = {k: message[k] for k in ("tenantId", "userId", "id", "seq")}
        raw = orjson.dumps(slim)
    return raw.decode()


class Publisher:
    """Announces notifications; one per process (set up by the runtime)."""

    def __init__(self, redis_url: str | None = None) -> None:
        self.redis_url = redis_url
        self._redis: Any = None
        self._pending: set[asyncio.Task[None]] = set()

    def publish_soon(self, messages: list[dict[str, Any]]) -> None:
        """Redis mode: publish committed notifications (called after the commit). Embedded
        mode needs no call: the creating statement runs ``pg_notify`` itself."""
        task = asyncio.get_running_loop().create_task(
            self._redis_publish([encode(m) for m in messages]))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _redis_publish(self, payloads: list[str]) -> None:
        try:
            if self._redis is None:
                import redis.asyncio as redis

                self._redis = redis.from_url(str(self.redis_url))
            for payload in payloads:
                await self._redis.publish(CHANNEL, payload)
        except Exception as exc:
            # Real time is best effort: the notification is committed and clients that
            # reconnect with Last-Event-ID get it.
            log.warning("realtime_publish_failed", error=str(exc))

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

"""Rate limits on the ``limits`` library: in memory, or in Redis when ``REDIS_URL`` is set
(so every API process shares one budget).

A route's limiter leaves its state in the request scope (:func:`remember`); the gateway
puts the ``RateLimit-*`` headers on whatever response goes out — the route's own, or the
problem document an error handler built in its place.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string
from starlette.types import Scope

from pantherahive.core.errors import RateLimited

SCOPE_KEY = "pantherahive.ratelimit"


@dataclass(frozen=True, slots=True)
class RateLimitState:
    limit: int
    remaining: int
    reset_seconds: int

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }


def remember(scope: Scope, state: RateLimitState) -> None:
    """Record the route limiter's state for the response, whichever response that is."""
    scope[SCOPE_KEY] = state


def remembered_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    state = scope.get(SCOPE_KEY)
    if not isinstance(state, RateLimitState):
        return []
    return [(k.lower().encode(), v.encode()) for k, v in state.headers().items()]


class RateLimits:
    def __init__(self, *, redis_url: str | None, enabled: bool = True) -> None:
        self.enabled = enabled
        storage: Storage
        if redis_url:
            uri = "async+" + redis_url if not redis_url.startswith("async+") else redis_url
            created = storage_from_string(uri, implementation="redispy")
            if not isinstance(created, Storage):
                raise ValueError(f"{redis_url} does not name an async rate-limit storage")
            storage = created
        else:
            storage = MemoryStorage()
        self._storage = storage
        self._limiter = SlidingWindowCounterRateLimiter(storage)

    @staticmethod
    def parse(limit: str) -> RateLimitItem:
        return parse(limit)

    async def hit(self, item: RateLimitItem, *key: str) -> RateLimitState:
        """Count one request; raise 429 (with the state's headers) when over the limit."""
        if not self.enabled:
            return RateLimitState(item.amount, item.amount, 0)
        allowed = await self._limiter.hit(item, *key)
        state = await self._state(item, *key)
        if not allowed:
            error = RateLimited(state.reset_seconds, "Too many requests; slow down.")
            error.headers.update(state.headers())
            raise error
        return state

    async def consume(self, item: RateLimitItem, *key: str) -> None:
        """Spend one unit of a budget *before* the work it guards; 429 if none is left.

        Spending first is what makes the limit hold under concurrency: a check now and a
        record later let every request in flight pass the check together.
        """
        if self.enabled and not await self._limiter.hit(item, *key):
            state = await self._state(item, *key)
            error = RateLimited(state.reset_seconds, "Too many failed attempts; try again later.")
            error.headers.update(state.headers())
            raise error

    async def refund(self, item: RateLimitItem, *key: str) -> None:
        """Give back the one unit a :meth:`consume` spent (a negative hit)."""
        if self.enabled:
            await self._limiter.hit(item, *key, cost=-1)

    async def clear(self, item: RateLimitItem, *key: str) -> None:
        """Forget every unit spent on this key."""
        if self.enabled:
            await self._limiter.clear(item, *key)

    async def _state(self, item: RateLimitItem, *key: str) -> RateLimitState:
        stats = await self._limiter.get_window_stats(item, *key)
        reset = max(0, math.ceil(stats.reset_time - time.time()))
        return RateLimitState(item.amount, max(0, stats.remaining), reset)

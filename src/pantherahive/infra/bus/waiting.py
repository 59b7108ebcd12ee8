""""This long, or until told": every loop of the bus waits that way, so a stop or a
wake-up is never held up by a poll interval or a backoff."""

from __future__ import annotations

import asyncio


async def wait_any(seconds: float, *events: asyncio.Event) -> None:
    """Return after ``seconds``, or as soon as one of ``events`` is set."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()

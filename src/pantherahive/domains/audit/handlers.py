"""Audit consumes every event: each becomes one chained audit record of its tenant."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.domains.audit.service import record_event, record_events
from pantherahive.infra.bus.consumer import ConsumerSpec, Event


async def on_any_event(session: AsyncSession, event: Event) -> None:
    """Idempotent on ``event.id``: a redelivered event is recorded once. Derived events
    (``audited`` false) are not recorded: their write's primary event is."""
    if event.audited:
        await record_event(session, event)


async def on_events(session: AsyncSession, events: Sequence[Event]) -> None:
    """``on_any_event`` for consecutive events of one tenant, in two statements (the
    embedded runtime's chunks)."""
    await record_events(session, [event for event in events if event.audited])


# The trail need not be immediate: lingering 50 ms after a wake-up lets a steady stream
# of events (one per request) be recorded a few per transaction instead of one by one.
AUDIT_LINGER_SECONDS = 0.05

CONSUMERS: list[ConsumerSpec] = [
    ConsumerSpec("audit", on_any_event, batch_handler=on_events, linger=AUDIT_LINGER_SECONDS)
]

"""Notifications publishes no events of its own (ARCHITECTURE.md): it is a pure consumer.

The event types it consumes are listed in ``handlers.CONSUMERS``; webhooks relay every
event type a subscription names.
"""

from __future__ import annotations

PUBLISHED: tuple[str, ...] = ()

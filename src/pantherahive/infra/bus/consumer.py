"""The contract between the event runtime and the services that consume events.

A service declares ``ConsumerSpec``s in its ``handlers.py``; the runtime (embedded outbox
reader, or a NATS/Kafka transport) calls ``handler(session, event)`` inside a transaction
already scoped to ``event.tenant_id`` and commits the handler's effects *together with*
the consumer's record of having handled ``event.id`` — so each event is handled once even
though it may be delivered more than once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True, slots=True)
class Event:
    """An event envelope as the bus carries it (API.md, Events) plus request metadata."""

    id: UUID
    type: str
    version: int
    tenant_id: UUID
    occurred_at: datetime
    actor_id: UUID | None
    subject_type: str
    subject_id: str
    data: dict[str, Any]
    request_id: str | None = None
    ip: str | None = None
    position: int | None = None
    # Internal, not part of the public envelope: False for a derived event, which the
    # audit trail does not record (outbox.emit).
    audited: bool = True

    def envelope(self) -> dict[str, Any]:
        """The public JSON envelope (camelCase), as webhooks and transports send it."""
        return {
            "id": str(self.id),
            "type": self.type,
            "version": self.version,
            "tenantId": str(self.tenant_id),
            "occurredAt": self.occurred_at.isoformat().replace("+00:00", "Z"),
            "actorId": str(self.actor_id) if self.actor_id else None,
            "subject": {"type": self.subject_type, "id": self.subject_id},
            "data": self.data,
        }


class PermanentFailure(Exception):
    """A handler failure that no retry can cure (an event version the consumer does not
    know, a payload that does not match its schema): the runner parks the event in the
    dead letters at once, with this message as the reason, instead of retrying it."""


Handler = Callable[[AsyncSession, Event], Awaitable[None]]
BatchHandler = Callable[[AsyncSession, Sequence[Event]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    """A named, durable consumer. ``types`` None means every event type."""

    name: str
    handler: Handler
    types: frozenset[str] | None = None
    # Schemas whose rows this consumer's handler may change only together with an event
    # (the runner refuses the handler's transaction otherwise; infra.bus.guard).
    announced_schemas: frozenset[str] = frozenset()
    # Optional: handles several consecutive events of one tenant at once (outbox order,
    # transaction scoped to the tenant, no request context bound), with exactly the effects
    # ``handler`` would have for each in turn. The embedded runtime uses it for its chunks;
    # ``handler`` remains the path for one event (a failed chunk is retried event by event
    # through it, and broker transports deliver one event at a time).
    batch_handler: BatchHandler | None = None
    # Seconds the embedded runtime lets events accumulate after a wake-up before reading,
    # for a consumer whose effects need not be immediate: at a steady rate it handles a
    # few events per transaction instead of one (its fixed cost per transaction — the
    # read, BEGIN, offset lock and write, COMMIT — is paid once for all of them).
    linger: float = 0.0

    def wants(self, event_type: str) -> bool:
        return self.types is None or event_type in self.types

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
from typing import Any, Generic, TypeVar
from uuid import UUID

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from pantherahive.core.events import EventData

D = TypeVar("D", bound=EventData)


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


class UnknownEventVersion(PermanentFailure):
    """An event of a type the consumer subscribes to, at a version it has no schema for
    (a producer upgraded before its consumers): parked, not guessed at."""


class InvalidEventData(PermanentFailure):
    """An event whose data does not validate against the schema of its type and version."""


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


TypedHandler = Callable[[AsyncSession, Event, D], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Subscription(Generic[D]):
    """One event schema (type and version) and what a consumer does with it."""

    schema: type[D]
    handler: TypedHandler[D]


def on(schema: type[D], handler: TypedHandler[D]) -> Subscription[D]:
    """``handler(session, envelope, data)`` receives events of ``schema`` with their data
    parsed into it."""
    return Subscription(schema, handler)


def subscribe(
    name: str,
    *subscriptions: Subscription[Any],
    announced_schemas: frozenset[str] = frozenset(),
    linger: float = 0.0,
) -> ConsumerSpec:
    """A consumer that subscribes by schema: it is woken only for the types of its
    schemas, and each event reaches the handler of its (type, version) already validated.

    A version of a subscribed type that no schema here declares raises
    :class:`UnknownEventVersion`, data that does not match raises
    :class:`InvalidEventData`: both park the event with the reason, since no retry can
    cure them.
    """
    handlers: dict[tuple[str, int], Subscription[Any]] = {}
    versions: dict[str, list[int]] = {}
    for subscription in subscriptions:
        key = (subscription.schema.TYPE, subscription.schema.VERSION)
        if key in handlers:
            raise ValueError(f"consumer {name} subscribes twice to {key[0]} v{key[1]}")
        handlers[key] = subscription
        versions.setdefault(key[0], []).append(key[1])

    async def dispatch(session: AsyncSession, event: Event) -> None:
        subscription = handlers.get((event.type, event.version))
        if subscription is None:
            known = versions.get(event.type)
            if known is None:
                return  # not one of ours (a consumer is only woken for its types)
            raise UnknownEventVersion(
                f"consumer {name} has no schema for {event.type} version {event.version} "
                f"(it knows version {', '.join(map(str, sorted(known)))})"
            )
        try:
            data = subscription.schema.model_validate(event.data)
        except ValidationError as exc:
            raise InvalidEventData(
                f"{event.type} v{event.version} data does not match its schema: {exc}"
            ) from exc
        await subscription.handler(session, event, data)

    return ConsumerSpec(
        name, dispatch, frozenset(versions), announced_schemas=announced_schemas, linger=linger
    )

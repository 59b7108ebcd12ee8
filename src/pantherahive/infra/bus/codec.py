"""Events on the wire and out of the outbox: one JSON document per event."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from sqlalchemy import Row

from pantherahive.infra.bus.consumer import Event
from pantherahive.infra.db.direct import Record


@dataclass(frozen=True, slots=True, order=True)
class Cursor:
    """A consumer's place in the outbox: rows are read in (transaction id, position) order."""

    xid: int
    position: int


ORIGIN = Cursor(0, 0)


# Every field of the envelope is a column of the outbox under the same name.
_ROW_COLUMNS = tuple(field.name for field in fields(Event))


def event_from_row(row: Row[Any] | Record) -> Event:
    """An event from an outbox row: a SQLAlchemy row, or an asyncpg record."""
    m: Any = row._mapping if isinstance(row, Row) else row
    return Event(**{name: m[name] for name in _ROW_COLUMNS})


def to_document(event: Event) -> dict[str, Any]:
    """The envelope plus the internal metadata consumers need (request, outbox position,
    whether the audit trail records it); webhooks get ``envelope()`` only."""
    doc = event.envelope()
    doc["requestId"] = event.request_id
    doc["ip"] = event.ip
    doc["position"] = event.position
    doc["audited"] = event.audited
    return doc


def encode(event: Event) -> bytes:
    return orjson.dumps(to_document(event))


def from_document(doc: dict[str, Any]) -> Event:
    actor = doc.get("actorId")
    return Event(
        id=UUID(doc["id"]),
        type=doc["type"],
        version=int(doc["version"]),
        tenant_id=UUID(doc["tenantId"]),
        occurred_at=datetime.fromisoformat(doc["occurredAt"].replace("Z", "+00:00")),
        actor_id=UUID(actor) if actor else None,
        subject_type=doc["subject"]["type"],
        subject_id=doc["subject"]["id"],
        data=doc.get("data") or {},
        request_id=doc.get("requestId"),
        ip=doc.get("ip"),
        position=doc.get("position"),
        audited=doc.get("audited") is not False,
    )


def decode(payload: bytes) -> Event:
    doc = orjson.loads(payload)
    if not isinstance(doc, dict):
        raise ValueError("an event must be a JSON object")
    return from_document(doc)


def subject_for(prefix: str, event: Event) -> str:
    """``<prefix>.<tenant>.<type>``; a type like ``task.created`` spans two tokens."""
    return f"{prefix}.{event.tenant_id}.{event.type}"


def group_by_tenant(events: Sequence[Event]) -> list[list[Event]]:
    """Split a batch per tenant, each keeping outbox order (per-tenant order is the promise)."""
    groups: dict[UUID, list[Event]] = {}
    for event in events:
        groups.setdefault(event.tenant_id, []).append(event)
    return list(groups.values())

"""The transactional outbox: every state change writes its event in the same transaction.

``emit`` is the only way a service announces a change; consumers (issue: event backbone)
read this table in ``position`` order, so nothing is published that did not commit and
nothing committed is lost.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import orjson
from sqlalchemy import BigInteger, Boolean, DateTime, Identity, Index, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from pantherahive.core.clock import now
from pantherahive.core.events import ANY_SUBJECT, EventData
from pantherahive.infra.bus.guard import mark_emitted
from pantherahive.infra.context import current_context
from pantherahive.infra.db import direct
from pantherahive.infra.db.base import Base
from pantherahive.infra.metrics import EVENTS_EMITTED


class OutboxEvent(Base):
    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_unpublished", "position", postgresql_where="published_at IS NULL"),
        {"schema": "bus"},
    )

    position: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True), unique=True)
    tenant_id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True))
    type: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer, default=1)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor_id: Mapped[UUID | None] = mapped_column(PgUUID(as_uuid=True))
    subject_type: Mapped[str] = mapped_column(String(50))
    subject_id: Mapped[str] = mapped_column(String(100))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB)
    request_id: Mapped[str | None] = mapped_column(String(128))
    ip: Mapped[str | None] = mapped_column(Text)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    audited: Mapped[bool] = mapped_column(Boolean, default=True)


# The key of ``data`` naming the personal access token a request authenticated with: every
# event the request emits carries it, so the audit trail shows what each token did.
VIA_TOKEN = "viaToken"  # noqa: S105 (a key name, not a secret)

# Written by nearly every request: fixed SQL, see infra/db/direct.py.
_INSERT = (
    "INSERT INTO bus.outbox (id, tenant_id, type, version, occurred_at, actor_id,"
    " subject_type, subject_id, data, request_id, ip, audited)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
)


async def emit(
    session: AsyncSession,
    event: EventData,
    *,
    subject_id: object,
    tenant_id: UUID | None = None,
    actor_id: UUID | None = None,
    audited: bool = True,
    subject_type: str | None = None,
) -> UUID:
    """Write one event envelope in the caller's transaction: type, version and subject type
    come from the payload's class (``core.events``), ``data`` is its wire form.

    Tenant and actor default to the authenticated principal of the current request.
    ``audited=False`` marks a derived event (one that accompanies the write's primary
    event, or follows from another event): every consumer receives it, but the audit
    trail records only the primary event, which carries the full ``changes``.
    ``subject_type`` names the subject of an event whose class leaves it open
    (``ANY_SUBJECT``, e.g. ``authz.denied``); a class that declares its subject keeps it.

    A request authenticated by a personal access token adds ``viaToken`` (the token's
    id) to the data of every event it emits.
    """
    ctx = current_context()
    event_type, version = event.TYPE, event.VERSION
    if event.SUBJECT != ANY_SUBJECT:
        if subject_type not in (None, event.SUBJECT):
            raise ValueError(f"{event_type} is about a {event.SUBJECT}, not a {subject_type}")
        subject = event.SUBJECT
    elif subject_type is None:
        raise ValueError(f"{event_type} needs the subject type of this emission")
    else:
        subject = subject_type
    payload = event.to_json()
    if ctx.token_id is not None:
        payload = {**payload, VIA_TOKEN: str(ctx.token_id)}
    tenant = tenant_id or ctx.tenant_id
    if tenant is None:
        raise RuntimeError(f"event {event_type} has no tenant")
    event_id = uuid4()
    await direct.execute(
        session,
        _INSERT,
        event_id,
        tenant,
        event_type,
        version,
        now(),
        actor_id if actor_id is not None else ctx.user_id,
        subject,
        str(subject_id),
        orjson.dumps(payload).decode(),
        ctx.request_id,
        ctx.ip,
        audited,
    )
    mark_emitted(session)
    EVENTS_EMITTED.labels(event_type).inc()
    return event_id
